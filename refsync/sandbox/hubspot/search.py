"""The CRM search endpoint: filter groups compiled once into predicates, sorts, paging, caps.

Rules reproduced from the real API:
- at most 5 filter groups, 10 filters in a group and 25 filters in all; groups are OR-ed,
  filters in a group AND-ed;
- ``limit`` at most 200; ``after`` is an offset, and no query pages past its 10,000th result:
  asking for ``after >= 10000`` is answered with a 400 (``total`` still counts every match);
- string comparisons ignore case; number and datetime properties compare as numbers
  (datetimes accept epoch milliseconds or ISO 8601);
- results come sorted by the requested sorts, ties (and unsorted queries) by id.
"""

from __future__ import annotations

import fnmatch
import json
import re
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable
from typing import Any

from refsync.sandbox.hubspot.clock import parse_timestamp_ms
from refsync.sandbox.hubspot.errors import HubSpotApiError
from refsync.sandbox.hubspot.schema import NUMERIC_TYPES, ObjectSchema, PropertyDef
from refsync.sandbox.hubspot.store import HubSpotRecord, ObjectStore

__all__ = [
    "MAX_FILTERS",
    "MAX_FILTERS_PER_GROUP",
    "MAX_GROUPS",
    "MAX_SEARCH_LIMIT",
    "SEARCH_RESULT_CAP",
    "SearchIndex",
    "compile_filter_groups",
    "run_search",
]

MAX_GROUPS = 5
MAX_FILTERS_PER_GROUP = 10
MAX_FILTERS = 25
MAX_SEARCH_LIMIT = 200
SEARCH_RESULT_CAP = 10_000

Predicate = Callable[[HubSpotRecord], bool]
_TOKEN_SPLIT = re.compile(r"[^0-9a-z]+")


def _tokens(text: str) -> set[str]:
    return {t for t in _TOKEN_SPLIT.split(text.lower()) if t}


def _bad(message: str) -> HubSpotApiError:
    return HubSpotApiError.validation(message)


def _to_number(definition: PropertyDef, value: Any) -> float:
    text = str(value).strip()
    if definition.type == "number":
        try:
            return float(text)
        except ValueError:
            raise _bad(f"{text} is not a valid number for property {definition.name}") from None
    parsed = parse_timestamp_ms(text)
    if parsed is None:
        raise _bad(f"{text} is not a valid date for property {definition.name}")
    return float(parsed)


def _compile_filter(schema: ObjectSchema, spec: dict[str, Any]) -> Predicate:
    name = spec.get("propertyName")
    operator = str(spec.get("operator", "EQ")).upper()
    if not isinstance(name, str) or name not in schema.properties:
        raise _bad(f'Property "{name}" does not exist on {schema.name}')
    definition = schema.properties[name]

    if operator == "HAS_PROPERTY":
        return lambda r: name in r.properties
    if operator == "NOT_HAS_PROPERTY":
        return lambda r: name not in r.properties
    if operator in ("CONTAINS_TOKEN", "NOT_CONTAINS_TOKEN"):
        query = str(spec.get("value", "")).lower()
        if "*" in query:
            def contains(r: HubSpotRecord) -> bool:
                value = r.properties.get(name)
                if value is None:
                    return False
                low = value.lower()
                return fnmatch.fnmatchcase(low, query) or any(
                    fnmatch.fnmatchcase(t, query) for t in _tokens(low))
        else:
            wanted = _tokens(query)

            def contains(r: HubSpotRecord) -> bool:
                value = r.properties.get(name)
                return value is not None and (value.lower() == query or wanted <= _tokens(value))
        if operator == "CONTAINS_TOKEN":
            return contains
        return lambda r: not contains(r)

    numeric = definition.type in NUMERIC_TYPES
    if operator in ("IN", "NOT_IN"):
        raw_values = spec.get("values")
        if not isinstance(raw_values, list) or not raw_values:
            raise _bad(f"operator {operator} needs a non-empty 'values' list")
        if numeric:
            numbers = {_to_number(definition, v) for v in raw_values}
            member: Predicate = lambda r: r.numbers.get(name) in numbers  # noqa: E731
        else:
            texts = {str(v).lower() for v in raw_values}
            member = lambda r: (r.properties.get(name) or "").lower() in texts  # noqa: E731
        if operator == "IN":
            return lambda r: name in r.properties and member(r)
        return lambda r: not member(r)

    if operator == "BETWEEN":
        if "value" not in spec or "highValue" not in spec:
            raise _bad("operator BETWEEN needs 'value' and 'highValue'")
        if numeric:
            low_n, high_n = _to_number(definition, spec["value"]), _to_number(
                definition, spec["highValue"])

            def between(r: HubSpotRecord) -> bool:
                n = r.numbers.get(name)
                return n is not None and low_n <= n <= high_n
            return between
        low_s, high_s = str(spec["value"]).lower(), str(spec["highValue"]).lower()

        def between_text(r: HubSpotRecord) -> bool:
            v = r.properties.get(name)
            return v is not None and low_s <= v.lower() <= high_s
        return between_text

    if operator not in ("EQ", "NEQ", "LT", "LTE", "GT", "GTE"):
        raise _bad(f"Unknown operator {operator}")
    if "value" not in spec:
        raise _bad(f"operator {operator} needs a 'value'")
    if numeric:
        target = _to_number(definition, spec["value"])
        compare_n: dict[str, Callable[[float], bool]] = {
            "EQ": lambda n: n == target, "NEQ": lambda n: n != target,
            "LT": lambda n: n < target, "LTE": lambda n: n <= target,
            "GT": lambda n: n > target, "GTE": lambda n: n >= target,
        }
        test_n = compare_n[operator]
        if operator == "NEQ":
            return lambda r: name not in r.numbers or test_n(r.numbers[name])
        return lambda r: name in r.numbers and test_n(r.numbers[name])
    text = str(spec["value"]).lower()
    compare_s: dict[str, Callable[[str], bool]] = {
        "EQ": lambda v: v == text, "NEQ": lambda v: v != text,
        "LT": lambda v: v < text, "LTE": lambda v: v <= text,
        "GT": lambda v: v > text, "GTE": lambda v: v >= text,
    }
    test_s = compare_s[operator]
    if operator == "NEQ":
        return lambda r: name not in r.properties or test_s(r.properties[name].lower())
    return lambda r: name in r.properties and test_s(r.properties[name].lower())


