"""Values a mapping gives besides ``default:`` are typed too: a ``{default: V}`` transform step is
a value of the type the value has where the step stands, and a value map's canonical values are
values of the field's type. A bad one is refused at its line; a good one is used as that type."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from click.testing import CliRunner

from refsync.cli import cli
from refsync.mapping import (
    MappingSpec,
    compile_mapping,
    default_mapping_path,
    load_mapping,
)
from tests.mapping.test_mapping_defaults import AMOUNT, LEAD, RID, position_of, read_blank
from tests.mapping.test_mapping_loader import problems_of, write


def lead_with_amount(tmp_path: Path, amount: str) -> Path:
    """The shipped Salesforce Lead mapping, its ``amount`` line replaced by ``amount``."""
    text = default_mapping_path("salesforce-lead").read_text(encoding="utf-8")
    assert AMOUNT in text
    return write(tmp_path, text.replace(AMOUNT, amount))


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.output


# {default: V} as a transform step


DEFAULT_LOTS = "amount: {remote: AnnualRevenue, direction: in, transform: [to_decimal, " \
    "{default: lots}]}"


def test_check_refuses_a_default_step_that_is_not_of_the_type_of_the_step_before(
    tmp_path: Path
) -> None:
    path = lead_with_amount(tmp_path, DEFAULT_LOTS)
    code, output = run("mapping", "check", str(path))
    assert code == 2
    line, column = position_of(path, "lots}")
    assert output.splitlines() == [
        f"{path}:{line}:{column}: amount {{default: 'lots'}} after to_decimal is not a decimal "
        "number — write a number, e.g. {default: 0}",
        "1 problem found.",
    ]


def test_preview_refuses_the_mapping_instead_of_showing_the_text(tmp_path: Path) -> None:
    path = lead_with_amount(tmp_path, DEFAULT_LOTS)
    code, output = run("mapping", "preview", "--mapping", str(path),
                       "--record", json.dumps(LEAD))
    assert code == 2
    assert "amount {default: 'lots'} after to_decimal is not a decimal number" in output
    assert '"lots"' not in output


CUSTOM = """
system: crm
object: Lead
key_field: Refsync_Id
fields:
  FIELD
"""


@pytest.mark.parametrize(("field", "value", "message", "fix"), [
    ("custom.seats: {remote: Seats, transform: [to_int, strip, {default: '12.5'}]}", "'12.5'",
     "custom.seats {default: '12.5'} after to_int is not a whole number",
     "write a whole number, e.g. {default: 0}"),
    ("custom.vip: {remote: Vip, transform: [{default: maybe}, to_bool]}", "maybe",
     "custom.vip {default: 'maybe'} before to_bool is not true or false", "write true or false"),
    ("amount: {remote: Amount, transform: [strip, {default: lots}]}", "lots",
     "amount {default: 'lots'} is not a decimal number", "write a number, e.g. {default: 0}"),
    ("submitted_at: {remote: Created, transform: [datetime, {default: yesterday}]}", "yesterday",
     "submitted_at {default: 'yesterday'} after datetime is not a date and time",
     'write an ISO 8601 date-time, e.g. {default: "2026-01-05T10:00:00Z"}'),
    ("custom.day: {remote: Day, transform: [{date: epoch_ms}, {default: someday}]}",
     "someday", "custom.day {default: 'someday'} after date is not a date",
     'write an ISO 8601 date, e.g. {default: "2026-01-05"}'),
])
def test_a_default_step_is_refused_at_its_value_when_not_of_the_type_where_it_stands(
    tmp_path: Path, field: str, value: str, message: str, fix: str
) -> None:
    path = write(tmp_path, CUSTOM.replace("FIELD", field))
    (problem,) = problems_of(path)
    line, column = position_of(path, f"{{default: {value}}}")
    assert (problem.line, problem.column) == (line, column + len("{default: "))
    assert (problem.message, problem.fix) == (message, fix)


@pytest.mark.parametrize(("default", "value"), [
    ("0", Decimal("0")),
    ('"1,200.50"', Decimal("1200.50")),
    ("1200.50", Decimal("1200.50")),  # YAML reads the float 1200.5: the text as written counts
])
def test_a_default_step_after_to_decimal_is_a_decimal(
    tmp_path: Path, default: str, value: Decimal
) -> None:
    amount = DEFAULT_LOTS.replace("lots", default)
    mapping = load_mapping(lead_with_amount(tmp_path, amount))
    read = read_blank(mapping, "amount")
    assert type(read) is Decimal
    assert (read, str(read)) == (value, str(value))


def test_a_default_step_after_a_conversion_is_written_through_its_writer(
    tmp_path: Path
) -> None:
    path = write(tmp_path, CUSTOM.replace("FIELD", """\
amount: {remote: Amount, transform: [to_decimal, {default: "1200.50"}]}
  closed_at: {remote: Closed, transform: [datetime, {default: "2026-01-05"}]}"""))
    mapping = load_mapping(path)
    assert mapping.to_canonical({}).values["closed_at"] == datetime(2026, 1, 5, tzinfo=UTC)
    payload = mapping.to_remote({"id": RID})
    assert (payload["Amount"], payload["Closed"]) == (1200.5, "2026-01-05T00:00:00Z")


def test_a_default_step_before_a_conversion_is_the_remote_value_kept_as_written(
    tmp_path: Path
) -> None:
    path = write(tmp_path, CUSTOM.replace("FIELD", """\
