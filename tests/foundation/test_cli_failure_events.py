"""Under ``--log-format json``, every error event a failing command writes has the same shape:
``event``, ``level``, ``error`` (the message), ``command`` and ``exit_code``, whatever failed."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from refsync.cli import cli
from refsync.sandbox.runner import RunningSandbox, start_sandbox

EXAMPLE = Path(__file__).parents[2] / "config.example.yaml"
REQUIRED = {"event", "level", "timestamp", "error", "command", "exit_code"}


@pytest.fixture(scope="module")
def sandbox() -> Iterator[RunningSandbox]:
    with start_sandbox(seed="demo", ports={"salesforce": 0, "hubspot": 0, "partnerstack": 0}) \
            as running:
        yield running


def example_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """config.example.yaml with its state database in ``tmp_path``."""
    monkeypatch.setenv("REFSYNC_DATABASE_URL", f"sqlite:///{tmp_path / 'state.db'}")
    path = tmp_path / "refsync.yaml"
    path.write_text(EXAMPLE.read_text())
    return path


def sandbox_config(sandbox: RunningSandbox, tmp_path: Path,
                   monkeypatch: pytest.MonkeyPatch) -> Path:
    """The example config pointed at the sandbox, with a HubSpot token it refuses."""
    monkeypatch.setenv("SALESFORCE_URL", sandbox.urls["salesforce"])
    monkeypatch.setenv("SALESFORCE_CA_BUNDLE", str(sandbox.ca_bundle))
    monkeypatch.setenv("HUBSPOT_URL", sandbox.urls["hubspot"])
    monkeypatch.setenv("PARTNERSTACK_URL", sandbox.urls["partnerstack"] + "/api/v2")
    monkeypatch.setenv("HUBSPOT_ACCESS_TOKEN", "pat-revoked")
    return example_config(tmp_path, monkeypatch)


def bad_config(tmp_path: Path, _: pytest.MonkeyPatch) -> list[str]:
    path = tmp_path / "refsync.yaml"
    path.write_text(EXAMPLE.read_text().replace("instance: refsync-example",
                                                "instanse: refsync-example"))
    return ["sync", "-c", str(path)]


def unknown_referral(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    return ["referrals", "show", "deadbeef", "-c", str(example_config(tmp_path, monkeypatch))]


def unknown_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    return ["errors", "--run", "ffffffff", "-c", str(example_config(tmp_path, monkeypatch))]


def unknown_system(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    return ["sync", "--system", "salesfroce", "-c", str(example_config(tmp_path, monkeypatch))]


def used_demo_workdir(tmp_path: Path, _: pytest.MonkeyPatch) -> list[str]:
    (tmp_path / "refsync.db").write_bytes(b"")
    return ["demo", "--workdir", str(tmp_path)]


def users_config_as_demo_workdir(tmp_path: Path, _: pytest.MonkeyPatch) -> list[str]:
    (tmp_path / "refsync.yaml").write_text("instance: production\n")
    return ["demo", "--workdir", str(tmp_path)]


def usage_error(_: Path, __: pytest.MonkeyPatch) -> list[str]:
    return ["sync", "--bogus"]


def retry_without_ids(_: Path, __: pytest.MonkeyPatch) -> list[str]:
    return ["retry"]


def missing_sandbox_seed(tmp_path: Path, _: pytest.MonkeyPatch) -> list[str]:
    return ["sandbox", "--seed", str(tmp_path / "absent.json"), "--workdir", str(tmp_path)]


Case = Callable[[Path, pytest.MonkeyPatch], list[str]]


def error_lines(result: Result) -> list[dict[str, Any]]:
    """The error-level lines on standard error, each parsed (every line must parse)."""
    lines = [json.loads(line) for line in result.stderr.splitlines()]
    return [line for line in lines if line["level"] == "error"]


@pytest.mark.parametrize(("case", "exit_code", "command", "events"), [
    (bad_config, 2, "refsync sync", ["config problem", "command failed"]),
    (unknown_referral, 1, "refsync referrals show", ["command failed"]),
    (unknown_run, 2, "refsync errors", ["command failed"]),
    (unknown_system, 2, "refsync sync", ["command failed"]),
    (used_demo_workdir, 2, "refsync demo", ["command failed"]),
    (users_config_as_demo_workdir, 2, "refsync demo", ["command failed"]),
    (usage_error, 2, "refsync sync", ["command failed"]),
    (retry_without_ids, 2, "refsync retry", ["command failed"]),
    (missing_sandbox_seed, 1, "refsync sandbox", ["command failed"]),
])
def test_every_error_event_of_a_failing_command_has_the_same_keys(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, case: Case, exit_code: int, command: str,
    events: list[str],
) -> None:
    result = CliRunner().invoke(cli, ["--log-format", "json", *case(tmp_path, monkeypatch)],
                                prog_name="refsync")
    assert result.exit_code == exit_code, result.output
    lines = error_lines(result)
    assert [line["event"] for line in lines] == events, lines
    for line in lines:
        assert set(line) >= REQUIRED, line
        assert line["command"] == command and line["exit_code"] == exit_code, line
        assert isinstance(line["error"], str) and line["error"], line


def test_a_config_problem_event_keeps_its_fields_and_says_the_line_text_prints(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    args = bad_config(tmp_path, monkeypatch)
    text = CliRunner().invoke(cli, args, prog_name="refsync")
    logged = CliRunner().invoke(cli, ["--log-format", "json", *args], prog_name="refsync")
    problem, _ = error_lines(logged)
    assert problem["message"] == "unknown key 'instanse'" and problem["line"] > 0
    assert problem["fix"] == "did you mean 'instance'?"
    assert problem["error"] == text.stderr.splitlines()[0]


def test_a_failed_online_check_says_each_error_with_the_same_keys(
    sandbox: RunningSandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = sandbox_config(sandbox, tmp_path, monkeypatch)
    result = CliRunner().invoke(cli, ["--log-format", "json", "check", "-c", str(path),
                                      "--online"], prog_name="refsync")
    assert result.exit_code == 3, result.output
    lines = error_lines(result)
    assert [line["event"] for line in lines] == ["check failed", "command failed"], lines
    for line in lines:
        assert set(line) >= REQUIRED, line
        assert line["command"] == "refsync check" and line["exit_code"] == 3, line
    assert lines[0]["system"] == "hubspot" and lines[0]["fix"]


def test_a_failed_run_says_so_with_the_same_keys(
    sandbox: RunningSandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = sandbox_config(sandbox, tmp_path, monkeypatch)
    result = CliRunner().invoke(cli, ["--log-format", "json", "sync", "-c", str(path)],
                                prog_name="refsync")
    assert result.exit_code == 1, result.output
    said = error_lines(result)[-1]  # the command's last word, after the run's own log lines
    assert said["event"] == "command failed" and set(said) >= REQUIRED, said
    # the engine's own line says `run failed`, once: an alert on it fires once a failure
    assert [line["event"] for line in error_lines(result)].count("run failed") == 1
    assert said["command"] == "refsync sync" and said["exit_code"] == 1 and said["run_id"]
    assert "rejected the private-app access token" in said["error"]
