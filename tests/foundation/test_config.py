"""Configuration loading: validation with positions, references, secrets."""

from __future__ import annotations

from pathlib import Path

import pytest

from refsync.config import config_path_from, load_config
from refsync.errors import ConfigError

EXAMPLE = Path(__file__).parents[2] / "config.example.yaml"

MINIMAL = """\
version: 1
state:
  url: sqlite:///state.db
systems:
  partnerstack:
    role: prm
    settings:
      secret_key: ${PS_SECRET}
    streams:
      leads: {object: leads, mapping: builtin:partnerstack-leads}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "refsync.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_example_config_is_valid() -> None:
    loaded = load_config(EXAMPLE, environ={})
    assert set(loaded.config.systems) == {"partnerstack", "salesforce", "hubspot"}
    assert loaded.config.systems["salesforce"].streams["leads"].object == "Lead"
    assert loaded.config.state.url == f"sqlite:///{EXAMPLE.parent / 'refsync.db'}"
    assert "refsync-sandbox-secret" in loaded.secrets


def test_references_resolve_from_environment_defaults_and_files(tmp_path: Path) -> None:
    secret_file = tmp_path / "secret.txt"
    secret_file.write_text("from-a-file\n")
    text = MINIMAL.replace("${PS_SECRET}", f"file:{secret_file}").replace(
        "sqlite:///state.db", "${DB_URL:-sqlite:///default.db}"
    )
    loaded = load_config(write(tmp_path, text), environ={})
    assert loaded.config.systems["partnerstack"].settings["secret_key"] == "from-a-file"
    assert loaded.config.state.url == f"sqlite:///{tmp_path / 'default.db'}"
    assert loaded.secrets == ["from-a-file"]
    loaded = load_config(write(tmp_path, MINIMAL), environ={"PS_SECRET": "s3"})
    assert loaded.config.systems["partnerstack"].settings["secret_key"] == "s3"


def test_three_unrelated_mistakes_are_reported_at_once_with_lines(tmp_path: Path) -> None:
    text = """\
version: 1
state:
  url: sqlite:///state.db
systems:
  partnerstack:
    role: prm
    settings:
      secret_key: ${PS_SECRET}
    streams:
      leads:
        object: leads
        mapping: builtin:partnerstack-leads
        batch_size: lots
schedules:
  - name: often
    every: 5m
    timezon: UTC
"""
    with pytest.raises(ConfigError) as error:
        load_config(write(tmp_path, text), environ={})
    problems = error.value.problems
    assert [(p.line, p.column) for p in problems] == [(8, 19), (13, 21), (17, 5)]
    assert "PS_SECRET is not set" in problems[0].message
    assert "batch_size must be a whole number" in problems[1].message
    assert "unknown key 'timezon'" in problems[2].message
    assert problems[2].fix == "did you mean 'timezone'?"
    assert str(problems[2]).startswith(f"{tmp_path / 'refsync.yaml'}:17:5: unknown key")


def test_secret_written_in_yaml_is_refused(tmp_path: Path) -> None:
    text = MINIMAL.replace("${PS_SECRET}", "hunter2-literal")
    with pytest.raises(ConfigError) as error:
        load_config(write(tmp_path, text), environ={})
    (problem,) = error.value.problems
    assert (problem.line, problem.column) == (8, 19)
    assert "secret setting 'secret_key' is written in the YAML" in problem.message
    assert "${PARTNERSTACK_SECRET_KEY}" in problem.fix


@pytest.mark.parametrize("reference", ["${PS_SECRET:-}", "file:{directory}/secret.txt"])
def test_a_credential_that_resolves_to_nothing_is_refused_at_its_line(
    tmp_path: Path, reference: str
) -> None:
    from refsync.sync.wiring import load_checked

    (tmp_path / "secret.txt").write_text("\n")
    text = MINIMAL.replace("${PS_SECRET}", reference.replace("{directory}", str(tmp_path)))
    with pytest.raises(ConfigError) as error:
        load_checked(write(tmp_path, text), environ={})
    (problem,) = [p for p in error.value.problems if "secret_key" in p.message]
    assert (problem.line, problem.column) == (8, 19)
    assert problem.message == "secret_key is empty, and no system accepts an empty credential"
    assert "${VAR} refuses one" in problem.fix


def test_schedule_needs_exactly_one_trigger_and_known_systems(tmp_path: Path) -> None:
    text = MINIMAL + """\
