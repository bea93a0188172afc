"""OData `$filter` compilation and `$select` projection for Batch list endpoints.

Entities are plain dicts in the Batch REST JSON shape; filters compile once into fast predicates.
"""

from __future__ import annotations

import functools
import operator
import re
from collections.abc import Callable
from datetime import datetime, timezone

__all__ = [
    "BOOLEAN",
    "DATETIME",
    "ENUM",
    "INTEGER",
    "STRING",
    "ODataError",
    "compile_filter",
    "parse_select",
    "project",
]


class ODataError(ValueError):
    """Raised for a filter/select the service would reject.

    str(e) is a plain-language message naming the offending part; positions are 0-based
    character offsets into the original text.
    """


STRING, DATETIME, INTEGER, ENUM = "string", "datetime", "integer", "enum"
# A few Batch properties (e.g. pool enableAutoScale) are booleans; they support eq/ne true/false.
BOOLEAN = "boolean"

Predicate = Callable[[dict], bool]

_COMPARISON_OPS = {
    "eq": operator.eq,
    "ne": operator.ne,
    "gt": operator.gt,
    "ge": operator.ge,
    "lt": operator.lt,
    "le": operator.le,
}
_ALLOWED_OPS = {
    STRING: frozenset(_COMPARISON_OPS) | {"startswith"},
    ENUM: frozenset({"eq", "ne", "startswith"}),
    INTEGER: frozenset(_COMPARISON_OPS),
    DATETIME: frozenset(_COMPARISON_OPS),
    BOOLEAN: frozenset({"eq", "ne"}),
}
_KEYWORDS = frozenset(_COMPARISON_OPS) | {"and", "or", "not", "true", "false", "null", "startswith"}

_TYPE_NOUNS = {
    STRING: "a quoted string",
    ENUM: "a quoted string",
    INTEGER: "an integer",
    DATETIME: "a datetime (datetime'...' or a quoted ISO 8601 string)",
    BOOLEAN: "true or false",
}

# ---------------------------------------------------------------------------------------------
# Datetimes

_EXCESS_FRACTION = re.compile(r"(\.\d{6})\d+")


def parse_datetime(value: str | datetime) -> datetime:
    """Parse an ISO 8601 timestamp to an aware UTC-comparable datetime (microsecond precision).

    Raises ValueError if it is not a datetime.
    """
    if isinstance(value, datetime):
        parsed = value
    else:
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            # Pythons before 3.11.x reject the 7 fractional digits .NET's 100 ns ticks produce, and
            # all reject a lowercase 't'/'z'; normalise rather than refuse a valid timestamp.
            parsed = datetime.fromisoformat(_EXCESS_FRACTION.sub(r"\1", value.strip().upper()))
    if parsed.tzinfo is None:
        # Batch timestamps are always UTC; an offset-less one must not break comparisons.
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed


# ---------------------------------------------------------------------------------------------
# Tokenizer

_TOKEN_RE = re.compile(
    r"""
    (?P<datetime>(?i:datetime)'(?:[^']|'')*')
  | (?P<string>'(?:[^']|'')*')
  | (?P<number>-?\d+(?:\.\d+)?)
  | (?P<word>[A-Za-z_][A-Za-z0-9_]*(?:/[A-Za-z_][A-Za-z0-9_]*)*)
  | (?P<punct>[(),])
    """,
    re.VERBOSE,
)
_SPACE_RE = re.compile(r"\s*")


class _Token:
    __slots__ = ("kind", "text", "pos")

    def __init__(self, kind: str, text: str, pos: int) -> None:
        self.kind = kind  # 'datetime' | 'string' | 'number' | 'word' | 'punct' | 'end'
        self.text = text
        self.pos = pos

    @property
    def keyword(self) -> str | None:
        if self.kind == "word" and self.text.lower() in _KEYWORDS:
            return self.text.lower()
        return None

    def describe(self) -> str:
        return "end of filter" if self.kind == "end" else f"'{self.text}'"


