"""A SOQL subset: parsed once, checked against the schema, compiled into Python callables.

Supported::

    SELECT COUNT() | field, field... FROM Object
    [WHERE condition]          comparisons (= != <> < <= > >=), [NOT] IN (...), LIKE, NOT,
                               AND / OR with parentheses (mixing them unparenthesised is an
                               error, as in Salesforce), literals: 'strings', numbers, true,
                               false, null, dates (2024-05-01), datetimes (2024-05-01T10:00:00Z)
    [ORDER BY field [ASC|DESC] [NULLS FIRST|LAST], ...]
    [LIMIT n] [OFFSET n]

String comparisons are case-insensitive, like Salesforce's. Errors raise :class:`ApiError`
with ``MALFORMED_QUERY``, ``INVALID_FIELD`` or ``INVALID_TYPE``, as the real API answers.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from refsync.sandbox.salesforce.errors import ApiError
from refsync.sandbox.salesforce.schema import NUMBER_TYPES, STRING_TYPES, FieldDef, ObjectDef

__all__ = ["CompiledQuery", "OrderItem", "compile_query", "format_datetime", "parse_datetime"]

Record = dict[str, Any]
Predicate = Callable[[Record], bool]

_TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<string>'(?:[^'\\]|\\.)*')
  | (?P<datetime>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:?\d{2}))
  | (?P<date>\d{4}-\d{2}-\d{2})
  | (?P<number>[-+]?\d+(?:\.\d+)?)
  | (?P<op>!=|<>|<=|>=|=|<|>)
  | (?P<punct>[(),])
  | (?P<ident>[A-Za-z_][A-Za-z0-9_.]*)
    """,
    re.VERBOSE,
)
_KEYWORDS = {
    "select", "from", "where", "and", "or", "not", "in", "like", "order", "by", "asc", "desc",
    "nulls", "first", "last", "limit", "offset", "null", "true", "false",
}
_STRING_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f", "'": "'", '"': '"',
                   "\\": "\\", "_": "\\_", "%": "\\%"}


def format_datetime(value: datetime) -> str:
    """Format a datetime the way Salesforce returns it: ``2024-05-01T10:00:00.000+0000``."""
    value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}+0000"


def parse_datetime(text: str) -> datetime:
    """Parse an ISO-8601 datetime (``Z``, ``+00:00`` or ``+0000`` offsets) into aware UTC.

    Raises:
        ValueError: not a datetime.
    """
    cleaned = text.strip().replace(" ", "T")
    if cleaned.endswith("Z"):
        cleaned = cleaned[:-1] + "+00:00"
    match = re.search(r"([+-]\d{2})(\d{2})$", cleaned)
    if match and ":" not in cleaned[-6:]:
        cleaned = cleaned[: match.start()] + f"{match.group(1)}:{match.group(2)}"
    parsed = datetime.fromisoformat(cleaned)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


@dataclass(frozen=True)
class _Token:
    kind: str
    text: str
    pos: int

    @property
    def keyword(self) -> str | None:
        lowered = self.text.lower()
        return lowered if self.kind == "ident" and lowered in _KEYWORDS else None


@dataclass(frozen=True)
class OrderItem:
    """One ``ORDER BY`` term."""

    field: str
    descending: bool = False
    nulls_last: bool | None = None
    case_insensitive: bool = True


@dataclass
class CompiledQuery:
    """A parsed, checked and compiled SOQL query."""

    object_name: str
    fields: list[str]
    count_only: bool
    where: Predicate | None
    order_by: list[OrderItem] = field(default_factory=list)
    limit: int | None = None
    offset: int = 0

    def run(self, records: list[Record]) -> list[Record]:
        """Filter, sort and cut ``records`` as the query says (records are not copied)."""
        rows = [r for r in records if self.where(r)] if self.where else list(records)
        for item in reversed(self.order_by):
            rows.sort(key=_sort_key(item), reverse=item.descending)
        if self.offset:
            rows = rows[self.offset:]
        if self.limit is not None:
            rows = rows[: self.limit]
        return rows