schedules:
  - name: both
    every: 5m
    cron: "* * * * *"
  - name: ghost
    every: 1h
    systems: [salesforce]
"""
    with pytest.raises(ConfigError) as error:
        load_config(write(tmp_path, text), environ={"PS_SECRET": "x"})
    messages = " | ".join(p.message for p in error.value.problems)
    assert "exactly one of 'every'" in messages
    assert "names system 'salesforce', which is not configured" in messages
    assert [p.line for p in error.value.problems] == [12, 17]


def test_invalid_yaml_and_missing_file_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as error:
        load_config(write(tmp_path, "systems: [unclosed\n"), environ={})
    assert "not valid YAML" in error.value.problems[0].message
    with pytest.raises(ConfigError) as missing:
        load_config(tmp_path / "nope.yaml", environ={})
    assert "cannot read the file" in missing.value.problems[0].message


def test_config_path_precedence() -> None:
    assert config_path_from("a.yaml", {"REFSYNC_CONFIG": "b.yaml"}) == Path("a.yaml")
    assert config_path_from(None, {"REFSYNC_CONFIG": "b.yaml"}) == Path("b.yaml")
    assert config_path_from(None, {}) == Path("refsync.yaml")


RULES_WITH_DEALS = MINIMAL.replace("systems:\n", """\
systems:
  salesforce:
    settings: {}
    streams:
      leads: {object: Lead, mapping: builtin:salesforce-lead}
  hubspot:
    settings: {}
    streams:
      contacts: {object: contacts, mapping: builtin:hubspot-contacts}
""") + """\
rules:
  customers_from: {system: salesforce}
  open_opportunities_from:
    system: salesforce
