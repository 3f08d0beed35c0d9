"""refsync.jsontext: orjson on the hot paths, the same results as the standard library."""

from __future__ import annotations

import json
import math
from enum import StrEnum
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from refsync import jsontext
from refsync.mapping.hashing import hash_normaliser

_STDLIB_HASH_TEXT = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False,
                                     default=str).encode


class _Status(StrEnum):
    WON = "won"


# what hash inputs are made of: normalised values (see refsync.mapping.hashing)
_TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40)
_NORMALISED = st.recursive(
    st.none() | st.booleans() | _TEXT,
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(_TEXT, children, max_size=4),
    max_leaves=20,
)


@settings(max_examples=400, deadline=None)
@given(st.lists(st.tuples(_TEXT, _NORMALISED), max_size=8))
def test_hash_text_is_the_text_hashes_were_always_computed_over(
    fields: list[tuple[str, Any]],
) -> None:
    items = [[path, value] for path, value in fields]
    assert jsontext.hash_text(items) == _STDLIB_HASH_TEXT(items)


@pytest.mark.parametrize("value", [
    "ünïcödé ✓ 😀", "quote \" backslash \\ slash /", "\x00\x01\x1f\x7f\u2028\u2029",
    "\b\f\n\r\t", _Status.WON, 2**70, {"nested": [1, 2, {"x": None}]},
])
def test_hash_text_agrees_on_awkward_values(value: Any) -> None:
    assert jsontext.hash_text([["path", value]]) == _STDLIB_HASH_TEXT([["path", value]])


def test_hash_text_of_normalised_dates_and_numbers_matches() -> None:
    items = [["a", hash_normaliser("datetime")("2024-01-05T10:00:00.000+0000")],
             ["b", hash_normaliser("decimal")("1200.00")],
             ["c", hash_normaliser("bool")("true")]]
    assert jsontext.hash_text(items) == _STDLIB_HASH_TEXT(items)


def test_dumps_round_trips_and_falls_back_where_orjson_refuses() -> None:
    value = {"a": [1, 2.5, None, True], "é": {"b": "c"}}
    assert json.loads(jsontext.dumps(value)) == value
    assert jsontext.dumps({1: "x"}) == '{"1":"x"}'  # keys written as text, as json does
    assert json.loads(jsontext.dumps({"big": 2**70})) == {"big": 2**70}
    # JSON has no NaN (PostgreSQL refuses the text json writes for it): stored as null
    assert json.loads(jsontext.dumps({"n": math.nan})) == {"n": None}
    with pytest.raises(TypeError):
        jsontext.dumps({"x": object()})


def test_loads_reads_what_json_reads() -> None:
    assert jsontext.loads(b'{"a": [1, "\\u00e9"]}') == {"a": [1, "é"]}
    assert jsontext.loads('{"big": 1180591620717411303424}') == {"big": 2**70}
    assert math.isinf(jsontext.loads("[Infinity]")[0])
    with pytest.raises(ValueError):
        jsontext.loads("{not json")


def test_json_ready_keeps_json_values_and_writes_the_rest_as_text() -> None:
    from datetime import UTC, datetime
    from decimal import Decimal

    at = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)
    value = {1: [at, Decimal("2.50"), ("a", None)], "ok": {"n": 3, "b": True, "f": 1.5}}
    assert jsontext.json_ready(value) == {
        "1": ["2026-03-01T09:30:00+00:00", "2.50", ["a", None]],
        "ok": {"n": 3, "b": True, "f": 1.5},
    }