def compile_filter_groups(schema: ObjectSchema, groups: Any) -> Predicate | None:
    """Check the limits and compile ``filterGroups`` into one predicate (``None``: match all)."""
    if groups in (None, []):
        return None
    if not isinstance(groups, list):
        raise _bad("filterGroups must be a list")
    if len(groups) > MAX_GROUPS:
        raise _bad(f"Too many filter groups ({len(groups)}); the maximum is {MAX_GROUPS}")
    compiled: list[list[Predicate]] = []
    total = 0
    for group in groups:
        filters = group.get("filters", []) if isinstance(group, dict) else None
        if not isinstance(filters, list):
            raise _bad("each filter group needs a 'filters' list")
        if len(filters) > MAX_FILTERS_PER_GROUP:
            raise _bad(f"Too many filters in a filter group ({len(filters)}); "
                       f"the maximum is {MAX_FILTERS_PER_GROUP}")
        total += len(filters)
        compiled.append([_compile_filter(schema, f) for f in filters])
    if total > MAX_FILTERS:
        raise _bad(f"Too many filters ({total}); the maximum is {MAX_FILTERS} in all")
    if len(compiled) == 1:
        only = compiled[0]
        return lambda r: all(p(r) for p in only)
    return lambda r: any(all(p(r) for p in group) for group in compiled)


def _free_text(schema: ObjectSchema, query: str) -> Predicate:
    wanted = query.lower()
    names = schema.search_text

    def matches(r: HubSpotRecord) -> bool:
        return any(wanted in (r.properties.get(n) or "").lower() for n in names)
    return matches


def _sorted(schema: ObjectSchema, records: list[HubSpotRecord], sorts: Any) -> list[HubSpotRecord]:
    if not sorts:
        return records
    if not isinstance(sorts, list):
        raise _bad("sorts must be a list")
    for spec in reversed(sorts):
        if isinstance(spec, str):
            name, descending = spec.lstrip("-"), spec.startswith("-")
        elif isinstance(spec, dict):
            name = spec.get("propertyName", "")
            descending = str(spec.get("direction", "ASCENDING")).upper() == "DESCENDING"
        else:
            raise _bad("each sort needs a propertyName")
        definition = schema.properties.get(name)
        if definition is None:
            raise _bad(f'Property "{name}" does not exist on {schema.name}')
        present: list[HubSpotRecord]
        missing: list[HubSpotRecord]
        if definition.type in NUMERIC_TYPES:
            present = [r for r in records if name in r.numbers]
            missing = [r for r in records if name not in r.numbers]
            present.sort(key=lambda r: r.numbers[name], reverse=descending)
        else:
            present = [r for r in records if name in r.properties]
            missing = [r for r in records if name not in r.properties]
            present.sort(key=lambda r: r.properties[name].lower(), reverse=descending)
        records = present + missing
    return records