"""


def test_open_opportunities_source_has_salesforce_defaults(tmp_path: Path) -> None:
    rules = load_config(write(tmp_path, RULES_WITH_DEALS), environ={"PS_SECRET": "x"}).config.rules
    assert rules.reject_open_opportunities is True
    source = rules.open_opportunities_from
    assert source is not None
    assert (source.system, source.object, source.account_field, source.closed_field,
            source.name_field) == ("salesforce", "Opportunity", "AccountId", "IsClosed", "Name")
    example = load_config(EXAMPLE, environ={}).config.rules
    assert example.open_opportunities_from is not None and example.customers_from is not None
    assert example.open_opportunities_from.system == example.customers_from.system


@pytest.mark.parametrize(("change", "needle", "message", "fix"), [
    (("  customers_from: {system: salesforce}\n", ""), "open_opportunities_from:",
     "rules.open_opportunities_from needs rules.customers_from",
     "add customers_from: {system: salesforce, object: Account} under rules"),
    (("    system: salesforce\n", "    system: hubspot\n"), "system: hubspot",
     "reads system 'hubspot' but rules.customers_from reads 'salesforce'",
     "use system: salesforce, the system customers_from reads"),
    (("salesforce}\n  open_opportunities_from:\n    system: salesforce\n",
      "hubspot}\n  open_opportunities_from:\n    system: hubspot\n"), "    system: hubspot",
     "HubSpot system 'hubspot', whose deals reach their company through associations",
     "add account_association: companies (a HubSpot source reads {system: hubspot, object: "
     "deals, account_association: companies, closed_field: hs_is_closed, name_field: "
     "dealname})"),
    (("    system: salesforce\n", "    system: salesforce\n    account_association: Account\n"),
     "account_association:", "reads 'salesforce' through associations, which only HubSpot",
     "remove account_association; account_field names the opportunity's account"),
    (("  customers_from: {system: salesforce}\n  open_opportunities_from:\n"
      "    system: salesforce\n",
      "  customers_from: {system: hubspot, object: companies}\n  open_opportunities_from:\n"
      "    system: hubspot\n    account_association: contacts\n"),
     "account_association:", "finds a deal's accounts among 'contacts' but "
     "rules.customers_from reads 'companies'",
     "use account_association: companies, the object customers_from reads"),
])
def test_open_opportunities_source_must_share_the_customer_system(
    tmp_path: Path, change: tuple[str, str], needle: str, message: str, fix: str
) -> None:
    text = RULES_WITH_DEALS.replace(*change)
    assert text != RULES_WITH_DEALS
    with pytest.raises(ConfigError) as error:
        load_config(write(tmp_path, text), environ={"PS_SECRET": "x"})
    (problem,) = error.value.problems
    expected = next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)
    assert problem.line == expected, (problem, text)
    assert message in problem.message
    assert problem.fix == fix


def test_open_opportunities_source_reads_hubspot_deals_through_associations(
    tmp_path: Path
) -> None:
    text = RULES_WITH_DEALS.replace(
        "  customers_from: {system: salesforce}\n  open_opportunities_from:\n"
        "    system: salesforce\n",
        "  customers_from: {system: hubspot, object: companies, name_field: name, "
        "website_field: domain, type_field: lifecyclestage}\n"
        "  open_opportunities_from: {system: hubspot, object: deals, account_association: "
        "companies, closed_field: hs_is_closed, name_field: dealname}\n")
    assert text != RULES_WITH_DEALS
    rules = load_config(write(tmp_path, text), environ={"PS_SECRET": "x"}).config.rules
    source = rules.open_opportunities_from
    assert source is not None
    assert (source.system, source.object, source.account_association, source.closed_field,
            source.name_field) == ("hubspot", "deals", "companies", "hs_is_closed", "dealname")
    salesforce = load_config(write(tmp_path, RULES_WITH_DEALS), environ={"PS_SECRET": "x"})
    assert salesforce.config.rules.open_opportunities_from is not None
    assert salesforce.config.rules.open_opportunities_from.account_association is None


def test_check_refuses_open_opportunities_without_customers_with_the_line(
    tmp_path: Path
) -> None:
    from click.testing import CliRunner

    from refsync.cli import cli

    text = EXAMPLE.read_text()
    broken = text.replace("  customers_from: {system: salesforce, object: Account}\n", "")
    assert broken != text
    path = write(tmp_path, broken)
    result = CliRunner().invoke(cli, ["check", "-c", str(path)])
    assert result.exit_code == 2, result.output
    line = next(i for i, row in enumerate(broken.splitlines(), 1)
                if row.startswith("  open_opportunities_from:"))
    reported = [row for row in result.output.splitlines() if row.startswith(str(path))]
    assert len(reported) == 1 and reported[0].startswith(f"{path}:{line}:3: "), result.output
    assert "needs rules.customers_from" in reported[0]


JWT_SALESFORCE = """\
version: 1
systems:
  salesforce:
    settings:
      auth: jwt
      consumer_key: refsync-connected-app
      username: sync@acme.example
      private_key_file: KEY_PATH
    streams:
      leads: {object: Lead, mapping: builtin:salesforce-lead}
    role: prm  # a config needs a system creating referrals; these tests are about the key