def _tokenize(text: str) -> list[_Token]:
    tokens = []
    pos = _SPACE_RE.match(text).end()
    while pos < len(text):
        match = _TOKEN_RE.match(text, pos)
        if match is None:
            if text[pos] == "'":
                raise ODataError(f"Unterminated string literal starting at position {pos}")
            raise ODataError(f"Unexpected character {text[pos]!r} at position {pos}")
        tokens.append(_Token(match.lastgroup, match.group(), pos))
        pos = _SPACE_RE.match(text, match.end()).end()
    tokens.append(_Token("end", "", len(text)))
    return tokens


def _unquote(quoted: str) -> str:
    return quoted[1:-1].replace("''", "'")


def _datetime_text(token: _Token) -> str:
    """The text of a datetime literal, written datetime'…' or as a plain quoted string."""
    return _unquote(token.text[token.text.index("'"):])


# ---------------------------------------------------------------------------------------------
# Predicate builders. Each returns a closure; nothing is parsed per entity except the entity's
# own value.


def _make_getter(path: str) -> Callable[[dict], object]:
    keys = path.split("/")
    if len(keys) == 1:
        (key,) = keys
        return lambda entity: entity.get(key)
    if len(keys) == 2:
        outer, inner = keys

        def get_nested(entity: dict) -> object:
            parent = entity.get(outer)
            return parent.get(inner) if isinstance(parent, dict) else None

        return get_nested

    def get_deep(entity: dict) -> object:
        value: object = entity
        for key in keys:
            if not isinstance(value, dict):
                return None
            value = value.get(key)
        return value

    return get_deep


def _fold_case(value: object) -> str:
    return value.lower() if isinstance(value, str) else str(value).lower()


def _to_int(value: object) -> int:
    if isinstance(value, bool):
        raise TypeError("a boolean is not an integer")
    return value if isinstance(value, int) else int(value)


