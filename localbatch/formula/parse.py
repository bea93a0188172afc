"""The autoscale formula language of Batch pools: the names it knows and a parser (no eval) for the subset
localbatch supports. What lies outside the subset is refused with the line and column where it starts."""

import re
from dataclasses import dataclass, field

MAX_FORMULA_CHARS = 8192
MAX_STATEMENTS = 100
DEALLOCATION_OPTIONS = ("requeue", "terminate", "taskcompletion", "retaineddata")

# The read-write variables of the service, by the lower-case name they are matched with, and their aliases.
TARGET_DEDICATED = "$TargetDedicatedNodes"
TARGET_LOW_PRIORITY = "$TargetLowPriorityNodes"
DEALLOCATION = "$NodeDeallocationOption"
ALIASES = {"$targetdedicated": TARGET_DEDICATED, "$targetlowpriority": TARGET_LOW_PRIORITY}
WRITABLE = {name.lower(): name for name in (TARGET_DEDICATED, TARGET_LOW_PRIORITY, DEALLOCATION)}

# Read-only metrics localbatch samples. The node counts can also be read as plain numbers (their current
# value), as the service's own examples do with $CurrentDedicatedNodes; the task counts are sample sets only.
TASK_METRICS = ("$ActiveTasks", "$RunningTasks", "$PendingTasks", "$SucceededTasks", "$FailedTasks")
NODE_METRICS = ("$CurrentDedicatedNodes", "$CurrentLowPriorityNodes", "$PreemptedNodeCount", "$SampleNodeCount")
METRICS = {name.lower(): name for name in TASK_METRICS + NODE_METRICS}
# Metrics the service has and localbatch cannot measure: refused rather than answered with made-up numbers.
UNMEASURED = {name.lower(): name for name in (
    "$CPUPercent", "$WallClockSeconds", "$MemoryBytes", "$DiskBytes", "$DiskReadBytes", "$DiskWriteBytes",
    "$DiskReadOps", "$DiskWriteOps", "$NetworkInBytes", "$NetworkOutBytes", "$UsableNodeCount")}
SAMPLE_METHODS = {"getsample": "GetSample", "getsamplepercent": "GetSamplePercent", "count": "Count",
                  "historybegintime": "HistoryBeginTime", "getsampleperiod": "GetSamplePeriod"}
TIME_INTERVALS = {"timeinterval_zero": 0.0, "timeinterval_100ns": 1e-7, "timeinterval_microsecond": 1e-6,
                  "timeinterval_millisecond": 1e-3, "timeinterval_second": 1.0, "timeinterval_minute": 60.0,
                  "timeinterval_hour": 3600.0, "timeinterval_day": 86400.0, "timeinterval_week": 7 * 86400.0,
                  "timeinterval_year": 365 * 86400.0}
TIMESTAMP_MEMBERS = ("year", "month", "day", "weekday", "hour", "minute", "second")
FUNCTIONS = ("avg", "len", "lg", "ln", "log", "max", "min", "norm", "percentile", "rand", "range", "std", "stop",
             "sum", "time", "val")


class FormulaError(Exception):
    """Why a formula cannot be used or evaluated. `kind` is "syntax" (malformed), "unsupported" (valid on
    Batch, outside localbatch's subset), "samples" (too few samples) or "evaluation" (a run-time error)."""

    def __init__(self, kind: str, position: tuple[int, int] | None, detail: str):
        super().__init__(f"Line {position[0]}, Col {position[1]}: {detail}" if position else detail)
        self.kind = kind
        self.position = position
        self.detail = detail


@dataclass(frozen=True)
class Interval:
    seconds: float


@dataclass
class Node:
    kind: str            # num str name call method member unary binary cond
    position: tuple[int, int]
    value: object = None
    children: list = field(default_factory=list)


@dataclass
class Statement:
    name: str
    expression: Node
    position: tuple[int, int]


# -- parsing ----------------------------------------------------------------------------------

_TOKEN = re.compile(r"""
    (?P<space>\s+) | (?P<comment>//[^\n]*|/\*.*?\*/) |
    (?P<number>(?:\d+\.\d*|\.\d+|\d+)(?:[eE][+-]?\d+)?) |
    (?P<name>\$?[A-Za-z_][A-Za-z0-9_]*) |
    (?P<string>"[^"\n]*") |
    (?P<op>==|!=|<=|>=|&&|\|\||[-+*/()<>!?:;,.=])
""", re.VERBOSE | re.DOTALL)


@dataclass
class _Token:
    kind: str
    text: str
    position: tuple[int, int]


def _tokens(text: str) -> list[_Token]:
    out, offset, line, line_start = [], 0, 1, 0
    while offset < len(text):
        position = (line, offset - line_start + 1)
        if text.startswith("/*", offset) and "*/" not in text[offset + 2:]:
            raise FormulaError("syntax", position, "The comment is not closed with */.")
        match = _TOKEN.match(text, offset)
        if not match:
            raise FormulaError("syntax", position, f"Unexpected character '{text[offset]}'.")
        kind, value = match.lastgroup, match.group()
        if kind not in ("space", "comment"):
            out.append(_Token(kind, value, position))
        newlines = value.count("\n")
        if newlines:
            line += newlines
            line_start = offset + value.rindex("\n") + 1
        offset = match.end()
    out.append(_Token("end", "", (line, offset - line_start + 1)))
    return out