"""


def test_a_setting_naming_the_file_of_a_secret_is_a_path_not_a_secret(tmp_path: Path) -> None:
    from refsync.connectors.salesforce import SalesforceSettings
    from refsync.sync.wiring import connector_settings

    key_file = tmp_path / "sf.pem"
    key_file.write_text("-----BEGIN PRIVATE KEY-----\nnot a real key\n")
    loaded = load_config(write(tmp_path, JWT_SALESFORCE.replace("KEY_PATH", str(key_file))),
                         environ={})
    assert loaded.secrets == []
    settings, problems = connector_settings(loaded)
    assert problems == []
    salesforce = settings["salesforce"]
    assert isinstance(salesforce, SalesforceSettings)
    assert salesforce.private_key_file == key_file
    assert salesforce.private_key_file.read_text().startswith("-----BEGIN PRIVATE KEY-----")


def test_the_key_itself_written_in_the_yaml_is_still_refused(tmp_path: Path) -> None:
    text = JWT_SALESFORCE.replace("private_key_file: KEY_PATH",
                                  "private_key: '-----BEGIN PRIVATE KEY-----'")
    with pytest.raises(ConfigError) as error:
        load_config(write(tmp_path, text), environ={})
    (problem,) = error.value.problems
    assert "secret setting 'private_key' is written in the YAML" in problem.message
    assert "${SALESFORCE_PRIVATE_KEY}" in problem.fix


def test_a_file_reference_in_place_of_a_path_is_refused(tmp_path: Path) -> None:
    # file: would put the key itself where the connector expects the path of the key
    key_file = tmp_path / "sf.pem"
    key_file.write_text("-----BEGIN PRIVATE KEY-----\n")
    text = JWT_SALESFORCE.replace("KEY_PATH", f"file:{key_file}")
    with pytest.raises(ConfigError) as error:
        load_config(write(tmp_path, text), environ={})
    (problem,) = error.value.problems
    assert (problem.line, problem.column) == (8, 25)
    assert "'private_key_file' takes the path of a file" in problem.message
    assert problem.fix == "write the path itself: private_key_file: /path/to/the/file"
    from_environment = JWT_SALESFORCE.replace("KEY_PATH", "${SF_KEY_FILE}")
    loaded = load_config(write(tmp_path, from_environment), environ={"SF_KEY_FILE": "/k.pem"})
    assert loaded.config.systems["salesforce"].settings["private_key_file"] == "/k.pem"


HUBSPOT_CUSTOMERS = RULES_WITH_DEALS.replace(
    "  customers_from: {system: salesforce}\n  open_opportunities_from:\n"
    "    system: salesforce\n",
    "  customers_from: {system: hubspot, object: companies, name_field: name, "
    "website_field: domain, type_field: lifecyclestage}\n")


def test_customer_types_default_to_those_of_the_system_customers_are_read_from(
    tmp_path: Path
) -> None:
    def customer_types(text: str) -> list[str]:
        loaded = load_config(write(tmp_path, text), environ={"PS_SECRET": "x"})
        return loaded.config.rules.customer_account_types

    assert HUBSPOT_CUSTOMERS != RULES_WITH_DEALS
    assert customer_types(HUBSPOT_CUSTOMERS) == ["customer"]
    # the system's connector decides, not its name
    renamed = HUBSPOT_CUSTOMERS.replace("  hubspot:\n", "  marketing:\n    connector: hubspot\n") \
        .replace("{system: hubspot,", "{system: marketing,")
    assert customer_types(renamed) == ["customer"]
    assert customer_types(RULES_WITH_DEALS) == ["Customer - Direct", "Customer - Channel"]
    assert customer_types(MINIMAL) == ["Customer - Direct", "Customer - Channel"]
    # a value the configuration sets always wins
    explicit = HUBSPOT_CUSTOMERS + "  customer_account_types: [evangelist]\n"
    assert customer_types(explicit) == ["evangelist"]
    explicit = RULES_WITH_DEALS + "  customer_account_types: [customer]\n"
    assert customer_types(explicit) == ["customer"]


def test_an_unknown_customer_system_is_reported_at_its_own_line_with_a_guess(
    tmp_path: Path
) -> None:
    text = RULES_WITH_DEALS.replace("customers_from: {system: salesforce}",
                                    "customers_from: {system: salesfroce}")
    assert text != RULES_WITH_DEALS
    with pytest.raises(ConfigError) as error:
        load_config(write(tmp_path, text), environ={"PS_SECRET": "x"})
    (problem,) = error.value.problems  # and no "use system: salesfroce" for the right line
    assert problem.line == text.splitlines().index("  customers_from: {system: salesfroce}") + 1
    assert problem.message == \
        "rules.customers_from names system 'salesfroce', which is not configured"
    assert problem.fix == "did you mean 'salesforce'?"


def test_unknown_systems_in_both_rule_sources_are_each_reported(tmp_path: Path) -> None:
    text = RULES_WITH_DEALS.replace("system: salesforce", "system: sf")
    with pytest.raises(ConfigError) as error:
        load_config(write(tmp_path, text), environ={"PS_SECRET": "x"})
    lines = text.splitlines()
    assert [(p.line, p.message) for p in error.value.problems] == [
        (lines.index("  customers_from: {system: sf}") + 1,
         "rules.customers_from names system 'sf', which is not configured"),
        (lines.index("    system: sf") + 1,
         "rules.open_opportunities_from names system 'sf', which is not configured"),
    ]
    assert error.value.problems[0].fix == "use one of: hubspot, partnerstack, salesforce"


def test_two_schedules_with_one_name_are_refused_at_the_second(tmp_path: Path) -> None:
    text = MINIMAL + """\