def _to_bool(value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise ValueError("not a boolean")


@functools.lru_cache(maxsize=1 << 17)
def _entity_datetime(value: str | datetime) -> datetime:
    """An entity's timestamp, read as parse_datetime reads it and remembered: a filtered listing of a big job reads
    every task's stored text, and most of those timestamps are the same from one listing to the next."""
    return parse_datetime(value)


_CONVERTERS: dict[str, Callable[[object], object]] = {
    STRING: _fold_case,
    ENUM: _fold_case,
    INTEGER: _to_int,
    DATETIME: _entity_datetime,
    BOOLEAN: _to_bool,
}


def _compare(get: Callable[[dict], object], kind: str, op_name: str, literal: object) -> Predicate:
    compare = _COMPARISON_OPS[op_name]
    # A missing or unusable value equals nothing and orders against nothing, so only 'ne' holds.
    when_missing = op_name == "ne"

    if kind in (STRING, ENUM):
        # Fast path: entity strings use the C-level str.lower; anything else falls back.
        def string_predicate(entity: dict) -> bool:
            value = get(entity)
            if value is None:
                return when_missing
            try:
                return compare(str.lower(value), literal)
            except TypeError:
                return compare(_fold_case(value), literal)

        return string_predicate

    convert = _CONVERTERS[kind]

    def typed_predicate(entity: dict) -> bool:
        value = get(entity)
        if value is None:
            return when_missing
        try:
            return compare(convert(value), literal)
        except (TypeError, ValueError):
            return when_missing

    return typed_predicate


def _starts_with(get: Callable[[dict], object], prefix: str) -> Predicate:
    def predicate(entity: dict) -> bool:
        value = get(entity)
        if value is None:
            return False
        try:
            return str.lower(value).startswith(prefix)
        except TypeError:
            return _fold_case(value).startswith(prefix)

    return predicate


def _is_null(get: Callable[[dict], object], want_null: bool) -> Predicate:
    if want_null:
        return lambda entity: get(entity) is None
    return lambda entity: get(entity) is not None


def _both(left: Predicate, right: Predicate) -> Predicate:
    return lambda entity: left(entity) and right(entity)


def _either(left: Predicate, right: Predicate) -> Predicate:
    return lambda entity: left(entity) or right(entity)


def _negate(inner: Predicate) -> Predicate:
    return lambda entity: not inner(entity)


def _always_true(entity: dict) -> bool:
    return True


# ---------------------------------------------------------------------------------------------
# Parser (recursive descent):
#   or_expr   := and_expr ('or' and_expr)*
#   and_expr  := unary ('and' unary)*
#   unary     := 'not' (group | call) | primary
#   primary   := group | call | comparison
#   group     := '(' or_expr ')'
#   call      := 'startswith' '(' path ',' string ')' [('eq' | 'ne') ('true' | 'false')]
#   comparison:= path op literal


class _Parser:
    def __init__(self, text: str, fields: dict[str, str]) -> None:
        self.tokens = _tokenize(text)
        self.index = 0
        self.fields = fields

    @property
    def current(self) -> _Token:
        return self.tokens[self.index]

    def advance(self) -> _Token:
        token = self.tokens[self.index]
        if token.kind != "end":
            self.index += 1
        return token

    def at_punct(self, char: str) -> bool:
        return self.current.kind == "punct" and self.current.text == char

    def expect_punct(self, char: str, context: str) -> _Token:
        if not self.at_punct(char):
            token = self.current
            raise ODataError(
                f"Expected '{char}' {context} at position {token.pos}, found {token.describe()}"
            )
        return self.advance()

    def parse(self) -> Predicate:
        predicate = self.parse_or()
        if self.current.kind != "end":
            token = self.current
            raise ODataError(
                f"Unexpected {token.describe()} at position {token.pos} after a complete expression"
            )
        return predicate

    def parse_or(self) -> Predicate:
        predicate = self.parse_and()
        while self.current.keyword == "or":
            self.advance()
            predicate = _either(predicate, self.parse_and())
        return predicate

    def parse_and(self) -> Predicate:
        predicate = self.parse_unary()
        while self.current.keyword == "and":
            self.advance()
            predicate = _both(predicate, self.parse_unary())
        return predicate

    def parse_unary(self) -> Predicate:
        if self.current.keyword != "not":
            return self.parse_primary()
        not_token = self.advance()
        # Restricting 'not' to groups and calls avoids the ambiguous `not state eq 'x'`.
        if not (self.at_punct("(") or self.current.keyword == "startswith"):
            raise ODataError(
                f"Expected '(' or startswith after 'not' at position {not_token.pos}, "
                f"found {self.current.describe()}"
            )
        return _negate(self.parse_primary())

    def parse_primary(self) -> Predicate:
        token = self.current
        if self.at_punct("("):
            self.advance()
            predicate = self.parse_or()
            self.expect_punct(")", f"to close the '(' at position {token.pos}")
            return predicate
        if token.keyword == "startswith":
            return self.parse_startswith()
        return self.parse_comparison()

    def parse_path(self) -> tuple[str, str]:
        token = self.current
        if token.kind != "word" or token.keyword is not None:
            raise ODataError(
                f"Expected a property name at position {token.pos}, found {token.describe()}"
            )
        kind = self.fields.get(token.text)
        if kind is None:
            raise ODataError(
                f"Unsupported property '{token.text}' in $filter at position {token.pos}"
            )
        if kind not in _ALLOWED_OPS:
            raise ValueError(f"Unknown field type {kind!r} for property '{token.text}'")
        self.advance()
        return token.text, kind

    def parse_startswith(self) -> Predicate:
        call = self.advance()
        self.expect_punct("(", "after 'startswith'")
        path_token = self.current
        path, kind = self.parse_path()
        if "startswith" not in _ALLOWED_OPS[kind]:
            raise ODataError(
                f"startswith is not supported on {kind} property '{path}' "
                f"at position {path_token.pos}"
            )
        self.expect_punct(",", f"after '{path}' in startswith")
        prefix_token = self.current
        if prefix_token.kind != "string":
            raise ODataError(
                f"Expected a quoted string as the startswith prefix at position "
                f"{prefix_token.pos}, found {prefix_token.describe()}"
            )
        self.advance()
        self.expect_punct(")", f"to close startswith at position {call.pos}")
        predicate = _starts_with(_make_getter(path), _unquote(prefix_token.text).lower())
        return self.parse_boolean_suffix(predicate)

    def parse_boolean_suffix(self, predicate: Predicate) -> Predicate:
        # OData v3 clients often write `startswith(id,'x') eq true`.
        op = self.current.keyword
        if op not in ("eq", "ne"):
            return predicate
        op_token = self.advance()
        value_token = self.current
        if value_token.keyword not in ("true", "false"):
            raise ODataError(
                f"Expected true or false after '{op_token.text}' at position {value_token.pos}, "
                f"found {value_token.describe()}"
            )
        self.advance()
        wanted = (value_token.keyword == "true") == (op == "eq")
        return predicate if wanted else _negate(predicate)

    def parse_comparison(self) -> Predicate:
        path_token = self.current
        path, kind = self.parse_path()
        op_token = self.current
        op = op_token.keyword
        if op not in _COMPARISON_OPS:
            raise ODataError(
                f"Expected a comparison operator (eq, ne, gt, ge, lt, le) after '{path}' "
                f"at position {op_token.pos}, found {op_token.describe()}"
            )
        if op not in _ALLOWED_OPS[kind]:
            raise ODataError(
                f"Operator '{op}' is not supported on {kind} property '{path}' "
                f"at position {op_token.pos}"
            )
        self.advance()
        literal_token = self.advance()
        get = _make_getter(path)

        if literal_token.keyword == "null":
            if op not in ("eq", "ne"):
                raise ODataError(
                    f"null can only be compared with eq or ne, not '{op}' "
                    f"at position {literal_token.pos}"
                )
            return _is_null(get, op == "eq")

        literal = self.convert_literal(literal_token, kind, op_token.text, path_token.text)
        return _compare(get, kind, op, literal)

    def convert_literal(self, token: _Token, kind: str, op_text: str, path: str) -> object:
        def wrong_type() -> ODataError:
            return ODataError(
                f"Expected {_TYPE_NOUNS[kind]} after '{op_text}' at position {token.pos} "
                f"(property '{path}' is {kind}), found {token.describe()}"
            )

        if kind in (STRING, ENUM):
            if token.kind != "string":
                raise wrong_type()
            return _unquote(token.text).lower()
        if kind == INTEGER:
            if token.kind != "number" or "." in token.text:
                raise wrong_type()
            return int(token.text)
        if kind == DATETIME:
            if token.kind not in ("datetime", "string"):
                raise wrong_type()
            raw = _datetime_text(token)
            try:
                return parse_datetime(raw)
            except ValueError:
                raise ODataError(
                    f"Invalid datetime {raw!r} at position {token.pos} for property '{path}'"
                ) from None
        if kind == BOOLEAN:
            if token.keyword not in ("true", "false"):
                raise wrong_type()
            return token.keyword == "true"
        raise AssertionError(f"unhandled field type {kind!r}")


def compile_filter(text: str | None, fields: dict[str, str]) -> Callable[[dict], bool]:
    """Compile a $filter expression into a predicate over an entity dict.

    `fields` maps allowed property paths ('id', 'state', 'executionInfo/exitCode', ...) to one of
    the type constants. None or empty/blank text -> a predicate that is always True.
    Raises ODataError for syntax errors, unknown properties, an operator a type does not support,
    or a literal of the wrong type.
    """
    if text is None or not text.strip():
        return _always_true
    return _Parser(text, fields).parse()


def lower_bound(text: str | None, path: str) -> datetime | None:
    """The earliest value of the DATETIME property `path` an entity can hold and still match the filter `text`, which
    has compiled: the latest literal of the `path ge …` or `path gt …` clauses that every match satisfies (the whole
    filter, or clauses joined by `and` alone); None when it sets no such bound. A listing can then read the entities
    from that moment on only, and the filter still decides about each."""
    if text is None or not text.strip():
        return None
    tokens = _tokenize(text)
    # In a group, a negation, an alternative or a call, a clause need not hold for every match.
    if any(token.kind == "punct" or token.keyword in ("or", "not") for token in tokens):
        return None
    bounds = []
    for name, op, literal in zip(tokens, tokens[1:], tokens[2:], strict=False):
        if name.kind == "word" and name.text == path and op.keyword in ("ge", "gt") \
                and literal.kind in ("datetime", "string"):
            bounds.append(parse_datetime(_datetime_text(literal)))
    return max(bounds, default=None)


# ---------------------------------------------------------------------------------------------
# $select

_SELECT_ITEM_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*(?:/[A-Za-z_][A-Za-z0-9_.]*)*")


def parse_select(text: str | None) -> list[str] | None:
    """'id,state, executionInfo/exitCode' -> ['id','state','executionInfo/exitCode'].

    None/blank -> None. Raises ODataError on empty items or bad characters.
    """
    if text is None or not text.strip():
        return None
    items = []
    for index, raw in enumerate(text.split(",")):
        item = raw.strip()
        if not item:
            raise ODataError(f"Empty property name in $select (item {index + 1})")
        if not _SELECT_ITEM_RE.fullmatch(item):
            raise ODataError(f"Invalid property name '{item}' in $select")
        if item not in items:
            items.append(item)
    return items


_ABSENT = object()
# project() runs once per returned entity with the same few select lists; splitting paths once per
# distinct list keeps it cheap. Bounded so arbitrary client input cannot grow it without limit.
_SPLIT_SELECT_CACHE: dict[tuple[str, ...], tuple[tuple[str, ...], ...]] = {}
_SPLIT_SELECT_CACHE_LIMIT = 256


def _split_select(select: list[str]) -> tuple[tuple[str, ...], ...]:
    key = tuple(select)
    split = _SPLIT_SELECT_CACHE.get(key)
    if split is None:
        if len(_SPLIT_SELECT_CACHE) >= _SPLIT_SELECT_CACHE_LIMIT:
            _SPLIT_SELECT_CACHE.clear()
        split = _SPLIT_SELECT_CACHE[key] = tuple(tuple(path.split("/")) for path in select)
    return split


def project(entity: dict, select: list[str] | None) -> dict:
    """Return a new dict with only the selected properties (select None -> entity unchanged).

    A nested path 'executionInfo/exitCode' keeps {'executionInfo': {'exitCode': ...}}, merged with
    other paths under the same parent. Missing properties are left out. Top-level 'url' and
    'odata.metadata' are not kept unless selected. The input is never mutated; selected values are
    shared with it rather than copied.
    """
    if select is None:
        return entity
    result: dict = {}
    # Parent dicts this call built; any other dict in `result` is the entity's own and must not be
    # written into (its whole value was selected, so deeper paths under it are already covered).
    # Keyed by id, holding the dict itself so an id cannot be recycled mid-call.
    built: dict[int, dict] = {}
    for keys in _split_select(select):
        if len(keys) == 1:
            value = entity.get(keys[0], _ABSENT)
            if value is not _ABSENT:
                result[keys[0]] = value
            continue
        value = entity
        for key in keys:
            value = value.get(key, _ABSENT) if isinstance(value, dict) else _ABSENT
            if value is _ABSENT:
                break
        if value is _ABSENT:
            continue
        target = result
        for key in keys[:-1]:
            child = target.get(key)
            if child is None:
                child = target[key] = {}
                built[id(child)] = child
            elif id(child) not in built:
                target = None
                break
            target = child
        if target is not None:
            target[keys[-1]] = value
    return result
