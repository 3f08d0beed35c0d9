"""Loading and validating mapping files: every problem at once, at the right line and column."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from refsync.errors import ConfigError, Problem
from refsync.mapping import (
    CompiledMapping,
    builtin_mapping_names,
    default_mapping_path,
    load_mapping,
)


def write(tmp_path: Path, text: str, name: str = "lead.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def problems_of(path: Path) -> list[Problem]:
    with pytest.raises(ConfigError) as info:
        load_mapping(path)
    return info.value.problems


def where(problems: list[Problem]) -> list[tuple[int, int]]:
    return [(p.line, p.column) for p in problems]


GOOD = """
system: salesforce
object: Lead
key_field: Refsync_Id__c
fields:
  email:      {remote: Email, rule: two_way, transform: [strip, lower]}
  last_name:  {remote: LastName, default: "(unknown)"}
  company:    {remote: Company}
  notes:      {remote: Description, direction: out, transform: [{truncate: 32000}]}
  custom.lead_source: {remote: LeadSource, direction: in}
  status:
    remote: Status
    rule: remote_wins
    values: {"Open - Not Contacted": submitted, "Working - Contacted": accepted,
             "Closed - Converted": qualified, "Closed - Not Converted": lost}
"""


def test_the_design_example_loads(tmp_path: Path) -> None:
    mapping = load_mapping(write(tmp_path, GOOD))
    assert isinstance(mapping, CompiledMapping)
    assert (mapping.system, mapping.object, mapping.key_field) == ("salesforce", "Lead",
                                                                  "Refsync_Id__c")
    assert [f.canonical for f in mapping.fields] == [
        "email", "last_name", "company", "notes", "custom.lead_source", "status"]
    assert mapping.rules["status"] == "remote_wins"
    assert mapping.directions["notes"] == "out"


def test_unknown_transform_status_and_misspelt_field_reported_together(tmp_path: Path) -> None:
    path = write(tmp_path, """
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
        """)
    problems = problems_of(path)
    assert where(problems) == [(5, 45), (6, 3), (11, 14)]
    assert all(p.file == str(path) for p in problems)
    assert "unknown transform 'lowercase'" in problems[0].message
    assert problems[0].fix == "did you mean 'lower'?"
    assert problems[1].message == "unknown canonical field 'compnay'"
    assert problems[1].fix == "did you mean 'company'?"
    assert "'closed_won' is not in the referral lifecycle" in problems[2].message


def test_structure_and_meaning_problems_come_together(tmp_path: Path) -> None:
    path = write(tmp_path, """
        system: hubspot
        object: contacts
        fields:
          email: {remote: email, transfrom: [strip]}
          phone: {remote: phone, rule: loudest_wins}
          titel: {remote: jobtitle}
        """)
    problems = problems_of(path)
    messages = [p.message for p in problems]
    assert "'key_field' is required here" in messages
    assert "unknown key 'transfrom'" in messages
    assert any("rule" in m for m in messages)
    assert "unknown canonical field 'titel'" in messages
    assert where(problems) == sorted(where(problems))
    transfrom = problems[messages.index("unknown key 'transfrom'")]
    assert (transfrom.line, transfrom.fix) == (4, "did you mean 'transform'?")


@pytest.mark.parametrize(
    ("field_yaml", "message_part", "line"),
    [
        ("email: {remote: Email, transform: [{truncate: -1}]}", "positive length", 5),
        ("email: {remote: Email, transform: [{strip: 1}]}", "takes no argument", 5),
        ("email: {remote: Email, transform: [values]}", "unknown transform 'values'", 5),
        ("first_name: {remote: Name, direction: out, transform: [{split_name: first}]}",
         "only applies when reading", 5),
        ("company: {remote: Name, direction: in, transform: [{template: '{company}'}]}",
         "only applies when writing", 5),
        ("company: {remote: Name, direction: out, transform: [{template: '{compny}'}]}",
         "unknown canonical field 'compny'", 5),
        ("id: {remote: Id}", "carried by key_field", 5),
        ("custom.bad-name: {remote: X}", "not a valid custom field name", 5),
        ("status: {remote: Status, default: open}", "not a lifecycle status", 5),
        ("email: {remote: Refsync_Id__c}", "which is the key_field", 5),
        ("email: {remote: 'Bad Name'}", "must be a remote field name", 5),
        ("email: {remote: Email, transform: [7]}", "a transform is a name or a one-key mapping",
         5),
    ],
)
def test_each_kind_of_problem(tmp_path: Path, field_yaml: str, message_part: str,
                              line: int) -> None:
    path = write(tmp_path, "system: s\nobject: o\nkey_field: Refsync_Id__c\nfields:\n  "
                 + field_yaml + "\n")
    problems = problems_of(path)
    assert len(problems) == 1, problems
    assert message_part in problems[0].message
    assert problems[0].line == line
    assert problems[0].fix


def test_duplicate_remote_targets(tmp_path: Path) -> None:
    path = write(tmp_path, """
        system: s
        object: o
        key_field: key
        fields:
          email: {remote: Email}
          custom.email2: {remote: Email}
          custom.email3: {remote: Email, direction: in}
          custom.nested: {remote: fields.a}
          custom.parent: {remote: fields}
        """)
    problems = problems_of(path)
    assert where(problems) == [(6, 27), (9, 27)]
    assert "'custom.email2' and 'email' both write remote field 'Email'" in problems[0].message
    assert "overlaps" in problems[1].message


def deal_stage_map(tmp_path: Path, *entries: str) -> Path:
    """A deals mapping whose ``status`` reads ``dealstage`` through a value map of ``entries``
    (one line each, from line 8 on)."""
    header = ("system: hubspot\nobject: deals\nkey_field: refsync_id\nfields:\n  status:\n"
              "    remote: dealstage\n    values:\n")
    return write(tmp_path, header + "".join(f"      {entry}\n" for entry in entries))


def test_many_to_one_value_map_needs_out(tmp_path: Path) -> None:
    path = deal_stage_map(tmp_path, "qualifiedtobuy: opportunity", "contractsent: opportunity",
                          "closedwon: won")
    (problem,) = problems_of(path)
    assert (problem.line, problem.column) == (7, 5)
    assert "'qualifiedtobuy', 'contractsent' all map to 'opportunity'" in problem.message
    assert problem.fix.startswith("add out: {opportunity: 'qualifiedtobuy'}")


def deal_stages_with(tmp_path: Path, third: str) -> Path:
    """A deals mapping whose stage map holds ``Qualified``, ``closedwon`` and ``third``."""
    return deal_stage_map(tmp_path, "Qualified: qualified", "closedwon: won", third)


@pytest.mark.parametrize("second", ['"qualified ": lost', "QUALIFIED: won"])
def test_value_map_keys_reading_cannot_tell_apart_are_refused(
    tmp_path: Path, second: str
) -> None:
    (problem,) = problems_of(deal_stages_with(tmp_path, second))
    assert (problem.line, problem.column) == (10, 7)
    key = second.split(":")[0].strip('"')
    assert problem.message == (
        f"value map key {key!r} differs from 'Qualified' (line 8) only in case or surrounding "
        "spaces, which reading ignores: the two keys collide")
    assert problem.fix == ("keep one of them, mapped to the value you mean: either finds the "
                           "remote value whatever its case")


def test_value_map_spellings_of_one_key_mapped_alike_only_need_an_out_choice(
    tmp_path: Path
) -> None:
    (problem,) = problems_of(deal_stages_with(tmp_path, "QUALIFIED: qualified"))
    assert "collide" not in problem.message
    assert "out:" in problem.fix


def deal_stages_repeating(tmp_path: Path, repeated: str) -> Path:
    """A deals mapping whose stage map, with an ``out:`` choice, ends by repeating a key."""
    return deal_stage_map(tmp_path, "qualifiedtobuy: opportunity", "contractsent: opportunity",
                          "closedwon: won", "out: {opportunity: qualifiedtobuy}", repeated)


@pytest.mark.parametrize("repeated", [
    "contractsent: won",  # two remote values for 'won', only through the repeat
    "out: {won: closedwon}",  # the choice for 'opportunity' is in the first out:
    "qualifiedtobuy: won",  # the remote value out: writes for 'opportunity' read back as it
])
def test_a_value_map_key_written_twice_is_reported_without_what_the_repeat_causes(
    tmp_path: Path, repeated: str
) -> None:
    (problem,) = problems_of(deal_stages_repeating(tmp_path, repeated))
    key = repeated.split(":")[0]
    assert (problem.line, problem.column, problem.message) == (
        12, 7, f"key '{key}' appears twice")


@pytest.mark.parametrize("first", ["won", "lost"])
def test_an_ambiguity_that_does_not_come_from_a_repeated_key_is_still_reported(
    tmp_path: Path, first: str
) -> None:
    path = deal_stage_map(tmp_path, f"closedwon: {first}", "closedlost: won", "lostdeal: won",
                          "closedwon: won")
    problems = problems_of(path)
    assert [(p.line, p.message) for p in problems] == [
        (7, "'closedwon', 'closedlost', 'lostdeal' all map to 'won', so writing it back is "
            "ambiguous"),
        (11, "key 'closedwon' appears twice")]


def test_out_choice_problems(tmp_path: Path) -> None:
    path = write(tmp_path, """
        system: hubspot
        object: deals
        key_field: refsync_id
        fields:
          status:
            remote: dealstage
            values:
              qualifiedtobuy: opportunity
              contractsent: opportunity
              closedwon: won
              out:
                opportunity: closedwon
                won: nowhere
                bogus: closedwon
        """)
    problems = problems_of(path)
    assert where(problems) == [(12, 22), (13, 14), (14, 9)]
    assert "reads back as 'won'" in problems[0].message
    assert "'nowhere' is not a remote value" in problems[1].message
    assert "'bogus' is not in the referral lifecycle" in problems[2].message


def test_yaml_syntax_error_has_a_position(tmp_path: Path) -> None:
    (problem,) = problems_of(write(tmp_path, "system: s\nfields: {email: [\n"))
    assert problem.message.startswith("not valid YAML")
    assert problem.line >= 2


def test_missing_file(tmp_path: Path) -> None:
    (problem,) = problems_of(tmp_path / "nope.yaml")
    assert "cannot read the file" in problem.message


def test_builtin_mappings_are_packaged_and_valid() -> None:
    names = builtin_mapping_names()
    assert names == ["hubspot-contacts", "hubspot-deals", "partnerstack-leads", "salesforce-lead"]
    for name in names:
        path = default_mapping_path(name)
        assert path.is_file() and path.parent.name == "defaults"
        mapping = load_mapping(f"builtin:{name}")
        assert mapping.name == f"builtin:{name}"


def test_builtin_reference_with_a_typo_suggests_the_right_name() -> None:
    with pytest.raises(ConfigError) as info:
        load_mapping("builtin:salesforce-leads")
    (problem,) = info.value.problems
    assert problem.fix == "did you mean 'builtin:salesforce-lead'?"


def test_problems_in_a_builtin_copy_name_the_copy(tmp_path: Path) -> None:
    text = default_mapping_path("salesforce-lead").read_text(encoding="utf-8")
    path = write(tmp_path, text.replace("Open - Not Contacted\": submitted",
                                        "Open - Not Contacted\": new"), "copy.yaml")
    (problem,) = problems_of(path)
    assert problem.file == str(path)
    assert "'new' is not in the referral lifecycle" in problem.message


def test_shorthand_field_and_default_must_be_a_value(tmp_path: Path) -> None:
    ok = load_mapping(write(tmp_path, "system: s\nobject: o\nkey_field: k\nfields:\n"
                                      "  email: Email\n  company: {remote: Company}\n"))
    assert [(f.canonical, f.remote) for f in ok.fields] == [("email", "Email"),
                                                          ("company", "Company")]
    problems = problems_of(write(tmp_path, "system: s\nobject: o\nkey_field: k\nfields:\n"
                                           "  email: Email\n  custom.x: Email\n"
                                           "  company: {remote: C, default: [1]}\n", "b.yaml"))
    assert [(p.line, p.message) for p in problems] == [
        (6, "'custom.x' and 'email' both write remote field 'Email'"),
        (7, "a default must be a single value"),
    ]


@pytest.mark.parametrize(("argument", "message", "fix"), [
    ('"40"', "truncate takes a number, not the text '40'", "write {truncate: 40}"),
    ("' 80 '", "truncate takes a number, not the text ' 80 '", "write {truncate: 80}"),
    ("forty", "truncate takes a number, not the text 'forty'", "write {truncate: 255}"),
    ('"0"', "truncate takes a number, not the text '0'", "write {truncate: 255}"),
])
def test_a_truncate_length_written_as_text_is_named_text(
    tmp_path: Path, argument: str, message: str, fix: str
) -> None:
    (problem,) = problems_of(write(
        tmp_path, "system: s\nobject: o\nkey_field: k\nfields:\n"
                  f"  first_name: {{remote: FirstName, transform: [{{truncate: {argument}}}]}}\n"))
    assert (problem.line, problem.column) == (5, 58)
    assert (problem.message, problem.fix) == (message, fix)


@pytest.mark.parametrize(("name", "example"), [
    ("custom.société", "custom.societe"),
    ("custom.lead source", "custom.lead_source"),
    ("custom.1st_touch", "custom.lead_source"),
])
def test_a_custom_field_name_must_be_ascii_and_the_fix_says_so(
    tmp_path: Path, name: str, example: str
) -> None:
    (problem,) = problems_of(write(
        tmp_path, f"system: s\nobject: o\nkey_field: k\nfields:\n  {name}: {{remote: X}}\n"))
    assert (problem.line, problem.column) == (5, 3)
    assert problem.message == f"'{name}' is not a valid custom field name"
    assert problem.fix == "use custom.<ASCII letters, digits, _> (not starting with a digit), " \
        f"e.g. {example}"


def test_value_map_entries_written_beside_an_empty_values_key_are_named_so(
    tmp_path: Path
) -> None:
    path = write(tmp_path, """
        system: salesforce
        object: Lead
        key_field: Refsync_Id__c
        fields:
          status:
            remote: Status
            values:
            Open - Not Contacted: submitted
            Working - Contacted: accepted
            rule: remote_wins
        """)
    problems = problems_of(path)
    assert [(p.line, p.column, p.message) for p in problems] == [
        (8, 5, "'Open - Not Contacted' is not a key of a field: written at the indentation of "
               "values: (line 7), it leaves the value map empty"),
        (9, 5, "'Working - Contacted' is not a key of a field: written at the indentation of "
               "values: (line 7), it leaves the value map empty"),
    ]
    assert {p.fix for p in problems} == {"indent it under values:, like a value map entry"}
