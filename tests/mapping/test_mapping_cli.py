"""``refsync mapping check`` and ``refsync mapping preview`` through click's CliRunner."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from refsync.cli import cli
from refsync.mapping import default_mapping_path

RID = "6f1c1d2e-0000-4000-8000-000000000001"

BAD = """
system: salesforce
object: Lead
key_field: Refsync_Id__c
fields:
  email: {remote: Email, transform: [strip, lowercase]}
  compnay: {remote: Company}
  status:
    remote: Status
    values:
      "Open": submitted
      "Won": closed_won
"""


@pytest.fixture
def bad_file(tmp_path: Path) -> Path:
    path = tmp_path / "bad.yaml"
    path.write_text(textwrap.dedent(BAD).lstrip("\n"), encoding="utf-8")
    return path


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.output


def test_check_reports_all_three_problems_with_lines_and_exits_2(bad_file: Path) -> None:
    code, output = run("mapping", "check", str(bad_file))
    assert code == 2
    lines = output.splitlines()
    assert lines == [
        f"{bad_file}:5:45: unknown transform 'lowercase' — did you mean 'lower'?",
        f"{bad_file}:6:3: unknown canonical field 'compnay' — did you mean 'company'?",
        f"{bad_file}:11:14: status 'closed_won' is not in the referral lifecycle — use one of: "
        "submitted, accepted, qualified, opportunity, won, lost, rejected, duplicate, expired",
        "3 problems found.",
    ]


def test_check_good_files_exit_0() -> None:
    code, output = run("mapping", "check", "builtin:salesforce-lead", "builtin:hubspot-deals")
    assert code == 0
    assert output.splitlines() == [
        "builtin:salesforce-lead: ok (salesforce/Lead, 13 fields)",
        "builtin:hubspot-deals: ok (hubspot/deals, 4 fields)",
    ]


def test_check_json(bad_file: Path) -> None:
    code, output = run("mapping", "check", "--json", str(bad_file), "builtin:hubspot-contacts")
    assert code == 2
    report = json.loads(output)
    assert report["ok"] is False
    bad, good = report["files"]
    assert [(p["line"], p["column"]) for p in bad["problems"]] == [(5, 45), (6, 3), (11, 14)]
    assert good == {"file": "builtin:hubspot-contacts", "ok": True, "problems": [],
                    "system": "hubspot", "object": "contacts", "fields": 9}


def test_check_needs_a_file() -> None:
    code, _ = run("mapping", "check")
    assert code == 2


LEAD = {"Refsync_Id__c": RID, "Email": " Jane@Acme.COM ", "LastName": "Doe",
        "Status": "Working - Contacted", "AnnualRevenue": "12,500.00"}


def test_preview_in_plain_text() -> None:
    code, output = run("mapping", "preview", "--mapping", "builtin:salesforce-lead",
                       "--record", json.dumps(LEAD))
    assert code == 0
    lines = output.splitlines()
    assert lines[0] == "record 1: salesforce/Lead (remote → canonical)"
    assert lines[1].split() == ["canonical", "remote", "input", "result"]
    email = next(line for line in lines if line.strip().startswith("email"))
    assert email.split() == ["email", "Email", '"', 'Jane@Acme.COM', '"', '"jane@acme.com"']
    amount = next(line for line in lines if line.strip().startswith("amount"))
    assert amount.split()[-1] == "12500.00"
    status = next(line for line in lines if line.strip().startswith("status"))
    assert status.split()[-1] == '"accepted"'


def test_preview_shows_record_errors_and_exits_1() -> None:
    record = {**LEAD, "Status": "Nurturing"}
    code, output = run("mapping", "preview", "--mapping", "builtin:salesforce-lead",
                       "--record", json.dumps(record))
    assert code == 1
    status = next(line for line in output.splitlines() if line.strip().startswith("status"))
    assert "ERROR unmapped_value: incoming value 'Nurturing' for status is not in the value map" \
        in status


def test_preview_out_from_jsonl_as_json(tmp_path: Path) -> None:
    path = tmp_path / "referrals.jsonl"
    path.write_text(
        json.dumps({"id": RID, "email": "jane@acme.com", "status": "won", "notes": "hi"}) + "\n\n"
        + json.dumps({"id": RID, "status": "nope"}) + "\n", encoding="utf-8")
    code, output = run("mapping", "preview", "--mapping", "builtin:salesforce-lead",
                       "--input", str(path), "--direction", "out", "--json")
    assert code == 1
    report = json.loads(output)
    assert report["direction"] == "out" and report["ok"] is False
    first, second = report["records"]
    assert first["errors"] == []
    assert first["result"]["Status"] == "Closed - Converted"
    assert first["result"]["Description"] == "hi"
    assert "AnnualRevenue" not in first["result"]
    assert [e["code"] for e in second["errors"]] == ["invalid_status"]


def test_preview_in_json_serialises_canonical_types() -> None:
    record = {**LEAD, "CreatedDate": "2026-01-05T10:00:00.000+0000"}
    code, output = run("mapping", "preview", "--mapping", "builtin:salesforce-lead",
                       "--record", json.dumps(record), "--json")
    assert code == 0
    result = json.loads(output)["records"][0]["result"]
    assert result["amount"] == "12500.00"
    assert result["submitted_at"] == "2026-01-05T10:00:00+00:00"
    assert result["status"] == "accepted"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--record", "{not json"], "--record: not valid JSON"),
        (["--record", "[1, 2]"], "expected a JSON object"),
    ],
)
def test_preview_bad_input_exits_2(args: list[str], message: str) -> None:
    result = CliRunner().invoke(cli, ["mapping", "preview", "--mapping",
                                      "builtin:salesforce-lead", *args])
    assert result.exit_code == 2
    assert message in result.output


def test_preview_needs_exactly_one_input(tmp_path: Path) -> None:
    code, output = run("mapping", "preview", "--mapping", "builtin:salesforce-lead")
    assert code == 2 and "exactly one of --record or --input" in output


def test_preview_with_an_invalid_mapping(bad_file: Path) -> None:
    code, output = run("mapping", "preview", "--mapping", str(bad_file), "--record", "{}")
    assert code == 2
    assert "unknown canonical field 'compnay'" in output


def test_rich_tables_for_terminals() -> None:
    from io import StringIO

    from rich.console import Console

    from refsync.cli.mapping import _preview, render_rich
    from refsync.mapping import load_mapping

    mapping = load_mapping("builtin:salesforce-lead")
    previews = [_preview(mapping, {**LEAD, "Status": "[bold]x"}, "in")]
    buffer = StringIO()
    render_rich(Console(file=buffer, width=200, color_system=None), mapping, "in", previews)
    text = buffer.getvalue()
    assert "record 1: salesforce/Lead (remote → canonical)" in text
    assert '"jane@acme.com"' in text
    assert "✗ unmapped_value: incoming value '[bold]x'" in text


def test_a_missing_mapping_file_is_not_blamed_on_the_config_option(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["mapping", "check", str(tmp_path / "nope.yaml")])
    assert result.exit_code == 2
    assert "cannot read the file" in result.output and "check the path" in result.output
    assert "-c/--config" not in result.output


def test_check_names_a_dedented_first_value_map_key_as_the_line_to_indent(
    tmp_path: Path,
) -> None:
    text = default_mapping_path("salesforce-lead").read_text(encoding="utf-8")
    first = '      "Open - Not Contacted": submitted\n'
    assert first in text
    path = tmp_path / "lead.yaml"
    path.write_text(text.replace(first, first[2:]), encoding="utf-8")
    line = path.read_text(encoding="utf-8").splitlines().index(first[2:-1]) + 1
    code, output = run("mapping", "check", str(path))
    assert code == 2
    assert output.splitlines() == [
        f"{path}:{line}:5: not valid YAML: the key here is not indented under 'values' (line "
        f"{line - 1}), so YAML reads 'values' as empty, and the value after this key runs on to "
        f"line {line + 1}, where a ':' follows it — indent line {line} like line {line + 1}, "
        "under 'values'",
        "1 problem found.",
    ]
