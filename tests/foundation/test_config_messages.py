"""What a refused configuration says: plain sentences with a fix, never a validator's wording."""

from __future__ import annotations

from pathlib import Path

import pytest

from refsync.config import load_config
from refsync.errors import ConfigError, Problem
from refsync.mapping import default_mapping_path
from refsync.sync.wiring import load_checked
from refsync.validation import MAX_SHOWN, problems_from_validation, shortened
from refsync.yamlsource import load_yaml_text
from tests.foundation.test_config import JWT_SALESFORCE, write
from tests.foundation.test_config import MINIMAL as MINIMAL_WITHOUT_PUBLIC_KEY

MINIMAL = MINIMAL_WITHOUT_PUBLIC_KEY.replace(
    "      secret_key: ${PS_SECRET}\n",
    "      secret_key: ${PS_SECRET}\n      public_key: ${PS_PUBLIC}\n")
"""The config tests' minimal config, with the public key PartnerStack's checks also need."""
ENVIRON = {"PS_SECRET": "x", "PS_PUBLIC": "y"}

VALIDATOR_WORDING = ("Input should", "Field required", "Extra inputs", "valid dictionary",
                     "valid integer", "String should", "Dictionary should", "instance of",
                     "Value error", "after validation", "unable to")


def only_problem(tmp_path: Path, text: str) -> Problem:
    with pytest.raises(ConfigError) as error:
        load_config(write(tmp_path, text), environ=ENVIRON)
    (problem,) = error.value.problems
    return problem


def in_stream(setting: str) -> str:
    return MINIMAL.replace("{object: leads,", "{object: leads, " + setting + ",")


