"""Evaluating a parsed autoscale formula against a pool's targets, node counts and metric samples, as Batch's
periodic autoscale run does."""

import math
import random
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Callable

from .parse import (
    DEALLOCATION,
    DEALLOCATION_OPTIONS,
    METRICS,
    SAMPLE_METHODS,
    TARGET_DEDICATED,
    TARGET_LOW_PRIORITY,
    TIME_INTERVALS,
    TIMESTAMP_MEMBERS,
    WRITABLE,
    FormulaError,
    Interval,
    Node,
    Statement,
)


@dataclass
class Context:
    """What a formula reads: the pool's targets and node counts now, and the metric samples."""
    now: datetime
    target_dedicated: int
    target_low_priority: int
    current: dict[str, float]                              # node metric name -> its value now
    samples: Callable[[str], list[tuple[float, float]]]     # metric name -> [(epoch seconds, value)], oldest first
    sample_seconds: float = 30.0                            # the period of the samples, in service time
    time_scale: float = 1.0                                 # real seconds per service second (tests speed time up)


@dataclass
class Outcome:
    """The variables after a run; `error` is set when the run failed (the targets then stay as they were)."""
    values: dict[str, object]
    spelled: dict[str, str]
    error: FormulaError | None = None

    def target(self, name: str, alias: str, current: int) -> object:
        key, alias_key = name.lower(), alias.lower()
        if key in self.values:
            return self.values[key]
        return self.values.get(alias_key, current)

    def results(self, context: Context) -> str:
        """`$TargetDedicatedNodes=…;$TargetLowPriorityNodes=…;$NodeDeallocationOption=…` then the other
        variables in name order, as the service writes an AutoScaleRun."""
        first = [(TARGET_DEDICATED, self.target(TARGET_DEDICATED, "$TargetDedicated", context.target_dedicated)),
                 (TARGET_LOW_PRIORITY, self.target(TARGET_LOW_PRIORITY, "$TargetLowPriority",
                                                   context.target_low_priority)),
                 (DEALLOCATION, self.values.get(DEALLOCATION.lower(), "requeue"))]
        rest = sorted((self.spelled[key], value) for key, value in self.values.items() if key not in WRITABLE)
        return ";".join(f"{name}={show(value)}" for name, value in first + rest)


class _Stop(Exception):
    pass


def evaluate(statements: list[Statement], context: Context) -> Outcome:
    outcome = Outcome({}, {})
    evaluator = _Evaluator(context, outcome)
    try:
        for statement in statements:
            value = evaluator.value(statement.expression)
            key = statement.name.lower()
            is_option = isinstance(value, str) and value.lower() in DEALLOCATION_OPTIONS
            if key == DEALLOCATION.lower() and not is_option:
                raise FormulaError("evaluation", statement.position,
                                   f"$NodeDeallocationOption must be one of {', '.join(DEALLOCATION_OPTIONS)}.")
            outcome.values[key] = value.lower() if key == DEALLOCATION.lower() else value
            outcome.spelled.setdefault(key, WRITABLE.get(key, statement.name))
    except _Stop:
        pass
    except FormulaError as exc:
        outcome.error = exc
    return outcome


def show(value: object) -> str:
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 1e15:
            return str(int(value))
        return repr(value)
    if isinstance(value, list):
        return "[" + ",".join(show(v) for v in value) + "]"
    if isinstance(value, Interval):
        return _show_interval(value.seconds)
    if isinstance(value, datetime):
        return value.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"
    return str(value)


def _show_interval(seconds: float) -> str:
    sign = "-" if seconds < 0 else ""
    seconds = abs(seconds)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    text = f"{int(hours):02d}:{int(minutes):02d}:{int(secs):02d}"
    if secs % 1:
        text += f"{secs % 1:.7f}"[1:]
    return sign + (f"{int(days)}." if days else "") + text


def _type_name(value: object) -> str:
    return {float: "double", list: "doubleVec", str: "string", Interval: "timeinterval"}.get(type(value), "timestamp")