class _Parser:
    def __init__(self, text: str):
        self.tokens = _tokens(text)
        self.index = 0

    @property
    def token(self) -> _Token:
        return self.tokens[self.index]

    def take(self, text: str | None = None) -> _Token:
        token = self.token
        if text is not None and token.text != text:
            found = f"'{token.text}'" if token.kind != "end" else "the end of the formula"
            raise FormulaError("syntax", token.position, f"Expected '{text}' but found {found}.")
        self.index += 1
        return token

    def accept(self, *texts: str) -> _Token | None:
        if self.token.kind == "op" and self.token.text in texts:
            return self.take()
        return None

    def formula(self) -> list[Statement]:
        statements = []
        while self.token.kind != "end":
            if self.accept(";"):
                continue
            statements.append(self.statement())
            if self.token.kind != "end":
                self.take(";")
        return statements

    def statement(self) -> Statement:
        token = self.token
        if token.kind != "name" or self.tokens[self.index + 1].text != "=":
            raise FormulaError("syntax", token.position,
                               "A statement must assign a value to a variable, such as $TargetDedicatedNodes = 1.")
        self.take()
        self.take("=")
        return Statement(token.text, self.expression(), token.position)

    def expression(self) -> Node:
        condition = self.binary(0)
        question = self.accept("?")
        if not question:
            return condition
        when_true = self.expression()
        self.take(":")
        return Node("cond", question.position, None, [condition, when_true, self.expression()])

    LEVELS = (("||",), ("&&",), ("==", "!="), ("<", "<=", ">", ">="), ("+", "-"), ("*", "/"))

    def binary(self, level: int) -> Node:
        if level == len(self.LEVELS):
            return self.unary()
        left = self.binary(level + 1)
        while operator := self.accept(*self.LEVELS[level]):
            left = Node("binary", operator.position, operator.text, [left, self.binary(level + 1)])
        return left

    def unary(self) -> Node:
        operator = self.accept("-", "!")
        if operator:
            return Node("unary", operator.position, operator.text, [self.unary()])
        return self.postfix(self.primary())

    def postfix(self, node: Node) -> Node:
        while dot := self.accept("."):
            name = self.token
            if name.kind != "name" or name.text.startswith("$"):
                raise FormulaError("syntax", name.position, "Expected a method or member name after '.'.")
            self.take()
            if self.accept("("):
                node = Node("method", name.position, name.text, [node, *self.arguments()])
            else:
                node = Node("member", dot.position, name.text, [node])
        return node

    def arguments(self) -> list[Node]:
        args = []
        if self.accept(")"):
            return args
        while True:
            args.append(self.expression())
            if self.accept(")"):
                return args
            self.take(",")

    def primary(self) -> Node:
        token = self.take()
        if token.kind == "number":
            return Node("num", token.position, float(token.text))
        if token.kind == "string":
            return Node("str", token.position, token.text[1:-1])
        if token.kind == "name":
            if self.accept("("):
                return Node("call", token.position, token.text, self.arguments())
            return Node("name", token.position, token.text)
        if token.text == "(":
            inner = self.expression()
            self.take(")")
            return inner
        found = f"'{token.text}'" if token.kind != "end" else "the end of the formula"
        raise FormulaError("syntax", token.position, f"Expected a value but found {found}.")


def parse(text: str) -> list[Statement]:
    """The statements of a formula, checked against localbatch's subset; raises FormulaError."""
    if not isinstance(text, str) or not text.strip():
        raise FormulaError("syntax", (1, 1), "The formula is empty.")
    statements = _Parser(text).formula()
    if not statements:
        raise FormulaError("syntax", (1, 1), "The formula has no statements.")
    if len(statements) > MAX_STATEMENTS:
        raise FormulaError("syntax", statements[MAX_STATEMENTS].position,
                           f"A formula may have at most {MAX_STATEMENTS} statements.")
    for statement in statements:
        lowered = statement.name.lower()
        if lowered in METRICS or lowered in UNMEASURED or lowered in TIME_INTERVALS:
            raise FormulaError("syntax", statement.position, f"{statement.name} is read-only.")
        _check(statement.expression)
    return statements


def _check(node: Node) -> None:
    """Refuse, before any evaluation, the names, functions and methods outside localbatch's subset."""
    if node.kind == "name":
        lowered = node.value.lower()
        if lowered in UNMEASURED:
            raise FormulaError("unsupported", node.position,
                               f"localbatch does not measure {UNMEASURED[lowered]}: its nodes are processes on one "
                               f"machine. Use the task and node counts ($PendingTasks, $ActiveTasks, $RunningTasks, "
                               f"$CurrentDedicatedNodes, ...).")
    elif node.kind == "call":
        if node.value.lower() not in FUNCTIONS:
            raise FormulaError("syntax", node.position, f"Unknown function {node.value}().")
    elif node.kind == "method":
        target = node.children[0]
        if target.kind == "name" and target.value.lower() in UNMEASURED:
            _check(target)
        if target.kind != "name" or target.value.lower() not in METRICS:
            raise FormulaError("syntax", node.position,
                               f"{node.value}() can be called only on a service metric such as $PendingTasks.")
        if node.value.lower() not in SAMPLE_METHODS:
            raise FormulaError("syntax", node.position, f"Unknown method {node.value}() of {target.value}.")
    for child in node.children:
        _check(child)