@pytest.mark.parametrize(("text", "line", "message", "fix"), [
    (MINIMAL.replace("systems:\n  partnerstack:", "systems:\n  - partnerstack:"), 5,
     "systems must be a mapping (key: value), not a list",
     "write each entry as key: value, indented under it, not as a list ('- ' or [...])"),
    ("- version: 1\n", 1, "the file must be a mapping (key: value), not a list",
     "write each entry as key: value, not as a list ('- ' or [...])"),
    (in_stream("batch_size: lots"), 11,
     "systems.partnerstack.streams.leads.batch_size must be a whole number, not 'lots'",
     "write a whole number from 1 to 10000 (digits only, without quotes or units)"),
    (in_stream("batch_size: 20000"), 11,
     "systems.partnerstack.streams.leads.batch_size must be at most 10000, not 20000",
     "give a value from 1 to 10000"),
    (in_stream("enabled: maybe"), 11,
     "systems.partnerstack.streams.leads.enabled must be true or false, not 'maybe'",
     "write true or false"),
    (in_stream("direction: sideways"), 11,
     "systems.partnerstack.streams.leads.direction must be one of 'in', 'out' or 'both', "
     "not 'sideways'", "use one of: in, out, both"),
    (in_stream("direction: inn"), 11,
     "systems.partnerstack.streams.leads.direction must be one of 'in', 'out' or 'both', "
     "not 'inn'", "did you mean 'in'?"),
    (MINIMAL.replace("version: 1", "version: 2"), 1, "version must be 1, not 2",
     "write version: 1"),
    (MINIMAL.replace("{object: leads,", "{object: [a, b],"), 11,
     "systems.partnerstack.streams.leads.object must be text, not a list",
     "write a single value, not a list or mapping"),
    (MINIMAL + "instance: 1234\n", 12, "instance must be text, not 1234",
     'quote it to keep it as text: "1234"'),
    (MINIMAL + "instance: 007\n", 12, "instance must be text, not 7",
     'quote it to keep it as text: "007"'),
    (MINIMAL.replace("{object: leads, mapping: builtin:partnerstack-leads}", "leads"), 11,
     "systems.partnerstack.streams.leads must be a mapping (key: value), not 'leads'",
     "write its keys indented under it: object, direction, mapping, batch_size, enabled"),
    (MINIMAL.replace("      leads: {object: leads, mapping: builtin:partnerstack-leads}\n", "")
     .replace("    streams:\n", "    streams: {}\n"), 10,
     "systems.partnerstack.streams is empty, but it needs at least one entry",
     "add an entry under it"),
    (MINIMAL + "schedules:\n  name: nightly\n", 13, "schedules must be a list, not a mapping",
     "write each item on its own line starting with '- ' (or [a, b] on one line)"),
    (MINIMAL + "matching:\n  keys: email\n", 13, "matching.keys must be a list, not 'email'",
     "write it as a list: [email]"),
    (MINIMAL + "schedules:\n  - {name: Night Run, every: 1h}\n", 13,
     "schedules.0.name must be a name of lower-case letters, digits, _ and -, starting with a "
     "letter, not 'Night Run'", "rename it, e.g. nightly or crm_sync"),
    (MINIMAL + "schedules:\n  - {name: nightly, every: 5 minutes}\n", 13,
     "schedules.0.every must be a duration such as 30s, 5m or 1h, not '5 minutes'",
     "write a whole number and a unit (ms, s, m, h or d) with no space between, e.g. 5m"),
    (MINIMAL + "schedules:\n  - {name: nightly, every: 0s}\n", 13,
     "schedules.0.every must be at least 1s (got '0s')", "give a duration such as 30s or 5m"),
    (MINIMAL + "schedules:\n  - {name: nightly, every: 500ms}\n", 13,
     "schedules.0.every must be at least 1s (got '500ms')", "give a duration such as 30s or 5m"),
    (MINIMAL + "schedules:\n  - {name: nightly, every: 1h, timezone: Europe/Pariss}\n", 13,
     "schedules.0.timezone: unknown timezone 'Europe/Pariss'", "did you mean 'Europe/Paris'?"),
    (MINIMAL + "schedules:\n  - {name: nightly, every: 1h, timezone: london}\n", 13,
     "schedules.0.timezone: unknown timezone 'london'", "did you mean 'Europe/London'?"),
    (MINIMAL + "schedules:\n  - {name: nightly, every: 1h, timezone: new york}\n", 13,
     "schedules.0.timezone: unknown timezone 'new york'", "did you mean 'America/New_York'?"),
    (MINIMAL + "schedules:\n  - {name: nightly}\n", 13,
     "schedules.0: a schedule needs exactly one of 'every' (e.g. 5m) or 'cron' "
     "(e.g. */5 * * * *), and this one has neither", "add every: 5m, or cron: '*/5 * * * *'"),
    (MINIMAL + "schedules:\n  - {name: nightly, every: 1h, cron: '0 * * * *'}\n", 13,
     "schedules.0: a schedule needs exactly one of 'every' (e.g. 5m) or 'cron' "
     "(e.g. */5 * * * *), and this one has both", "remove one of them"),
    (MINIMAL + "daemon:\n  http_port: 70000\n", 13,
     "daemon.http_port must be at most 65535, not 70000", "give a value from 0 to 65535"),
    (MINIMAL + "daemon:\n  unready_after_failures: 0\n", 13,
     "daemon.unready_after_failures must be at least 1, not 0", "give a value of at least 1"),
    (MINIMAL + "daemon:\n  lease_ttl: 1s\n", 13,
     "daemon.lease_ttl must be at least 3s: the heartbeat renews it every third of it "
     "(got '1s')", "give 3s or more, e.g. 60s"),
    # a duration without its unit reads as a number: the fix is the unit, not quotes
    (MINIMAL + "daemon:\n  lease_ttl: 60\n", 13,
     "daemon.lease_ttl must be a duration such as 30s, 5m or 1h, not 60",
     "write a whole number and a unit (ms, s, m, h or d) with no space between, e.g. 5m"),
    (MINIMAL + "schedules:\n  - {name: nightly, every: 120}\n", 13,
     "schedules.0.every must be a duration such as 30s, 5m or 1h, not 120",
     "write a whole number and a unit (ms, s, m, h or d) with no space between, e.g. 5m"),
    (MINIMAL + "rules:\n  protection_window_days: 1.5\n", 13,
     "rules.protection_window_days must be a whole number, not 1.5",
     "write a whole number from 0 to 3650 (digits only, without quotes or units)"),
    (MINIMAL + "logging:\n  level: loud\n", 13,
     "logging.level must be one of 'debug', 'info', 'warning' or 'error', not 'loud'",
     "use one of: debug, info, warning, error"),
])
def test_a_wrong_value_says_what_it_should_be_and_how_to_fix_it(
    tmp_path: Path, text: str, line: int, message: str, fix: str
) -> None:
    problem = only_problem(tmp_path, text)
    assert (problem.line, problem.message, problem.fix) == (line, message, fix)