def _sort_key(item: OrderItem) -> Callable[[Record], tuple[int, Any]]:
    nulls_last = item.nulls_last if item.nulls_last is not None else item.descending
    # reverse=True flips the null rank too, so rank nulls before the reverse is applied.
    null_rank = (1 if nulls_last else -1) * (-1 if item.descending else 1)
    name = item.field
    fold = item.case_insensitive

    def key(record: Record) -> tuple[int, Any]:
        value = record.get(name)
        if value is None:
            return (null_rank, "")
        return (0, value.lower() if fold and isinstance(value, str) else value)

    return key


class _Parser:
    def __init__(self, soql: str, objects: dict[str, ObjectDef]) -> None:
        self.soql = soql
        self.objects = objects
        self.tokens = self._tokenize(soql)
        self.index = 0
        self.obj: ObjectDef | None = None

    # -- tokens ---------------------------------------------------------------------------
    def _tokenize(self, soql: str) -> list[_Token]:
        tokens: list[_Token] = []
        pos = 0
        while pos < len(soql):
            match = _TOKEN.match(soql, pos)
            if match is None:
                raise self._malformed(f"unexpected token: '{soql[pos:].split()[0]}'", pos)
            kind = match.lastgroup or ""
            if kind != "ws":
                tokens.append(_Token(kind, match.group(), pos))
            pos = match.end()
        return tokens

    def _malformed(self, message: str, pos: int | None = None) -> ApiError:
        column = (pos if pos is not None else len(self.soql)) + 1
        return ApiError(400, "MALFORMED_QUERY",
                        f"\n{self.soql}\n{' ' * (column - 1)}^\nERROR at Row:1:Column:{column}\n"
                        f"{message}")

    def peek(self) -> _Token | None:
        return self.tokens[self.index] if self.index < len(self.tokens) else None

    def next(self) -> _Token:
        token = self.peek()
        if token is None:
            raise self._malformed("unexpected end of query")
        self.index += 1
        return token

    def at(self, text: str) -> bool:
        token = self.peek()
        return token is not None and token.text == text

    def accept_keyword(self, *words: str) -> str | None:
        token = self.peek()
        if token is not None and token.keyword in words:
            self.index += 1
            return token.keyword
        return None

    def expect_keyword(self, word: str) -> None:
        token = self.peek()
        if token is None or token.keyword != word:
            found = token.text if token else "end of query"
            raise self._malformed(f"unexpected token: '{found}'",
                                  token.pos if token else None)
        self.index += 1

    def expect_punct(self, char: str) -> None:
        token = self.next()
        if token.text != char:
            raise self._malformed(f"unexpected token: '{token.text}'", token.pos)

    # -- grammar --------------------------------------------------------------------------
    def parse(self) -> CompiledQuery:
        self.expect_keyword("select")
        raw_fields, count_only = self._select_list()
        self.expect_keyword("from")
        obj_token = self.next()
        if obj_token.kind != "ident" or obj_token.keyword is not None:
            raise self._malformed(f"unexpected token: '{obj_token.text}'", obj_token.pos)
        obj = next((o for n, o in self.objects.items() if n.lower() == obj_token.text.lower()),
                   None)
        if obj is None:
            raise ApiError(400, "INVALID_TYPE",
                           f"\n{self.soql}\n{' ' * obj_token.pos}^\nERROR at Row:1:Column:"
                           f"{obj_token.pos + 1}\nsObject type '{obj_token.text}' is not "
                           "supported. If you are attempting to use a custom object, be sure to "
                           "append the '__c' after the entity name.")
        self.obj = obj
        fields = [self._field(token).name for token in raw_fields]
        where = None
        if self.accept_keyword("where"):
            where = self._condition()
        order_by: list[OrderItem] = []
        if self.accept_keyword("order"):
            self.expect_keyword("by")
            order_by.append(self._order_item())
            while self.at(","):
                self.index += 1
                order_by.append(self._order_item())
        limit = self._int_clause("limit")
        offset = self._int_clause("offset") or 0
        token = self.peek()
        if token is not None:
            raise self._malformed(f"unexpected token: '{token.text}'", token.pos)
        return CompiledQuery(obj.name, fields, count_only, where, order_by, limit, offset)

    def _select_list(self) -> tuple[list[_Token], bool]:
        token = self.next()
        if token.text.lower() == "count" and self.at("("):
            self.expect_punct("(")
            self.expect_punct(")")
            return [], True
        fields = [token]
        while self.at(","):
            self.index += 1
            fields.append(self.next())
        for item in fields:
            if item.kind != "ident" or item.keyword is not None:
                raise self._malformed(f"unexpected token: '{item.text}'", item.pos)
        return fields, False

    def _field(self, token: _Token) -> FieldDef:
        assert self.obj is not None
        if token.kind != "ident" or token.keyword is not None:
            raise self._malformed(f"unexpected token: '{token.text}'", token.pos)
        definition = self.obj.get(token.text)
        if definition is None:
            raise ApiError(
                400, "INVALID_FIELD",
                f"\n{self.soql}\n{' ' * token.pos}^\nERROR at Row:1:Column:{token.pos + 1}\n"
                f"No such column '{token.text}' on entity '{self.obj.name}'. If you are "
                "attempting to use a custom field, be sure to append the '__c' after the custom "
                "field name. Please reference your WSDL or the describe call for the "
                "appropriate names.",
            )
        return definition

    def _int_clause(self, keyword: str) -> int | None:
        if not self.accept_keyword(keyword):
            return None
        token = self.next()
        if token.kind != "number" or not token.text.isdigit():
            raise self._malformed(f"unexpected token: '{token.text}'", token.pos)
        return int(token.text)

    def _order_item(self) -> OrderItem:
        definition = self._field(self.next())
        descending = self.accept_keyword("asc", "desc") == "desc"
        nulls_last: bool | None = None
        if self.accept_keyword("nulls"):
            which = self.accept_keyword("first", "last")
            if which is None:
                raise self._malformed("expecting FIRST or LAST after NULLS")
            nulls_last = which == "last"
        return OrderItem(definition.name, descending, nulls_last,
                         case_insensitive=definition.type not in ("id", "reference"))

    def _condition(self) -> Predicate:
        parts = [self._unary()]
        joiner: str | None = None
        while True:
            token = self.peek()
            word = token.keyword if token else None
            if word not in ("and", "or"):
                break
            assert token is not None
            if joiner is not None and word != joiner:
                raise self._malformed(f"unexpected token: '{token.text}'", token.pos)
            joiner = word
            self.index += 1
            parts.append(self._unary())
        if len(parts) == 1:
            return parts[0]
        if joiner == "and":
            return lambda r: all(p(r) for p in parts)
        return lambda r: any(p(r) for p in parts)

    def _unary(self) -> Predicate:
        if self.accept_keyword("not"):
            inner = self._unary()
            return lambda r: not inner(r)
        token = self.peek()
        if token is not None and token.text == "(":
            self.index += 1
            inner = self._condition()
            self.expect_punct(")")
            return inner
        return self._comparison()

    def _comparison(self) -> Predicate:
        definition = self._field(self.next())
        token = self.next()
        negate = False
        if token.keyword == "not":
            negate = True
            token = self.next()
            if token.keyword != "in":
                raise self._malformed(f"unexpected token: '{token.text}'", token.pos)
        if token.keyword == "in":
            self.expect_punct("(")
            values = [self._literal(definition)]
            while self.at(","):
                self.index += 1
                values.append(self._literal(definition))
            self.expect_punct(")")
            return _in_predicate(definition, values, negate)
        if token.keyword == "like":
            literal = self.next()
            if literal.kind != "string":
                raise self._malformed(f"unexpected token: '{literal.text}'", literal.pos)
            return _like_predicate(definition.name, _unquote(literal.text))
        if token.kind != "op":
            raise self._malformed(f"unexpected token: '{token.text}'", token.pos)
        value = self._literal(definition)
        return _compare_predicate(definition, "!=" if token.text == "<>" else token.text, value)

    def _literal(self, definition: FieldDef) -> Any:
        token = self.next()
        word = token.keyword
        if word == "null":
            return None
        kind = definition.type
        if word in ("true", "false"):
            if kind != "boolean":
                raise self._type_error(definition, "boolean", token)
            return word == "true"
        if token.kind == "string":
            if kind in ("datetime", "date", "boolean") or kind in NUMBER_TYPES:
                raise self._type_error(definition, _type_word(kind), token, quoted=True)
            return _unquote(token.text)
        if token.kind == "datetime":
            if kind != "datetime":
                raise self._type_error(definition, _type_word(kind), token)
            try:
                return format_datetime(parse_datetime(token.text))
            except ValueError as exc:
                raise self._malformed(f"invalid datetime: {token.text}", token.pos) from exc
        if token.kind == "date":
            if kind != "date":
                raise self._type_error(definition, _type_word(kind), token)
            return token.text
        if token.kind == "number":
            if kind not in NUMBER_TYPES:
                raise self._type_error(definition, _type_word(kind), token)
            return float(token.text) if "." in token.text else int(token.text)
        raise self._malformed(f"unexpected token: '{token.text}'", token.pos)

    def _type_error(
        self, definition: FieldDef, expected: str, token: _Token, quoted: bool = False
    ) -> ApiError:
        quotes = ("should not be enclosed in quotes" if quoted or expected != "string"
                  else "should be enclosed in quotes")
        return ApiError(
            400, "INVALID_FIELD",
            f"\n{self.soql}\n{' ' * token.pos}^\nERROR at Row:1:Column:{token.pos + 1}\n"
            f"value of filter criterion for field '{definition.name}' must be of type "
            f"{expected} and {quotes}",
        )