class _Evaluator:
    def __init__(self, context: Context, outcome: Outcome):
        self.context = context
        self.outcome = outcome

    def fail(self, node: Node, detail: str, kind: str = "evaluation"):
        raise FormulaError(kind, node.position, detail)

    def value(self, node: Node):
        return getattr(self, "_" + node.kind)(node)

    def number(self, node: Node) -> float:
        value = self.value(node)
        if not isinstance(value, float):
            self.fail(node, f"Expected a double but found a {_type_name(value)}.")
        return value

    # leaves
    def _num(self, node: Node) -> float:
        return node.value

    def _str(self, node: Node) -> str:
        return node.value

    def _name(self, node: Node):
        name, key = node.value, node.value.lower()
        if key in self.outcome.values:
            return self.outcome.values[key]
        if key in (TARGET_DEDICATED.lower(), "$targetdedicated"):
            return float(self.context.target_dedicated)
        if key in (TARGET_LOW_PRIORITY.lower(), "$targetlowpriority"):
            return float(self.context.target_low_priority)
        if key == DEALLOCATION.lower():
            return "requeue"
        if key in TIME_INTERVALS:
            return Interval(TIME_INTERVALS[key])
        if key in METRICS:
            metric = METRICS[key]
            if metric in self.context.current:
                return float(self.context.current[metric])
            self.fail(node, f"{metric} is a set of samples: read it with {metric}.GetSample(...).")
        if key in DEALLOCATION_OPTIONS:
            return key
        self.fail(node, f"The variable {name} is used before it is assigned.")

    # operators
    def _cond(self, node: Node):
        condition = self.number(node.children[0])
        return self.value(node.children[1] if condition != 0 else node.children[2])

    def _unary(self, node: Node):
        value = self.value(node.children[0])
        if node.value == "!":
            if not isinstance(value, float):
                self.fail(node, f"'!' needs a double, not a {_type_name(value)}.")
            return 1.0 if value == 0 else 0.0
        if isinstance(value, float):
            return -value
        if isinstance(value, Interval):
            return Interval(-value.seconds)
        if isinstance(value, list):
            return [-v for v in value]
        self.fail(node, f"'-' cannot negate a {_type_name(value)}.")

    def _binary(self, node: Node):
        operator = node.value
        left = self.value(node.children[0])
        if operator in ("&&", "||"):
            if not isinstance(left, float):
                self.fail(node, f"'{operator}' needs doubles, not a {_type_name(left)}.")
            if operator == "&&" and left == 0:
                return 0.0
            if operator == "||" and left != 0:
                return 1.0
            return 1.0 if self.number(node.children[1]) != 0 else 0.0
        right = self.value(node.children[1])
        if operator in ("==", "!=", "<", "<=", ">", ">="):
            return self.compare(node, operator, left, right)
        return self.arithmetic(node, operator, left, right)

    def compare(self, node: Node, operator: str, left, right) -> float:
        if isinstance(left, Interval) and isinstance(right, Interval):
            left, right = left.seconds, right.seconds
        if type(left) is not type(right) or isinstance(left, list):
            self.fail(node, f"Cannot compare a {_type_name(left)} with a {_type_name(right)}.")
        result = {"==": left == right, "!=": left != right, "<": left < right, "<=": left <= right,
                  ">": left > right, ">=": left >= right}[operator]
        return 1.0 if result else 0.0

    def arithmetic(self, node: Node, operator: str, left, right):
        if isinstance(left, (float, list)) and isinstance(right, (float, list)):
            return self.numbers(node, operator, left, right)
        if operator == "*" and isinstance(left, Interval) and isinstance(right, float):
            return Interval(left.seconds * right)
        if operator == "*" and isinstance(left, float) and isinstance(right, Interval):
            return Interval(left * right.seconds)
        if operator == "/" and isinstance(left, Interval) and isinstance(right, float):
            if right == 0:
                self.fail(node, "Division by zero.")
            return Interval(left.seconds / right)
        if operator in "+-" and isinstance(left, Interval) and isinstance(right, Interval):
            return Interval(left.seconds + right.seconds if operator == "+" else left.seconds - right.seconds)
        if operator in "+-" and isinstance(left, datetime) and isinstance(right, Interval):
            shift = timedelta(seconds=right.seconds)
            return left + shift if operator == "+" else left - shift
        if operator == "+" and isinstance(left, Interval) and isinstance(right, datetime):
            return right + timedelta(seconds=left.seconds)
        if operator == "-" and isinstance(left, datetime) and isinstance(right, datetime):
            return Interval((left - right).total_seconds())
        self.fail(node, f"'{operator}' is not defined for a {_type_name(left)} and a {_type_name(right)}.")

    def numbers(self, node: Node, operator: str, left, right):
        if isinstance(left, list) and isinstance(right, list) and len(left) != len(right):
            self.fail(node, f"'{operator}' needs vectors of the same length ({len(left)} and {len(right)}).")
        count = len(left) if isinstance(left, list) else len(right) if isinstance(right, list) else None
        lefts = left if isinstance(left, list) else [left] * (count or 1)
        rights = right if isinstance(right, list) else [right] * (count or 1)
        out = []
        for a, b in zip(lefts, rights, strict=True):
            if operator == "/" and b == 0:
                self.fail(node, "Division by zero.")
            out.append(a + b if operator == "+" else a - b if operator == "-" else a * b if operator == "*" else a / b)
        return out if count is not None else out[0]

    # members, functions and sample methods
    def _member(self, node: Node):
        target = self.value(node.children[0])
        name = node.value.lower()
        if not isinstance(target, datetime) or name not in TIMESTAMP_MEMBERS:
            self.fail(node, f"A {_type_name(target)} has no member '{node.value}'.")
        if name == "weekday":
            return float(target.isoweekday() % 7)   # Monday 1 … Saturday 6, Sunday 0
        return float(getattr(target, name))

    def flat(self, node: Node, args: list[Node]) -> list[float]:
        out: list[float] = []
        for arg in args:
            value = self.value(arg)
            if isinstance(value, float):
                out.append(value)
            elif isinstance(value, list):
                out.extend(value)
            else:
                self.fail(arg, f"{node.value}() takes doubles and vectors, not a {_type_name(value)}.")
        return out

    def _call(self, node: Node):
        name = node.value.lower()
        args = node.children
        if name == "rand":
            return random.random()
        if name == "stop":
            raise _Stop()
        if name == "time":
            if not args:
                return self.context.now
            text = self.value(args[0])
            if not isinstance(text, str):
                self.fail(node, "time() takes a date and time string.")
            return self.parse_time(node, text)
        if name in ("lg", "ln", "log"):
            base = {"lg": 2.0, "ln": math.e, "log": 10.0}[name]
            value = self.value(args[0]) if len(args) == 1 else None
            if isinstance(value, list):
                return [self.logarithm(node, v, base) for v in value]
            if isinstance(value, float):
                return self.logarithm(node, value, base)
            self.fail(node, f"{node.value}() takes one double or one vector.")
        if name in ("val", "percentile"):
            if len(args) != 2:
                self.fail(node, f"{node.value}() takes a vector and a double.")
            vector, number = self.flat(node, args[:1]), self.number(args[1])
            if not vector:
                self.fail(node, f"{node.value}() of an empty vector.")
            if name == "val":
                if not 0 <= number < len(vector) or not number.is_integer():
                    self.fail(node, f"val() index {show(number)} is outside the vector of {len(vector)}.")
                return vector[int(number)]
            if not 0 <= number <= 100:
                self.fail(node, "percentile() takes a percentage between 0 and 100.")
            ordered = sorted(vector)
            return ordered[min(len(ordered) - 1, int(math.ceil(number / 100 * len(ordered))) - 1 if number else 0)]
        values = self.flat(node, args)
        if name == "len":
            return float(len(values))
        if name == "sum":
            return float(sum(values))
        if name == "norm":
            return math.sqrt(sum(v * v for v in values))
        if not values:
            self.fail(node, f"{node.value}() of an empty vector.")
        if name == "avg":
            return sum(values) / len(values)
        if name == "max":
            return max(values)
        if name == "min":
            return min(values)
        if name == "range":
            return max(values) - min(values)
        if name == "std":
            if len(values) < 2:
                return 0.0
            mean = sum(values) / len(values)
            return math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))
        self.fail(node, f"Unknown function {node.value}().", "syntax")

    def logarithm(self, node: Node, value: float, base: float) -> float:
        if value <= 0:
            self.fail(node, f"{node.value}() of a number that is not positive.")
        return math.log(value, base)

    def parse_time(self, node: Node, text: str) -> datetime:
        try:
            moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
        except ValueError:
            try:
                moment = datetime.strptime(text.strip(), "%a, %d %b %Y %H:%M:%S GMT")
            except ValueError:
                self.fail(node, f"time() cannot read '{text}': give a W3C (ISO 8601) or RFC 1123 date and time.")
        return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)

    def _method(self, node: Node):
        metric = METRICS[node.children[0].value.lower()]
        method = SAMPLE_METHODS[node.value.lower()]
        args = [self.value(a) for a in node.children[1:]]
        history = self.context.samples(metric)
        if method == "Count":
            return float(len(history))
        if method == "GetSamplePeriod":
            return Interval(self.context.sample_seconds)
        if method == "HistoryBeginTime":
            if not history:
                self.fail(node, f"{metric} has no samples yet.", "samples")
            return datetime.fromtimestamp(history[0][0], timezone.utc)
        if method == "GetSample" and len(args) == 1 and isinstance(args[0], float):
            count = int(args[0])
            if count < 1:
                self.fail(node, "GetSample(count) needs a count of at least 1.")
            if not history:
                self.insufficient(node, metric, f"{count} samples", "0")
            return [value for _, value in history[-count:]]
        window, percent = self.window(node, method, args)
        chosen = [value for moment, value in history if window[0] <= moment <= window[1]]
        expected = max(1, round((window[1] - window[0]) / (self.context.sample_seconds * self.context.time_scale)))
        received = min(100.0, 100.0 * len(chosen) / expected)
        if method == "GetSamplePercent":
            return received
        if received < percent or not chosen:
            self.insufficient(node, metric, f"{show(percent)}%", f"{show(float(math.floor(received)))}%")
        return chosen

    def window(self, node: Node, method: str, args: list) -> tuple[tuple[float, float], float]:
        """(earliest, latest) epoch seconds of a sample range, and the percentage asked for."""
        times = [a for a in args if isinstance(a, (Interval, datetime))]
        rest = args[len(times):]
        if not 1 <= len(times) <= 2 or len(rest) > (1 if method == "GetSample" else 0) \
                or any(not isinstance(a, float) for a in rest) or args[:len(times)] != times:
            usage = ("GetSample(count), GetSample(start [, percent]) or GetSample(start, end [, percent])"
                     if method == "GetSample" else "GetSamplePercent(start [, end])")
            self.fail(node, f"Use {usage}, where start and end are time intervals or timestamps.")
        now = self.context.now.timestamp()

        def moment(value) -> float:
            if isinstance(value, datetime):
                return value.timestamp()
            return now - value.seconds * self.context.time_scale
        start = moment(times[0])
        end = moment(times[1]) if len(times) == 2 else now
        return (min(start, end), max(start, end)), (rest[0] if rest else 0.0)

    def insufficient(self, node: Node, metric: str, wanted: str, received: str):
        # Reported where the metric is named, as the service does.
        self.fail(node.children[0], f"Insufficient data from data set: {metric} wanted {wanted}, received {received}",
                  "samples")