def test_a_connector_setting_of_the_wrong_type_is_a_plain_sentence(tmp_path: Path) -> None:
    text = MINIMAL.replace("public_key: ${PS_PUBLIC}\n", "public_key: ${PS_PUBLIC}\n"
                           "      page_size: lots\n      base_url: ''\n")
    with pytest.raises(ConfigError) as error:
        load_checked(write(tmp_path, text), environ=ENVIRON)
    assert [(p.line, p.message, p.fix) for p in error.value.problems] == [
        (10, "page_size must be a whole number, not 'lots'",
         "write a whole number of at least 1 (digits only, without quotes or units)"),
        (11, "base_url is empty",
         "give the URL (https://host), or remove the setting to use the default host"),
    ]


def test_a_value_no_member_of_a_union_accepts_is_one_problem() -> None:
    from pydantic import ValidationError

    from refsync.mapping.spec import MappingSpec

    loaded = load_yaml_text("system: s\nobject: o\nkey_field: k\nfields:\n"
                            "  email: {remote: Email, transform: [7]}\n", "m.yaml")
    with pytest.raises(ValidationError) as error:
        MappingSpec.model_validate(loaded.data)
    (problem,) = problems_from_validation(error.value, loaded.source, MappingSpec)
    assert (problem.line, problem.column) == (5, 38)
    assert problem.message == \
        "fields.email.transform.0 must be text or a mapping (key: value), not 7"
    assert problem.fix == "write text or a mapping (key: value)"


@pytest.mark.parametrize("text", [
    MINIMAL.replace("systems:\n  partnerstack:", "systems:\n  - partnerstack:"),
    "version: 1\nsystems: hello\n",
    MINIMAL + "state: [a]\n",
    MINIMAL + "rules: {customers_from: 5, protection_window_days: -1}\n",
    MINIMAL + "daemon: {http_port: x, lease_ttl: soon, shutdown_timeout: []}\n",
    MINIMAL + "matching: {keys: [email, fax], ignore_free_email_domains: 3}\n",
])
def test_no_problem_repeats_a_validator_and_every_one_has_a_fix(tmp_path: Path, text: str) -> None:
    with pytest.raises(ConfigError) as error:
        load_checked(write(tmp_path, text), environ=ENVIRON)
    for problem in error.value.problems:
        assert problem.fix, problem
        assert not any(words in str(problem) for words in VALIDATOR_WORDING), problem


def test_a_key_pasted_where_its_path_belongs_is_not_printed(tmp_path: Path) -> None:
    text = JWT_SALESFORCE.replace("KEY_PATH", "${SF_KEY_FILE}")
    key = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----"
    with pytest.raises(ConfigError) as error:
        load_checked(write(tmp_path, text), environ={"SF_KEY_FILE": key})
    (problem,) = error.value.problems
    assert problem.line == 8
    assert problem.message == "private_key_file holds a key, not the path of a key file"
    assert "MIIE" not in str(problem)


def test_a_misspelt_systems_key_is_not_followed_by_every_system_name_being_unknown(
    tmp_path: Path
) -> None:
    text = MINIMAL.replace("systems:", "sistems:") + (
        "rules:\n  customers_from: {system: partnerstack, object: Account}\n"
        "schedules:\n  - {name: nightly, every: 1h, systems: [partnerstack]}\n")
    with pytest.raises(ConfigError) as error:
        load_config(write(tmp_path, text), environ=ENVIRON)
    messages = [problem.message for problem in error.value.problems]
    assert not [message for message in messages if "not configured" in message], messages
    assert any("sistems" in message for message in messages)


@pytest.mark.parametrize(("cron", "message"), [
    ("30 2 * *", "schedules.0.cron must have five fields: minute hour day month weekday"),
    ("61 2 * * *", "schedules.0.cron is not valid: "),
])
def test_a_cron_problem_is_reported_at_the_cron_line(tmp_path: Path, cron: str,
                                                     message: str) -> None:
    problem = only_problem(tmp_path, MINIMAL + (
        f"schedules:\n  - name: nightly\n    timezone: Europe/London\n    cron: '{cron}'\n"))
    assert (problem.line, problem.column) == (15, 11)
    assert problem.message.startswith(message)
    assert problem.fix.startswith("write five fields, minute hour day month weekday")