class SearchIndex:
    """What search sees: the live records, or, with a lag, their state ``lag_ms`` ago.

    The real search index trails writes by a few seconds. With ``lag_ms > 0`` every write is
    queued as a snapshot that becomes visible to search only once the lag has passed.

    Args:
        now_ms: current time in epoch milliseconds.
    """

    def __init__(self, now_ms: Callable[[], int]) -> None:
        self._now_ms = now_ms
        self.lag_ms = 0
        self._views: dict[str, dict[str, HubSpotRecord]] = {}
        self._pending: deque[tuple[int, str, HubSpotRecord]] = deque()
        self._cache: OrderedDict[tuple[Any, ...], list[HubSpotRecord]] = OrderedDict()

    def set_lag(self, lag_ms: int, stores: dict[str, ObjectStore]) -> None:
        """Change the lag; the lagging view starts from the current state."""
        self.lag_ms = max(0, int(lag_ms))
        self._pending.clear()
        self._cache.clear()
        self._views = {}
        if self.lag_ms:
            self._views = {
                name: {rid: rec.copy() for rid, rec in store.records.items()}
                for name, store in stores.items()
            }

    def written(self, type_name: str, records: Iterable[HubSpotRecord]) -> None:
        """Tell the index that records were written (call after every write)."""
        if not self.lag_ms:
            return
        visible_at = self._now_ms() + self.lag_ms
        for record in records:
            self._pending.append((visible_at, type_name, record.copy()))

    def reset(self) -> None:
        """Forget queued snapshots and cached results; keep the lag."""
        self._pending.clear()
        self._cache.clear()
        self._views = {}

    def records(self, store: ObjectStore) -> tuple[Iterable[HubSpotRecord], Any]:
        """The records search sees for a type, and a version key for result caching."""
        if not self.lag_ms:
            return store.records.values(), store.version
        now = self._now_ms()
        while self._pending and self._pending[0][0] <= now:
            _, type_name, snapshot = self._pending.popleft()
            self._views.setdefault(type_name, {})[snapshot.id] = snapshot
        view = self._views.setdefault(store.schema.name, {})
        return view.values(), None

    def cached(self, key: tuple[Any, ...]) -> list[HubSpotRecord] | None:
        """Ordered matches of an identical earlier query, if still valid."""
        hit = self._cache.get(key)
        if hit is not None:
            self._cache.move_to_end(key)
        return hit

    def remember(self, key: tuple[Any, ...], matches: list[HubSpotRecord]) -> None:
        """Cache ordered matches for the next pages of the same query."""
        self._cache[key] = matches
        while len(self._cache) > 8:
            self._cache.popitem(last=False)


def run_search(store: ObjectStore, index: SearchIndex, request: dict[str, Any]) -> dict[str, Any]:
    """Answer ``POST /crm/v3/objects/{type}/search`` for one object type."""
    schema = store.schema
    limit = request.get("limit", 10)
    try:
        limit = int(limit)
        after = int(request.get("after") or 0)
    except (TypeError, ValueError):
        raise _bad("limit and after must be integers") from None
    if limit < 1 or limit > MAX_SEARCH_LIMIT:
        raise _bad(f"limit must be between 1 and {MAX_SEARCH_LIMIT}; got {limit}")
    if after < 0:
        raise _bad("after must not be negative")
    if after >= SEARCH_RESULT_CAP:
        raise _bad(
            f"Search results are limited to {SEARCH_RESULT_CAP} per query; after={after} is "
            f"past the last page. Narrow the query (for example by last modified date) to "
            f"read further.")
    predicate = compile_filter_groups(schema, request.get("filterGroups"))
    query = request.get("query")
    text_match = _free_text(schema, str(query)) if query else None
    sorts = request.get("sorts")

    records, version = index.records(store)
    key_source = {k: request.get(k) for k in ("filterGroups", "sorts", "query")}
    key = (schema.name, version, json.dumps(key_source, sort_keys=True, default=str))
    matches = index.cached(key) if version is not None else None
    if matches is None:
        matches = [
            r for r in records
            if not r.archived
            and (predicate is None or predicate(r))
            and (text_match is None or text_match(r))
        ]
        matches = _sorted(schema, matches, sorts)
        if version is not None:
            index.remember(key, matches)

    names = request.get("properties") or None
    end = min(after + limit, len(matches), SEARCH_RESULT_CAP)
    page = matches[after:end]
    body: dict[str, Any] = {
        "total": len(matches),
        "results": [store.serialize(r, names) for r in page],
    }
    if end < len(matches):
        body["paging"] = {"next": {"after": str(end), "link": None}}
    return body