def _type_word(kind: str) -> str:
    if kind in STRING_TYPES:
        return "string"
    return {"datetime": "dateTime", "int": "integer"}.get(kind, kind)


def _unquote(text: str) -> str:
    body = text[1:-1]
    return re.sub(r"\\(.)", lambda m: _STRING_ESCAPES.get(m.group(1), m.group(1)), body)


def _normalize(definition: FieldDef) -> Callable[[Any], Any]:
    if definition.type in STRING_TYPES and definition.type not in ("id", "reference"):
        return lambda v: v.lower() if isinstance(v, str) else v
    return lambda v: v


def _compare_predicate(definition: FieldDef, op: str, literal: Any) -> Predicate:
    name = definition.name
    norm = _normalize(definition)
    target = norm(literal)
    if op == "=":
        return lambda r: norm(r.get(name)) == target
    if op == "!=":
        return lambda r: norm(r.get(name)) != target
    if target is None:
        return lambda r: False
    compare: Callable[[Any, Any], bool] = {
        "<": lambda a, b: a < b, "<=": lambda a, b: a <= b,
        ">": lambda a, b: a > b, ">=": lambda a, b: a >= b,
    }[op]

    def predicate(record: Record) -> bool:
        value = record.get(name)
        return value is not None and compare(norm(value), target)

    return predicate


