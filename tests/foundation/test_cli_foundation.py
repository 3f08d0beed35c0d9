"""The foundation CLI commands: --version, check, state migrate/show, runs, errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from refsync import __version__
from refsync.cli import cli
from refsync.state import StateStore

EXAMPLE = Path(__file__).parents[2] / "config.example.yaml"


def make_config(tmp_path: Path, state_url: str) -> Path:
    text = EXAMPLE.read_text().replace("${REFSYNC_DATABASE_URL:-sqlite:///refsync.db}", state_url)
    path = tmp_path / "refsync.yaml"
    path.write_text(text)
    return path


def test_version_and_python_dash_m() -> None:
    result = CliRunner().invoke(cli, ["--version"])
    assert result.exit_code == 0 and __version__ in result.output
    completed = subprocess.run(
        [sys.executable, "-m", "refsync", "--version"], capture_output=True, text=True, check=True
    )
    assert __version__ in completed.stdout


def test_check_accepts_the_example_config() -> None:
    result = CliRunner().invoke(cli, ["check", "-c", str(EXAMPLE)])
    assert result.exit_code == 0, result.output
    assert "OK" in result.output
    result = CliRunner().invoke(cli, ["check", "-c", str(EXAMPLE), "--json"])
    assert json.loads(result.output)["ok"] is True


def test_check_counts_in_words_and_takes_the_path_of_a_key_file(tmp_path: Path) -> None:
    # a setting naming a key file holds a path: written as is, it is not a secret in the YAML
    from tests.foundation.test_config import JWT_SALESFORCE

    path = tmp_path / "refsync.yaml"
    path.write_text(JWT_SALESFORCE.replace("KEY_PATH", "secrets/sf.pem"))
    # the file must be there (read from the config's directory), not the key in the YAML
    missing = CliRunner().invoke(cli, ["check", "-c", str(path)])
    assert missing.exit_code == 2 and f"{path}:8:" in missing.output, missing.output
    assert "private_key_file" in missing.output and "names no file" in missing.output
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "sf.pem").write_text("-----BEGIN PRIVATE KEY-----\n")
    result = CliRunner().invoke(cli, ["check", "-c", str(path)])
    assert result.exit_code == 0, result.output
    assert result.output == f"{path}: OK — 1 system, 1 stream, mappings valid\n"


def test_check_reports_three_mistakes_and_exits_2(tmp_path: Path) -> None:
    broken = EXAMPLE.read_text()
    broken = broken.replace("instance: refsync-example", "instanse: refsync-example")
    broken = broken.replace("batch_size: 200", "batch_size: two hundred")
    broken = broken.replace(
        "${HUBSPOT_ACCESS_TOKEN:-pat-sandbox-refsync}", "${HUBSPOT_TOKEN_UNSET}")
    path = tmp_path / "refsync.yaml"
    path.write_text(broken)
    lines = broken.splitlines()
    expected_lines = [
        next(i for i, line in enumerate(lines, 1) if needle in line)
        for needle in ("instanse:", "two hundred", "HUBSPOT_TOKEN_UNSET")
    ]
    result = CliRunner().invoke(cli, ["check", "-c", str(path)])
    assert result.exit_code == 2
    reported = [line for line in result.output.splitlines() if line.startswith(str(path))]
    assert [int(line.split(":")[1]) for line in reported] == expected_lines
    assert "did you mean 'instance'?" in reported[0]
    assert "HUBSPOT_TOKEN_UNSET is not set" in reported[2]
    result = CliRunner().invoke(cli, ["check", "-c", str(path), "--json"])
    assert result.exit_code == 2
    assert len(json.loads(result.output)["problems"]) == 3


def test_bad_config_exits_2_before_touching_the_database(tmp_path: Path) -> None:
    database = tmp_path / "state.db"
    path = make_config(tmp_path, f"sqlite:///{database}")
    path.write_text(path.read_text().replace("version: 1", "version: 1\nbogus: true"))
    result = CliRunner().invoke(cli, ["runs", "-c", str(path)])
    assert result.exit_code == 2
    assert "unknown key 'bogus'" in result.output
    assert not database.exists()


def test_state_commands_on_an_empty_store(tmp_path: Path, state_url: str) -> None:
    path = make_config(tmp_path, state_url)
    runner = CliRunner()
    migrated = runner.invoke(cli, ["-c", str(path), "state", "migrate"])
    assert migrated.exit_code == 0, migrated.output
    assert "0001" in migrated.output
    shown = runner.invoke(cli, ["-c", str(path), "state", "show"])
    assert shown.exit_code == 0 and "No cursors yet" in shown.output
    runs = runner.invoke(cli, ["runs", "-c", str(path)])
    assert runs.exit_code == 0 and "No runs yet" in runs.output
    errors = runner.invoke(cli, ["errors", "-c", str(path)])
    assert errors.exit_code == 0 and "No quarantined records" in errors.output
    assert json.loads(runner.invoke(cli, ["runs", "-c", str(path), "--json"]).output) == []


def test_runs_errors_and_cursors_are_listed(tmp_path: Path, state_url: str) -> None:
    path = make_config(tmp_path, state_url)
    with StateStore(state_url) as store:
        run_id = store.start_run(trigger="manual", instance="daemon-7")
        with store.transaction() as tx:
            tx.set_cursor("salesforce", "leads", {"modstamp": "2026-01-01T00:00:00Z"}, run_id)
            tx.quarantine([{
                "run_id": run_id, "system": "salesforce", "stream": "leads", "direction": "out",
                "error_code": "REQUIRED_FIELD_MISSING",
                "message": "Required fields are missing: [Company]",
            }])
        store.finish_run(run_id, status="partial", counts={"read": 3, "quarantined": 1})
    runner = CliRunner()
    runs = json.loads(runner.invoke(cli, ["runs", "-c", str(path), "--json"]).output)
    assert runs[0]["instance"] == "daemon-7" and runs[0]["status"] == "partial"
    table = runner.invoke(cli, ["runs", "-c", str(path)]).output
    assert "daemon-7" in table and "partial" in table
    with StateStore(state_url) as store:
        other = store.start_run(trigger="schedule", instance="daemon-8", job="nightly")
        store.abandon_runs("daemon-8", reason="daemon daemon-8 stopped renewing its lease")
    table = runner.invoke(cli, ["runs", "-c", str(path), "--job", "nightly"]).output
    assert "daemon-7" not in table and "daemon-8" in table
    assert f"{other[:8]} abandoned: daemon daemon-8 stopped renewing its lease" in table
    errors = json.loads(runner.invoke(
        cli, ["errors", "-c", str(path), "--run", run_id[:8], "--json"]).output)
    assert errors[0]["error_code"] == "REQUIRED_FIELD_MISSING"
    assert "Company" in runner.invoke(cli, ["errors", "-c", str(path)]).output
    state = json.loads(runner.invoke(cli, ["state", "show", "-c", str(path), "--json"]).output)
    assert state["cursors"][0]["value"] == {"modstamp": "2026-01-01T00:00:00Z"}


@pytest.mark.parametrize("command", [["runs"], ["errors"], ["state", "show"]])
def test_config_via_environment_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: list[str]
) -> None:
    path = make_config(tmp_path, f"sqlite:///{tmp_path / 'env.db'}")
    monkeypatch.setenv("REFSYNC_CONFIG", str(path))
    assert CliRunner().invoke(cli, command).exit_code == 0


def test_check_refuses_a_state_url_with_two_slashes_and_nothing_is_created(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    path = make_config(tmp_path, "sqlite://state/refsync.db")
    checked = CliRunner().invoke(cli, ["check", "-c", str(path)])
    assert checked.exit_code == 2, checked.output
    assert "state.url: sqlite:// with two slashes reads 'state' as a host name" in checked.output
    assert "write sqlite:///state/refsync.db" in checked.output
    shown = CliRunner().invoke(cli, ["-c", str(path), "state", "show"])
    assert shown.exit_code == 2
    assert sorted(entry.name for entry in tmp_path.iterdir()) == ["refsync.yaml"]


def test_an_unwritable_state_location_is_one_clear_line(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    path = make_config(tmp_path, f"sqlite:///{blocker / 'refsync.db'}")
    result = CliRunner().invoke(cli, ["-c", str(path), "state", "show"])
    assert result.exit_code == 1
    assert result.output.startswith(f"error: cannot create {blocker / 'refsync.db'}: ")
    assert "Traceback" not in result.output


def test_the_state_database_is_found_beside_the_config_from_any_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config_dir = tmp_path / "etc"
    config_dir.mkdir()
    path = make_config(config_dir, "sqlite:///state/refsync.db")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    migrated = CliRunner().invoke(cli, ["-c", str(path), "state", "migrate"])
    assert migrated.exit_code == 0, migrated.output
    assert (config_dir / "state" / "refsync.db").exists()
    assert list(elsewhere.iterdir()) == []


def test_state_show_tells_the_ids_read_at_a_cursors_boundary_by_their_number(
    tmp_path: Path, state_url: str,
) -> None:
    # a batch write gives hundreds of records one modification time: the cursor keeps the ids
    # already read at it, which the table counts and --json gives whole
    path = make_config(tmp_path, state_url)
    seen = {f"00Q{n:012d}": "2026-01-01T00:00:00Z" for n in range(200)}
    with StateStore(state_url) as store, store.transaction() as tx:
        tx.set_cursor("salesforce", "leads", {"modstamp": "2026-01-01T00:00:00Z", "seen": seen})
        tx.set_cursor("hubspot", "contacts", {"modstamp": "2026-01-01T00:00:00Z",
                                              "seen": {"101": "2026-01-01T00:00:00Z"}})
    runner = CliRunner()
    table = runner.invoke(cli, ["state", "show", "-c", str(path)], terminal_width=200).output
    assert "seen=200 ids" in table and "seen=1 id " in table and "00Q" not in table
    state = json.loads(runner.invoke(cli, ["state", "show", "-c", str(path), "--json"]).output)
    assert {c["system"]: len(c["value"]["seen"]) for c in state["cursors"]} == {
        "salesforce": 200, "hubspot": 1}