custom.vip: {remote: Vip, transform: [{default: "yes"}, to_bool]}
  custom.tier: {remote: Tier, direction: out, transform: [{default: none yet}, to_int]}"""))
    mapping = load_mapping(path)  # only written, so nothing reads 'none yet' as a number
    assert mapping.to_canonical({}).values["custom.vip"] is True
    assert mapping.to_remote({"id": RID}) == {"Refsync_Id": RID, "Vip": "yes",
                                              "Tier": "none yet"}


def test_compiling_an_unchecked_spec_refuses_a_bad_default_step() -> None:
    spec = MappingSpec.model_validate({
        "system": "crm", "object": "Lead", "key_field": "Refsync_Id",
        "fields": {"amount": {"remote": "Amount",
                              "transform": ["to_decimal", {"default": "lots"}]}}})
    with pytest.raises(ValueError, match=re.escape(
            "amount {default: 'lots'} after to_decimal: expected a number, got 'lots'")):
        compile_mapping(spec)


# value maps on typed fields


def test_check_refuses_a_value_map_value_that_is_not_of_the_fields_type(tmp_path: Path) -> None:
    path = lead_with_amount(tmp_path, "amount: {remote: AnnualRevenue, values: {big: lots}}")
    code, output = run("mapping", "check", str(path))
    assert code == 2
    line, column = position_of(path, "lots}")
    assert output.splitlines() == [
        f"{path}:{line}:{column}: value map entry 'big' maps amount to 'lots', which is not a "
        "decimal number — write a number, e.g. big: 0",
        "1 problem found.",
    ]


def test_value_map_values_and_out_choices_are_refused_at_their_lines(tmp_path: Path) -> None:
    path = write(tmp_path, CUSTOM.replace("FIELD", """\
closed_at:
    remote: Stage
    values:
      won: "2026-01-05T10:00:00Z"
      soon: next week
      out:
        later: won
  custom.size: {remote: Size, transform: [to_int], values: {S: 1, M: 2.5}}"""))
    problems = problems_of(path)
    assert [(p.line, p.column, p.message, p.fix) for p in problems] == [
        (*position_of(path, "next week"), "value map entry 'soon' maps closed_at to 'next week', "
         "which is not a date and time",
         'write an ISO 8601 date-time, e.g. soon: "2026-01-05T10:00:00Z"'),
        (*position_of(path, "later"), "out: 'later' is not a date and time, which closed_at holds",
         'write an ISO 8601 date-time, e.g. out: {"2026-01-05T10:00:00Z": won}'),
        (*position_of(path, "2.5"),
         "value map entry 'M' maps custom.size to '2.5', which is not a whole number",
         "write a whole number, e.g. M: 0"),
    ]


def test_value_map_values_are_used_as_the_fields_type_both_ways(tmp_path: Path) -> None:
    path = lead_with_amount(
        tmp_path, 'amount: {remote: AnnualRevenue, values: {big: 1000000, some: "1,000.50", '
                  'few: 12.50}}')
    mapping = load_mapping(path)  # 12.50 is not refused as a float YAML would make 12.5 of
    amounts = {}
    for remote in ("big", "some", "few"):
        amount = mapping.to_canonical({**LEAD, "AnnualRevenue": remote}).values["amount"]
        assert type(amount) is Decimal
        amounts[remote] = str(amount)
        assert mapping.to_remote({"id": RID, "amount": amount})["AnnualRevenue"] == remote
    assert amounts == {"big": "1000000", "some": "1000.50", "few": "12.50"}


def test_a_datetime_value_map_reads_aware_datetimes_and_its_out_choice_matches_them(
    tmp_path: Path
) -> None:
    path = write(tmp_path, CUSTOM.replace("FIELD", """\
closed_at:
    remote: Quarter
    values:
      Q1: "2026-01-01T00:00:00Z"
      Q1-late: 2026-01-01T00:00:00Z
      out: {"2026-01-01T00:00:00Z": Q1}"""))
    mapping = load_mapping(path)
    when = mapping.to_canonical({"Quarter": "Q1-late"}).values["closed_at"]
    assert when == datetime(2026, 1, 1, tzinfo=UTC)
    assert mapping.to_remote({"id": RID, "closed_at": when})["Quarter"] == "Q1"


def test_a_decimal_value_map_finds_an_amount_however_many_decimals_it_carries(
    tmp_path: Path,
) -> None:
    """The state store keeps amounts with two decimals: 1000000 comes back as 1000000.00."""
    path = lead_with_amount(
        tmp_path, "amount: {remote: AnnualRevenue, values: {big: 1000000, few: 12.50}}")
    mapping = load_mapping(path)
    for stored, remote in (("1000000.00", "big"), ("1E+6", "big"), ("12.5", "few")):
        written = mapping.to_remote({"id": RID, "amount": Decimal(stored)})
        assert written["AnnualRevenue"] == remote, stored