def test_a_value_map_key_written_twice_is_the_only_problem_check_reports(tmp_path: Path) -> None:
    shipped = default_mapping_path("partnerstack-leads").read_text(encoding="utf-8")
    mapping = tmp_path / "leads.yaml"
    mapping.write_text(shipped.replace("      lost: lost\n",
                                       "      lost: lost\n      approved: lost\n"),
                       encoding="utf-8")
    text = MINIMAL.replace("builtin:partnerstack-leads", "leads.yaml")
    with pytest.raises(ConfigError) as error:
        load_checked(write(tmp_path, text), environ=ENVIRON)
    (problem,) = error.value.problems
    line = shipped.splitlines().index("      lost: lost") + 2
    assert (problem.file, problem.line, problem.column) == (str(mapping), line, 7)
    assert (problem.message, problem.fix) == ("key 'approved' appears twice",
                                              "keep only one of them")


def test_a_long_value_is_shortened_to_its_start_and_end() -> None:
    path = "/".join(["mappings"] * 40) + "/leads.yaml"
    shown = shortened(path)
    assert len(shown) == MAX_SHOWN
    assert shown.startswith("mappings/mappings/") and shown.endswith("/mappings/leads.yaml")
    assert "..." in shown
    assert shortened("mappings/leads.yaml") == "mappings/leads.yaml"


LONG_DIRECTORY = "/".join(["very-long-directory-name-for-mappings"] * 8)


@pytest.mark.parametrize(("name", "fix"), [
    ("leads.yaml", "check the path (a relative one is read from the config file's directory)"),
    ("leads.yml", f"did you mean {shortened(LONG_DIRECTORY + '/leads.yaml')}?"),
])
def test_a_long_missing_mapping_path_is_named_once_shortened(
    tmp_path: Path, name: str, fix: str
) -> None:
    (tmp_path / LONG_DIRECTORY).mkdir(parents=True)
    if name != "leads.yaml":
        (tmp_path / LONG_DIRECTORY / "leads.yaml").touch()
    written = f"{LONG_DIRECTORY}/{name}"
    text = MINIMAL.replace("builtin:partnerstack-leads", written)
    with pytest.raises(ConfigError) as error:
        load_checked(write(tmp_path, text), environ=ENVIRON)
    (problem,) = error.value.problems
    assert problem.line == 11
    assert problem.message == f"mapping file {shortened(written)} does not exist"
    assert problem.fix.startswith(fix)


def test_a_mapping_name_too_long_for_the_file_system_is_told_to_shorten_it(
    tmp_path: Path,
) -> None:
    written = "x" * 300 + ".yaml"  # one name longer than a file system allows
    text = MINIMAL.replace("builtin:partnerstack-leads", written)
    with pytest.raises(ConfigError) as error:
        load_checked(write(tmp_path, text), environ=ENVIRON)
    (problem,) = error.value.problems
    assert problem.line == 11
    assert problem.message.startswith(f"cannot read mapping file {shortened(written)}: ")
    assert problem.fix == "a file or directory name may be at most 255 bytes: shorten it"


def test_a_builtin_mapping_name_of_any_length_is_an_unknown_name(tmp_path: Path) -> None:
    name = "x" * 300  # longer than a file name may be: looked up by name, not on disk
    text = MINIMAL.replace("builtin:partnerstack-leads", f"builtin:{name}")
    with pytest.raises(ConfigError) as error:
        load_checked(write(tmp_path, text), environ=ENVIRON)
    (problem,) = error.value.problems
    assert problem.line == 11
    assert problem.message == f"there is no built-in mapping named '{shortened(name)}'"


def test_a_mapping_path_longer_than_the_system_allows_is_told_so(tmp_path: Path) -> None:
    written = "/".join(["d" * 200] * 25) + "/leads.yaml"  # no name over 255 bytes
    text = MINIMAL.replace("builtin:partnerstack-leads", written)
    with pytest.raises(ConfigError) as error:
        load_checked(write(tmp_path, text), environ=ENVIRON)
    (problem,) = error.value.problems
    assert problem.line == 11
    assert problem.fix == "the path is longer than the system allows: shorten it, or move the " \
        "file nearer the config"


def test_a_long_value_that_is_no_path_is_not_echoed_as_the_mapping(tmp_path: Path) -> None:
    pasted = "sk_live_" + "Q7v" * 110  # a secret pasted where the mapping's path belongs
    text = MINIMAL.replace("builtin:partnerstack-leads", pasted)
    with pytest.raises(ConfigError) as error:
        load_checked(write(tmp_path, text), environ=ENVIRON)
    (problem,) = error.value.problems
    assert problem.line == 11
    assert "Q7vQ7v" not in str(problem)
    assert f"(a value of {len(pasted)} characters, not shown)" in problem.message
