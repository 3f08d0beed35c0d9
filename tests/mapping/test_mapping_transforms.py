"""Each transform on its own: normal values, edge cases, and hypothesis fuzzing."""

from __future__ import annotations

import contextlib
import re
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from refsync.errors import RecordError
from refsync.mapping import transforms as t
from refsync.mapping.vocabulary import TRANSFORM_NAMES, TransformArgumentError, build_step


def test_strip_lower_upper_leave_non_text_alone() -> None:
    strip_text = t.strip
    assert strip_text("  a b ") == "a b"
    assert t.lower("AbC") == "abc"
    assert t.upper("AbC") == "ABC"
    assert t.strip(12) == 12
    assert t.lower(None) is None


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("jean-luc PICARD", "Jean-Luc Picard"), ("they're here", "They're Here"), ("", ""),
     ("  mary  ann", "  Mary  Ann")],
)
def test_title(raw: str, expected: str) -> None:
    assert t.title(raw) == expected


def test_truncate() -> None:
    cut = t.truncate(3)
    assert cut("abcdef") == "abc"
    assert cut("ab") == "ab"
    assert cut(12345) == 12345


def test_default_fills_blanks_only() -> None:
    fill = t.default("(unknown)")
    assert fill(None) == "(unknown)"
    assert fill("   ") == "(unknown)"
    assert fill("Doe") == "Doe"
    assert fill(0) == 0


@pytest.mark.parametrize(
    ("name", "first", "last"),
    [("Jane Doe", "Jane", "Doe"), ("Mary Ann Smith", "Mary Ann", "Smith"),
     ("Doe, Jane", "Jane", "Doe"), ("Cher", None, "Cher"), ("  ", None, None), (None, None, None)],
)
def test_split_name(name: str | None, first: str | None, last: str | None) -> None:
    assert t.split_name("first")(name) == first
    assert t.split_name("last")(name) == last


def test_split_name_rejects_non_text() -> None:
    with pytest.raises(RecordError) as info:
        t.split_name("first")(42)
    assert info.value.code == "invalid_name"


def test_join_skips_blanks() -> None:
    values = {"first_name": "Jane", "last_name": "Doe", "title": "  "}
    join = t.join(["first_name", "title", "last_name"])
    assert join(None, values.get) == "Jane Doe"
    assert t.join(["title"])(None, values.get) is None
    assert t.join(["last_name", "first_name"], ", ")(None, values.get) == "Doe, Jane"


def test_template_substitutes_fields_and_escapes_braces() -> None:
    parts = t.parse_template("{company} {{ref}} for {first_name}")
    fill = t.template(parts)
    assert fill(None, {"company": "Acme", "first_name": "Jane"}.get) == "Acme {ref} for Jane"
    assert fill(None, {}.get) == "{ref} for"
    assert t.template(t.parse_template("{company}"))(None, {}.get) is None


@pytest.mark.parametrize("bad", ["{", "a}b", "{}", "{ }"])
def test_template_rejects_malformed_text(bad: str) -> None:
    with pytest.raises(ValueError):
        t.parse_template(bad)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("12", Decimal("12")), (" 1,234.50 ", Decimal("1234.50")), (3, Decimal(3)),
     (0.1, Decimal("0.1")), (Decimal("2.5"), Decimal("2.5")), ("", None), (None, None)],
)
def test_to_decimal(raw: Any, expected: Decimal | None) -> None:
    assert t.to_decimal(raw) == expected


@pytest.mark.parametrize("bad", ["abc", True, float("nan"), "Infinity", "1e999", [1], "1,2,3"])
def test_to_decimal_rejects(bad: Any) -> None:
    with pytest.raises(RecordError) as info:
        t.to_decimal(bad)
    assert info.value.code == "invalid_number"


def test_decimal_writer_writes_json_numbers() -> None:
    assert t.decimal_writer(Decimal("1234.50")) == 1234.5
    assert t.decimal_writer("7") == 7.0
    assert t.decimal_writer(None) is None


def test_to_int() -> None:
    assert t.to_int("12") == 12
    assert t.to_int(12.0) == 12
    assert t.to_int("12.0") == 12
    with pytest.raises(RecordError) as info:
        t.to_int("12.5")
    assert info.value.code == "invalid_integer"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [(True, True), ("yes", True), ("Y", True), ("1", True), (1, True), ("on", True),
     (False, False), ("No", False), ("0", False), (0, False), ("off", False), ("", None),
     (None, None)],
)
def test_to_bool(raw: Any, expected: bool | None) -> None:
    assert t.to_bool(raw) is expected


@pytest.mark.parametrize("bad", ["maybe", 2, 1.5, [True]])
def test_to_bool_rejects(bad: Any) -> None:
    with pytest.raises(RecordError) as info:
        t.to_bool(bad)
    assert info.value.code == "invalid_boolean"