schedules:
  - name: often
    every: 2m
  - name: often
    cron: "30 2 * * *"
"""
    with pytest.raises(ConfigError) as error:
        load_config(write(tmp_path, text), environ={"PS_SECRET": "x"})
    (problem,) = error.value.problems
    assert (problem.line, problem.column) == (14, 11)
    assert problem.message.startswith(
        "schedule name 'often' is already used by the schedule at line 12")
    assert problem.fix == "give each schedule its own name"


def test_a_config_without_a_prm_system_is_refused(tmp_path: Path) -> None:
    # role defaults to crm: forgetting role: prm would ignore every record read
    text = MINIMAL.replace("    role: prm\n", "")
    with pytest.raises(ConfigError) as error:
        load_config(write(tmp_path, text), environ={"PS_SECRET": "x"})
    (problem,) = error.value.problems
    assert (problem.line, problem.column) == (4, 1)
    assert "no system has role: prm" in problem.message
    assert problem.fix == "set role: prm on the system partners submit referrals in"
    # a mistyped role is reported as such, not as a missing PRM as well
    typo = MINIMAL.replace("role: prm", "role: pmr")
    with pytest.raises(ConfigError) as error:
        load_config(write(tmp_path, typo), environ={"PS_SECRET": "x"})
    (problem,) = error.value.problems
    assert "role" in problem.message and "no system has" not in problem.message


@pytest.mark.parametrize(("url", "message", "fix"), [
    ("sqlite://state/refsync.db",
     "state.url: sqlite:// with two slashes reads 'state' as a host name, and SQLite has no host",
     "write sqlite:///state/refsync.db (a path relative to the config file) or "
     "sqlite:////absolute/path/refsync.db"),
    ("mysql://refsync@db/refsync",
     "state.url: refsync keeps its state in SQLite or PostgreSQL, not 'mysql'",
     "use sqlite:///PATH or postgresql://USER@HOST/DB"),
    ("state.db", "state.url: this is not a database URL",
     "use sqlite:///PATH or postgresql://USER@HOST/DB"),
    ("sqlite://", "state.url: an in-memory SQLite database forgets every link and cursor when "
     "refsync exits",
     "name a file: sqlite:///refsync.db (relative to the config file) or "
     "sqlite:////absolute/path/refsync.db"),
])
def test_a_state_url_refsync_cannot_open_is_a_config_problem_with_a_fix(
    tmp_path: Path, url: str, message: str, fix: str
) -> None:
    with pytest.raises(ConfigError) as error:
        load_config(write(tmp_path, MINIMAL.replace("sqlite:///state.db", url)),
                    environ={"PS_SECRET": "x"})
    (problem,) = error.value.problems
    assert (problem.line, problem.column, problem.message, problem.fix) == (3, 8, message, fix)


def test_a_relative_sqlite_path_is_relative_to_the_config_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config_dir = tmp_path / "etc"
    config_dir.mkdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)

    def state_url(written: str, environ: dict[str, str] | None = None) -> str:
        text = MINIMAL.replace("sqlite:///state.db", written)
        path = write(config_dir, text)
        loaded = load_config(Path("..") / "etc" / path.name, environ={"PS_SECRET": "x",
                                                                      **(environ or {})})
        return loaded.config.state.url

    assert state_url("sqlite:///state/refsync.db") == \
        f"sqlite:///{config_dir / 'state' / 'refsync.db'}"
    assert state_url("sqlite+pysqlite:///refsync.db?timeout=5") == \
        f"sqlite+pysqlite:///{config_dir / 'refsync.db'}?timeout=5"
    # as config.example.yaml writes it, unset and set
    example = "${REFSYNC_DATABASE_URL:-sqlite:///refsync.db}"
    assert state_url(example) == f"sqlite:///{config_dir / 'refsync.db'}"
    assert state_url(example, {"REFSYNC_DATABASE_URL": "sqlite:////var/lib/refsync/x.db"}) == \
        "sqlite:////var/lib/refsync/x.db"
    # absolute paths, the home directory and PostgreSQL are left as written
    for written in ("sqlite:////var/lib/refsync/refsync.db", "sqlite:///~/refsync.db",
                    "postgresql://refsync@db.internal/refsync"):
        assert state_url(written) == written
    # the default is beside the config file too
    no_state = MINIMAL.replace("state:\n  url: sqlite:///state.db\n", "")
    loaded = load_config(write(config_dir, no_state), environ={"PS_SECRET": "x"})
    assert loaded.config.state.url == f"sqlite:///{config_dir / 'refsync.db'}"


def test_a_database_left_in_the_working_directory_is_not_silently_replaced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a relative path used to be read from the working directory: starting over from an empty
    # database beside the config would create every referral again
    config_dir = tmp_path / "etc"
    config_dir.mkdir()
    workdir = tmp_path / "var"
    workdir.mkdir()
    (workdir / "state.db").write_bytes(b"")
    monkeypatch.chdir(workdir)
    path = write(config_dir, MINIMAL)
    with pytest.raises(ConfigError) as error:
        load_config(path, environ={"PS_SECRET": "x"})
    (problem,) = error.value.problems
    assert (problem.line, problem.column) == (3, 8)
    assert f"has no state.db, but {workdir / 'state.db'} exists" in problem.message
    assert problem.fix == (
        f"move {workdir / 'state.db'} (with its -wal and -shm files) to "
        f"{config_dir / 'state.db'}, or keep it there and write state.url: "
        f"sqlite:///{workdir / 'state.db'}")
    (config_dir / "state.db").write_bytes(b"")  # once beside the config, that one is used
    assert load_config(path, environ={"PS_SECRET": "x"}).config.state.url == \
        f"sqlite:///{config_dir / 'state.db'}"


def test_a_sqlite_path_too_long_to_look_up_loads_rather_than_crashing(tmp_path: Path) -> None:
    # the system refuses to look a name this long up (ENAMETOOLONG); the config still loads
    # (opening the database then says what is wrong with the file)
    loaded = load_config(write(tmp_path, MINIMAL.replace("state.db", "s" * 300 + ".db")),
                         environ={"PS_SECRET": "x"})
    assert loaded.config.state.url.endswith("s" * 300 + ".db")


def test_durations_longer_than_a_year_are_refused_at_their_line(tmp_path: Path) -> None:
    """Such values passed check, then crashed the daemon with an overflow."""
    text = MINIMAL + """\
