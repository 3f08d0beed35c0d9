"""A field's ``default:`` is a canonical value: checked against the field's type when the mapping
loads, and used as a value of that type (a Decimal for ``amount``), never as the text written."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from click.testing import CliRunner

from refsync.cli import cli
from refsync.mapping import (
    CompiledMapping,
    MappingSpec,
    compile_mapping,
    default_mapping_path,
    load_mapping,
)
from refsync.state import StateStore
from tests.mapping.test_mapping_loader import problems_of, write
from tests.sync.file_workspace import make_workspace

RID = "6f1c1d2e-0000-4000-8000-000000000001"
AMOUNT = "amount:      {remote: AnnualRevenue, direction: in, rule: remote_wins, " \
    "transform: [to_decimal]}"
SUBMITTED_AT = "submitted_at: {remote: CreatedDate, direction: in, rule: set_if_empty, " \
    "transform: [datetime]}"
LEAD = {"Refsync_Id__c": RID, "Email": "a@b.com", "LastName": "X",
        "Status": "Working - Contacted"}


def lead_with(tmp_path: Path, line: str, default: str) -> Path:
    """The shipped Salesforce Lead mapping with ``default`` added to one of its field lines."""
    text = default_mapping_path("salesforce-lead").read_text(encoding="utf-8")
    assert line in text
    return write(tmp_path, text.replace(line, line.replace(
        ", transform:", f", default: {default}, transform:")))


def position_of(path: Path, written: str) -> tuple[int, int]:
    """Line and column of the first place ``written`` is in the file."""
    for number, text in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if written in text:
            return number, text.index(written) + 1
    raise AssertionError(written)


def line_and_column(path: Path, default: str) -> tuple[int, int]:
    """Where the value of ``default: <default>,`` is in the file."""
    line, column = position_of(path, f"default: {default},")
    return line, column + len("default: ")


@pytest.mark.parametrize(("line", "default", "message", "fix"), [
    (AMOUNT, "lots", "amount default 'lots' is not a decimal number",
     "write a number, e.g. default: 0"),
    (AMOUNT, "true", "amount default 'true' is not a decimal number",
     "write a number, e.g. default: 0"),
    (SUBMITTED_AT, "yesterday", "submitted_at default 'yesterday' is not a date and time",
     'write an ISO 8601 date-time, e.g. default: "2026-01-05T10:00:00Z"'),
])
def test_a_default_of_the_wrong_type_is_refused_at_its_line(
    tmp_path: Path, line: str, default: str, message: str, fix: str
) -> None:
    path = lead_with(tmp_path, line, default)
    (problem,) = problems_of(path)
    assert (problem.file, problem.line, problem.column) == (str(path),
                                                             *line_and_column(path, default))
    assert (problem.message, problem.fix) == (message, fix)


def test_a_list_as_a_typed_default_gets_the_types_fix(tmp_path: Path) -> None:
    (problem,) = problems_of(lead_with(tmp_path, AMOUNT, "[1]"))
    assert (problem.message, problem.fix) == ("a default must be a single value",
                                              "write a number, e.g. default: 0")


def read_blank(mapping: CompiledMapping, field: str) -> object:
    mapped = mapping.to_canonical(LEAD)
    assert mapped.ok, mapped.errors
    return mapped.values[field]


@pytest.mark.parametrize(("default", "value"), [
    ("0", Decimal("0")),
    ('"1200.50"', Decimal("1200.50")),
    ("1200.50", Decimal("1200.50")),  # YAML reads the float 1200.5: the text as written counts
    ("010", Decimal("10")),  # YAML 1.1 reads octal 8
])
def test_a_decimal_default_is_used_as_a_decimal(
    tmp_path: Path, default: str, value: Decimal
) -> None:
    mapping = load_mapping(lead_with(tmp_path, AMOUNT, default))
    amount = read_blank(mapping, "amount")
    assert type(amount) is Decimal
    assert (amount, str(amount)) == (value, str(value))


@pytest.mark.parametrize("default", [
    "2026-01-05T10:00:00Z", '"2026-01-05T10:00:00Z"', '"2026-01-05T12:00:00+02:00"',
])
def test_a_datetime_default_is_used_as_an_aware_utc_datetime(
    tmp_path: Path, default: str
) -> None:
    mapping = load_mapping(lead_with(tmp_path, SUBMITTED_AT, default))
    assert read_blank(mapping, "submitted_at") == datetime(2026, 1, 5, 10, tzinfo=UTC)


def test_a_typed_default_is_written_as_its_type(tmp_path: Path) -> None:
    path = write(tmp_path, """
        system: crm
        object: Deal
        key_field: Refsync_Id
        fields:
          amount: {remote: Amount, default: "1,200.50"}
          closed_at: {remote: CloseDate, default: "2026-01-05"}
        """)
    payload = load_mapping(path).to_remote({"id": RID})
    assert payload == {"Refsync_Id": RID, "Amount": 1200.5, "CloseDate": "2026-01-05T00:00:00Z"}


CUSTOM = """
system: crm
object: Lead
key_field: Refsync_Id
fields:
  custom.seats: {remote: Seats, transform: [to_int], default: SEATS}
  custom.vip: {remote: Vip, transform: [to_bool], default: VIP}
  custom.note: {remote: Note, default: NOTE}
  last_name: {remote: LastName, default: 5}