JAN5 = datetime(2024, 1, 5, 10, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    "raw",
    ["2024-01-05T10:00:00Z", "2024-01-05T10:00:00.000+0000", "2024-01-05T11:00:00+01:00",
     "1704448800000", 1704448800000, datetime(2024, 1, 5, 10, 0), JAN5],
)
def test_datetime_reader_accepts_every_system_format(raw: Any) -> None:
    assert t.datetime_reader(raw) == JAN5


@pytest.mark.parametrize("bad", ["yesterday", True, "2024-13-45T00:00:00", 10**30, {"a": 1}])
def test_datetime_reader_rejects(bad: Any) -> None:
    with pytest.raises(RecordError) as info:
        t.datetime_reader(bad)
    assert info.value.code == "invalid_datetime"


def test_datetime_writer_styles() -> None:
    assert t.datetime_writer("iso")(JAN5) == "2024-01-05T10:00:00Z"
    assert t.datetime_writer("iso")("2024-01-05T10:00:00.250Z") == "2024-01-05T10:00:00.250Z"
    assert t.datetime_writer("epoch_ms")(JAN5) == 1704448800000
    assert t.datetime_writer("iso")(None) is None


@pytest.mark.parametrize(
    "raw", ["2024-01-05", "20240105", "2024-01-05T10:00:00Z", 1704448800000, date(2024, 1, 5),
            JAN5],
)
def test_date_reader(raw: Any) -> None:
    assert t.date_reader(raw) == date(2024, 1, 5)


def test_date_reader_rejects_and_writer_styles() -> None:
    with pytest.raises(RecordError) as info:
        t.date_reader("2024-02-30")
    assert info.value.code == "invalid_date"
    assert t.date_writer("iso")(date(2024, 1, 5)) == "2024-01-05"
    assert t.date_writer("epoch_ms")("2024-01-05") == 1704412800000


@pytest.mark.parametrize(
    ("raw", "expected"),
    [(" Jane.Doe@Example.COM ", "jane.doe@example.com"), ("a+b@x.io", "a+b@x.io"), ("", None)],
)
def test_email(raw: str, expected: str | None) -> None:
    assert t.email(raw) == expected


@pytest.mark.parametrize("bad", ["jane", "jane@", "@acme.com", "ja ne@acme.com", "a@b", 5])
def test_email_rejects(bad: Any) -> None:
    with pytest.raises(RecordError) as info:
        t.email(bad)
    assert info.value.code == "invalid_email"


@pytest.mark.parametrize(
    ("code", "raw", "expected"),
    [(None, "+1 (415) 555-0100", "+14155550100"), (None, "0044 20 7946 0958", "+442079460958"),
     ("1", "(415) 555-0100", "+14155550100"), ("1", "1-415-555-0100", "+14155550100"),
     ("44", "020 7946 0958", "+442079460958"), ("1", "415.555.0100 x204", "+14155550100"),
     ("1", "415-555-0100 ext. 9", "+14155550100"), (None, None, None)],
)
def test_phone_to_e164(code: str | None, raw: str | None, expected: str | None) -> None:
    assert t.phone(code)(raw) == expected


@pytest.mark.parametrize(
    ("code", "bad"),
    [(None, "(415) 555-0100"), ("1", "call me"), ("1", "+12"), (None, "+1234567890123456"),
     ("1", True), ("1", "٤١٥٥٥٥٠١٠٠")],
)
def test_phone_rejects(code: str | None, bad: Any) -> None:
    with pytest.raises(RecordError) as info:
        t.phone(code)(bad)
    assert info.value.code == "invalid_phone"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("jane@Acme.com", "acme.com"), ("ACME.io", "acme.io"), ("x@www.acme.co.uk", "acme.co.uk")],
)
def test_domain_from_email(raw: str, expected: str) -> None:
    assert t.domain_from_email(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("https://www.Acme.com/about?x=1", "acme.com"), ("acme.com", "acme.com"),
     ("www.acme.com/path", "acme.com"), ("http://shop.acme.com:8080", "shop.acme.com")],
)
def test_domain_from_url(raw: str, expected: str) -> None:
    assert t.domain_from_url(raw) == expected


@pytest.mark.parametrize("bad", ["not a url", "http://", "https://localhost", "http://[::1", 7])
def test_domain_from_url_rejects(bad: Any) -> None:
    with pytest.raises(RecordError) as info:
        t.domain_from_url(bad)
    assert info.value.code == "invalid_domain"


def test_coalesce_takes_first_non_blank_alternative() -> None:
    fill = t.coalesce([lambda r: r.get("MobilePhone"), lambda r: r.get("OtherPhone")])
    assert fill("", {"MobilePhone": None, "OtherPhone": "+1 555"}) == "+1 555"
    assert fill("main", {"MobilePhone": "x"}) == "main"
    assert fill(None, {}) is None