def _in_predicate(definition: FieldDef, values: list[Any], negate: bool) -> Predicate:
    name = definition.name
    norm = _normalize(definition)
    targets = {norm(v) for v in values}
    if negate:
        return lambda r: norm(r.get(name)) not in targets
    return lambda r: norm(r.get(name)) in targets


def _like_predicate(name: str, pattern: str) -> Predicate:
    parts = []
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if char == "\\" and i + 1 < len(pattern):
            parts.append(re.escape(pattern[i + 1]))
            i += 2
            continue
        parts.append(".*" if char == "%" else "." if char == "_" else re.escape(char))
        i += 1
    regex = re.compile("".join(parts), re.IGNORECASE | re.DOTALL)

    def predicate(record: Record) -> bool:
        value = record.get(name)
        return isinstance(value, str) and regex.fullmatch(value) is not None

    return predicate


def compile_query(soql: str, objects: dict[str, ObjectDef]) -> CompiledQuery:
    """Parse ``soql`` against ``objects`` and compile it.

    Raises:
        ApiError: MALFORMED_QUERY, INVALID_FIELD or INVALID_TYPE, with Salesforce's wording.
    """
    if not soql or not soql.strip():
        raise ApiError(400, "MALFORMED_QUERY", "A query string has to be specified")
    return _Parser(soql, objects).parse()
