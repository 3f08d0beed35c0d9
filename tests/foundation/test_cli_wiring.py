"""`refsync check` and the commands that sync (`sync`, `plan`, `retry`, `run`) check what a
configuration names the same way: every problem at once, at the line to change, before the
state database is opened or created. Two file systems, so nothing needs a network."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from refsync.cli import cli
from refsync.config import load_config
from tests.foundation.test_config import JWT_SALESFORCE
from tests.sync.file_workspace import make_workspace

COMMANDS = [["check"], ["sync"], ["plan"], ["retry", "--all"], ["run"]]
COMMAND_IDS = [command[0] for command in COMMANDS]


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    """The file workspace on SQLite, with a schedule so that `run` gets as far as the checks."""
    (tmp_path / "ws").mkdir()
    root = make_workspace(tmp_path / "ws", f"sqlite:///{tmp_path / 'state.db'}")
    config = root / "refsync.yaml"
    config.write_text(config.read_text() + "schedules:\n  - {name: often, every: 1h}\n")
    return root


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new, 1))


def line_of(path: Path, needle: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if needle in line)


def invoke(workspace: Path, command: list[str]) -> Result:
    return CliRunner().invoke(cli, [*command, "-c", str(workspace / "refsync.yaml")])


def assert_refused_untouched(result: Result, workspace: Path) -> list[str]:
    """Exit 2 with problems, and no state database: return the problem lines."""
    assert result.exit_code == 2, result.output
    assert "nothing was changed" in result.output
    assert not (workspace.parent / "state.db").exists(), "the refused config created the DB"
    return [line for line in result.output.splitlines() if ": " in line and "found" not in line]


@pytest.mark.parametrize("command", COMMANDS, ids=COMMAND_IDS)
def test_a_stream_whose_mapping_is_for_another_object_is_refused_by_every_command(
    workspace: Path, command: list[str]
) -> None:
    config = workspace / "refsync.yaml"
    edit(config, "leads: {object: Lead, mapping: crm.yaml}",
         "leads: {object: Contact, mapping: crm.yaml}")
    (problem,) = assert_refused_untouched(invoke(workspace, command), workspace)
    assert problem.startswith(f"{config}:{line_of(config, 'object: Contact')}:")
    assert "stream 'crm.leads' reads object 'Contact' but its mapping crm.yaml is for 'Lead'" \
        in problem


@pytest.mark.parametrize("command", COMMANDS, ids=COMMAND_IDS)
def test_a_stream_whose_mapping_is_for_another_system_is_refused_by_every_command(
    workspace: Path, command: list[str]
) -> None:
    config = workspace / "refsync.yaml"
    edit(workspace / "crm.yaml", "system: crm", "system: hubspot")
    (problem,) = assert_refused_untouched(invoke(workspace, command), workspace)
    assert problem.startswith(f"{config}:{line_of(config, 'mapping: crm.yaml')}:")
    assert "stream 'crm.leads' is on system crm (connector file) but its mapping crm.yaml is " \
        "for system 'hubspot'" in problem
    assert "set system: crm in the mapping" in problem


def test_a_mapping_named_after_its_system_or_its_connector_fits(workspace: Path) -> None:
    edit(workspace / "crm.yaml", "system: crm", "system: file")
    result = invoke(workspace, ["check"])
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("command", COMMANDS, ids=COMMAND_IDS)
def test_customers_read_from_an_unknown_system_are_refused_by_every_command(
    workspace: Path, command: list[str]
) -> None:
    config = workspace / "refsync.yaml"
    edit(config, "rules: {protection_window_days: 90}",
         "rules:\n  customers_from: {system: crn, object: Account}")
    (problem,) = assert_refused_untouched(invoke(workspace, command), workspace)
    assert problem.startswith(f"{config}:{line_of(config, 'system: crn')}:")
    assert "rules.customers_from names system 'crn', which is not configured" in problem
    assert "did you mean 'crm'?" in problem


@pytest.mark.parametrize(("written", "expected"), [
    ("crm.yml", ["mapping file crm.yml (", "crm.yml) does not exist", "did you mean crm.yaml?"]),
    ("builtin:salesforce-leads", ["there is no built-in mapping named 'salesforce-leads'",
                                  "did you mean 'builtin:salesforce-lead'?"]),
    ("crm", ["is a directory, not a mapping file", "name a mapping file (.yaml)"]),
])
@pytest.mark.parametrize("command", [["check"], ["sync"]], ids=["check", "sync"])
def test_a_mapping_that_cannot_be_opened_is_reported_at_the_line_naming_it(
    workspace: Path, command: list[str], written: str, expected: list[str]
) -> None:
    config = workspace / "refsync.yaml"
    edit(config, "mapping: crm.yaml", f"mapping: {written}")
    (problem,) = assert_refused_untouched(invoke(workspace, command), workspace)
    assert problem.startswith(f"{config}:{line_of(config, f'mapping: {written}')}:"), problem
    assert all(part in problem for part in expected), problem
    assert "-c/--config" not in problem


@pytest.mark.parametrize("command", COMMANDS, ids=COMMAND_IDS)
def test_config_settings_and_mapping_problems_are_reported_together(
    workspace: Path, command: list[str]
) -> None:
    config = workspace / "refsync.yaml"
    edit(config, "version: 1", "version: 1\ninstanse: here")
    edit(config, "settings: {directory: prm}", "settings: {directory: prm, id_feild: id}")
    edit(workspace / "crm.yaml", "transform: [email]", "transform: [lowercase]")
    problems = assert_refused_untouched(invoke(workspace, command), workspace)
    assert [problem.split(": ", 1)[0].rsplit(":", 2)[0] for problem in problems] == [
        str(config), str(config), str(workspace / "crm.yaml")]
    assert "unknown key 'instanse'" in problems[0]
    assert "unknown key 'id_feild' — did you mean 'id_field'?" in problems[1]
    assert problems[1].startswith(f"{config}:{line_of(config, 'id_feild')}:")
    assert "unknown transform 'lowercase'" in problems[2]


@pytest.mark.parametrize("command", [["plan"], ["sync"]], ids=["plan", "sync"])
def test_an_unknown_system_to_sync_is_refused_with_a_guess(
    workspace: Path, command: list[str]
) -> None:
    result = invoke(workspace, [*command, "--system", "crn"])
    assert result.exit_code == 2, result.output
    assert "unknown system 'crn' (did you mean 'crm'?); configured: prm, crm" in result.output
    assert not (workspace.parent / "state.db").exists()


def test_a_relative_private_key_file_is_read_from_the_config_files_directory(
    tmp_path: Path,
) -> None:
    from refsync.connectors.salesforce import SalesforceSettings
    from refsync.sync.wiring import connector_settings

    (tmp_path / "conf" / "keys").mkdir(parents=True)
    (tmp_path / "conf" / "keys" / "sf.pem").write_text("-----BEGIN PRIVATE KEY-----\n")
    config = tmp_path / "conf" / "refsync.yaml"
    config.write_text(JWT_SALESFORCE.replace("KEY_PATH", "keys/sf.pem"))
    settings, problems = connector_settings(load_config(config, environ={}))
    assert problems == []
    salesforce = settings["salesforce"]
    assert isinstance(salesforce, SalesforceSettings)
    assert salesforce.private_key_file == tmp_path / "conf" / "keys" / "sf.pem"