def test_regex_replace() -> None:
    squash = t.regex_replace(re.compile(r"\s+"), " ")
    assert squash("a   b\tc") == "a b c"
    assert squash(5) == 5


# --- the vocabulary: argument checking ------------------------------------------------------


def test_vocabulary_is_the_closed_list_from_the_design() -> None:
    assert {
        "strip", "lower", "upper", "title", "truncate", "default", "split_name", "join",
        "template", "to_decimal", "to_int", "to_bool", "date", "datetime", "email", "phone",
        "domain_from_email", "domain_from_url", "coalesce", "regex_replace",
    } == TRANSFORM_NAMES


@pytest.mark.parametrize(
    "spec",
    [{"truncate": 0}, {"truncate": "ten"}, {"truncate": True}, "truncate", {"strip": 3},
     {"split_name": "middle"}, {"join": []}, {"join": "first_name"}, {"template": 3},
     {"template": "{"}, {"date": "unix"}, {"phone": "abc"}, {"phone": 1234}, {"coalesce": "x"},
     {"regex_replace": {"pattern": "("}}, {"regex_replace": {"pattern": "a", "replace": r"\2"}},
     {"regex_replace": "x"}, "default", {"a": 1, "b": 2}, 5],
)
def test_bad_arguments_are_refused(spec: Any) -> None:
    with pytest.raises(TransformArgumentError) as info:
        build_step(spec)
    assert info.value.fix


def test_unknown_transform_is_a_key_error() -> None:
    with pytest.raises(KeyError):
        build_step("eval")


def test_steps_know_their_directions() -> None:
    assert build_step({"split_name": "first"}).write is None
    assert build_step({"coalesce": ["A"]}).write is None
    assert build_step({"join": ["first_name"]}).read is None
    assert build_step({"template": "{company}"}).read is None
    decimal = build_step("to_decimal")
    assert decimal.read is not None and decimal.write is not None
    assert decimal.read("1.50") == Decimal("1.50")
    assert decimal.write(Decimal("1.50")) == 1.5
    assert build_step({"datetime": "epoch_ms"}).kind == "datetime"


# --- hypothesis: nothing but RecordError, ever ---------------------------------------------

anything = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text() | st.decimals()
    | st.datetimes() | st.dates() | st.binary(),
    lambda children: st.lists(children, max_size=3)
    | st.dictionaries(st.text(max_size=5), children, max_size=3),
    max_leaves=5,
)

_SIMPLE = [
    t.strip, t.lower, t.upper, t.title, t.truncate(5), t.default("x"), t.split_name("first"),
    t.split_name("last"), t.to_decimal, t.decimal_writer, t.to_int, t.to_bool, t.date_reader,
    t.date_writer("iso"), t.date_writer("epoch_ms"), t.datetime_reader,
    t.datetime_writer("iso"), t.datetime_writer("epoch_ms"), t.email, t.phone(None),
    t.phone("44"), t.domain_from_email, t.domain_from_url,
    t.regex_replace(re.compile(r"[aeiou]+"), "-"),
]


@settings(max_examples=300, deadline=None)
@given(value=anything)
def test_transforms_raise_only_record_errors(value: Any) -> None:
    for transform in _SIMPLE:
        with contextlib.suppress(RecordError):
            transform(value)


@settings(max_examples=100, deadline=None)
@given(value=anything, other=anything)
def test_record_transforms_raise_only_record_errors(value: Any, other: Any) -> None:
    record = {"a": other, "first_name": other, "last_name": value}
    for transform, context in (
        (t.coalesce([lambda r: r.get("a")]), record),
        (t.join(["first_name", "last_name"]), record.get),
        (t.template(t.parse_template("{first_name}-{last_name}")), record.get),
    ):
        with contextlib.suppress(RecordError):
            transform(value, context)


@settings(max_examples=200, deadline=None)
@given(text=st.text())
def test_text_inputs_to_parsers_raise_only_record_errors(text: str) -> None:
    for transform in (t.to_decimal, t.to_int, t.to_bool, t.datetime_reader, t.date_reader,
                      t.email, t.phone("1"), t.domain_from_url, t.domain_from_email):
        with contextlib.suppress(RecordError):
            transform(text)


@given(st.datetimes(timezones=st.just(UTC)))
def test_datetime_writer_round_trips_at_millisecond_precision(moment: datetime) -> None:
    written = t.datetime_writer("iso")(moment)
    expected = moment.replace(microsecond=moment.microsecond // 1000 * 1000)
    assert t.datetime_reader(written) == expected


@given(st.decimals(allow_nan=False, allow_infinity=False, places=2,
                   min_value=Decimal("-1e12"), max_value=Decimal("1e12")))
def test_decimal_round_trips_through_the_writer(number: Decimal) -> None:
    assert t.to_decimal(t.decimal_writer(number)) == number