schedules:
  - name: rarely
    every: 1000000000d
daemon:
  lease_ttl: 9999999999999999s
"""
    with pytest.raises(ConfigError) as error:
        load_config(write(tmp_path, text), environ={"PS_SECRET": "x"})
    found = {(p.line, "longer than a year" in p.message) for p in error.value.problems}
    assert found == {(13, True), (15, True)}, error.value.problems


def test_two_streams_of_one_system_on_one_object_are_refused(tmp_path: Path) -> None:
    """They read every record twice and quarantined each refused write twice."""
    text = MINIMAL.replace(
        "      leads: {object: leads, mapping: builtin:partnerstack-leads}\n",
        "      leads: {object: leads, mapping: builtin:partnerstack-leads}\n"
        "      copy: {object: leads, mapping: builtin:partnerstack-leads}\n")
    with pytest.raises(ConfigError) as error:
        load_config(write(tmp_path, text), environ={"PS_SECRET": "x"})
    (problem,) = error.value.problems
    assert problem.line == 11 and "as stream 'partnerstack.leads' at line 10" in problem.message


def test_a_password_in_the_state_url_is_refused(tmp_path: Path) -> None:
    text = MINIMAL.replace("url: sqlite:///state.db",
                           "url: postgresql://refsync:hunter2@db.internal/refsync")
    with pytest.raises(ConfigError) as error:
        load_config(write(tmp_path, text), environ={"PS_SECRET": "x"})
    (problem,) = error.value.problems
    assert problem.line == 3 and "holds a password" in problem.message
    assert "PGPASSWORD" in problem.fix
    assert "hunter2" not in problem.message + problem.fix
