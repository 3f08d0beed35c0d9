"""Mapping files read as admins wrote them: YAML 1.1 never turns a picklist value into a boolean."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from refsync.mapping import CompiledMapping, load_mapping
from tests.mapping.test_mapping_loader import problems_of, write

RID = "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"
APPROVAL = """
system: salesforce
object: Lead
key_field: Refsync_Id__c
fields:
  email: {remote: Email}
  status:
    remote: Approved__c
    values:
      yes: accepted
      no: rejected
      On: submitted
      07: qualified
"""


def read_status(mapping: CompiledMapping, remote: str) -> object:
    return mapping.to_canonical({"Email": "a@b.test", "Approved__c": remote}).values["status"]


def test_value_map_keys_keep_their_text(tmp_path: Path) -> None:
    mapping = load_mapping(write(tmp_path, APPROVAL))
    assert [read_status(mapping, value) for value in ("Yes", "no", "on", "07")] == [
        "accepted", "rejected", "submitted", "qualified"]
    written = mapping.to_remote({"id": RID, "email": "a@b.test", "status": "qualified"})
    assert written["Approved__c"] == "07"
    assert mapping.to_canonical({"Approved__c": "true"}).errors[0].code == "unmapped_value"


@pytest.mark.parametrize("entry, line, column, message, fix", [
    # a status can only be text: the fix does not offer the boolean YAML read
    ("Approved: yes", 13, 17, "'yes' is read by YAML as true", 'quote it ("yes")'),
    ("out: {lost: 07}", 13, 19, "'07' is read by YAML as 7",
     'quote it ("07") to keep the text, or write 7'),
])
def test_value_map_values_yaml_would_retype_must_be_quoted(
    tmp_path: Path, entry: str, line: int, column: int, message: str, fix: str
) -> None:
    text = APPROVAL.replace("      07: qualified\n", f"      07: qualified\n      {entry}\n")
    problems = problems_of(write(tmp_path, text))
    assert [(p.line, p.column, p.message, p.fix) for p in problems] == [
        (line, column, message, fix)]


def test_a_default_yaml_would_retype_must_be_quoted(tmp_path: Path) -> None:
    country = "\n  country: {remote: C, default: NO}"
    text = APPROVAL.replace("{remote: Email}", "{remote: Email}" + country)
    (problem,) = problems_of(write(tmp_path, text))
    assert (problem.line, problem.column) == (6, 33)
    assert problem.message == "'NO' is read by YAML as false"


def test_quoted_values_and_real_booleans_are_accepted(tmp_path: Path) -> None:
    text = APPROVAL + '  custom.flag:\n    remote: Flag__c\n    values: {"Y": "yes", "T": true}\n'
    flag = load_mapping(write(tmp_path, text)).field("custom.flag")
    assert flag.read({"Flag__c": "y"}) == "yes"
    assert flag.read({"Flag__c": "T"}) is True


def test_a_mapping_file_that_is_not_utf8_is_a_problem(tmp_path: Path) -> None:
    path = tmp_path / "lead.yaml"
    path.write_bytes(textwrap.dedent(APPROVAL).lstrip("\n").replace(
        "{remote: Email}", '{remote: Email, default: "Société"}').encode("latin-1"))
    (problem,) = problems_of(path)
    assert (problem.line, problem.column) == (5, 40)
    assert problem.message == "not UTF-8 (byte 0xe9)"
    assert problem.fix == "save the file as UTF-8"


def test_merge_keys_share_field_settings_in_a_mapping(tmp_path: Path) -> None:
    text = APPROVAL.replace("  email: {remote: Email}\n", (
        "  email: &text {remote: Email, transform: [strip], rule: remote_wins}\n"
        "  company: {<<: *text, remote: Company}\n"))
    mapping = load_mapping(write(tmp_path, text))
    assert mapping.rules["company"] == "remote_wins"
    assert mapping.field("company").remote == "Company"


def test_a_custom_tag_in_a_mapping_is_a_problem(tmp_path: Path) -> None:
    text = APPROVAL.replace("{remote: Email}", "{remote: !upper Email}")
    (problem,) = problems_of(write(tmp_path, text))
    assert (problem.line, problem.column) == (5, 19)
    assert problem.message == "the YAML tag '!upper' is not supported"