"""


def test_a_converting_transform_gives_a_custom_field_its_type(tmp_path: Path) -> None:
    bad = CUSTOM.replace("SEATS", "12.5").replace("VIP", "maybe").replace("NOTE", "anything")
    problems = problems_of(write(tmp_path, bad))
    assert [(p.line, p.message) for p in problems] == [
        (5, "custom.seats default '12.5' is not a whole number"),
        (6, "custom.vip default 'maybe' is not true or false"),
    ]
    good = CUSTOM.replace("SEATS", '"12"').replace("VIP", "yes").replace("NOTE", "anything")
    values = load_mapping(write(tmp_path, good, "good.yaml")).to_canonical({}).values
    assert (values["custom.seats"], values["custom.vip"]) == (12, True)
    assert (values["custom.note"], values["last_name"]) == ("anything", "5")


def test_compiling_an_unchecked_spec_refuses_a_bad_default() -> None:
    spec = MappingSpec.model_validate({
        "system": "crm", "object": "Lead", "key_field": "Refsync_Id",
        "fields": {"amount": {"remote": "Amount", "default": "lots"}}})
    with pytest.raises(ValueError, match="amount default: expected a number, got 'lots'"):
        compile_mapping(spec)


@pytest.mark.parametrize("command", ["check", "sync"])
def test_check_and_sync_refuse_a_bad_default_before_touching_the_state(
    tmp_path: Path, command: str
) -> None:
    root = workspace_with_amount(tmp_path, "lots")
    result = CliRunner().invoke(cli, [command, "-c", str(root / "refsync.yaml")])
    assert result.exit_code == 2, result.output
    assert f"{root / 'prm.yaml'}:5:52: amount default 'lots' is not a decimal number" \
        in result.output
    assert not (tmp_path / "state.db").exists()


def test_sync_stores_a_good_default_as_a_decimal(tmp_path: Path) -> None:
    root = workspace_with_amount(tmp_path, '"1200.50"')
    result = CliRunner().invoke(cli, ["sync", "-c", str(root / "refsync.yaml")])
    assert result.exit_code == 0, result.output
    store = StateStore(f"sqlite:///{tmp_path / 'state.db'}")
    try:
        amounts = {row["amount"] for row in store.list_referrals()}
    finally:
        store.close()
    assert amounts == {Decimal("1200.50")}


def workspace_with_amount(tmp_path: Path, default: str) -> Path:
    """The file workspace (state in ``tmp_path/state.db``), its partner leads read with an
    amount whose ``default`` fills it (the leads have none)."""
    (tmp_path / "ws").mkdir()
    root = make_workspace(tmp_path / "ws", f"sqlite:///{tmp_path / 'state.db'}")
    mapping = root / "prm.yaml"
    text = mapping.read_text(encoding="utf-8")
    mapping.write_text(text.replace("fields:\n", "fields:\n  amount: {remote: amount, "
                                    f"direction: in, default: {default}}}\n", 1),
                       encoding="utf-8")
    return root
