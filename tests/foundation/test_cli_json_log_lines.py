"""With ``--log-format json``, every line the CLI writes on standard error is a JSON object:
the problems ``refsync check`` finds and click's own usage errors included."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from refsync.cli import cli

EXAMPLE = Path(__file__).parents[2] / "config.example.yaml"


def json_lines(text: str) -> list[dict[str, Any]]:
    """Every line of ``text`` parsed; fails on a line that is not a JSON object."""
    return [json.loads(line) for line in text.splitlines()]


def broken_config(tmp_path: Path) -> Path:
    path = tmp_path / "refsync.yaml"
    path.write_text(EXAMPLE.read_text().replace("instance: refsync-example",
                                                "instanse: refsync-example"))
    return path


def refsync(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), prog_name="refsync")


def test_check_reports_a_refused_config_as_json_events(tmp_path: Path) -> None:
    path = broken_config(tmp_path)
    result = refsync("--log-format", "json", "check", "-c", str(path))
    assert result.exit_code == 2
    assert result.stdout == ""
    problem, failed = json_lines(result.stderr)
    assert problem["event"] == "config problem" and problem["level"] == "error"
    assert problem["file"] == str(path) and problem["line"] > 0
    assert problem["message"] == "unknown key 'instanse'"
    assert problem["fix"] == "did you mean 'instance'?"
    assert failed["event"] == "command failed"
    assert failed["error"] == "1 problem found; nothing was changed."


def test_check_without_log_format_json_reports_as_before(tmp_path: Path) -> None:
    path = broken_config(tmp_path)
    text = refsync("check", "-c", str(path))
    assert text.exit_code == 2
    assert text.stderr.splitlines()[-1] == "1 problem found; nothing was changed."
    assert "unknown key 'instanse' — did you mean 'instance'?" in text.stderr
    # --json is the report for scripts, on standard output, whatever the log format
    as_json = refsync("--log-format", "json", "check", "-c", str(path), "--json")
    assert as_json.exit_code == 2 and as_json.stderr == ""
    assert json.loads(as_json.stdout)["problems"][0]["message"] == "unknown key 'instanse'"


def test_check_prints_its_report_on_standard_output_whatever_the_log_format() -> None:
    result = refsync("--log-format", "json", "check", "-c", str(EXAMPLE))
    assert result.exit_code == 0, result.output
    assert result.stdout == f"{EXAMPLE}: OK — 3 systems, 4 streams, mappings valid\n"
    assert result.stderr == ""


@pytest.mark.parametrize(("args", "error", "command"), [
    (["sync", "--bogus"], "No such option '--bogus'.", "refsync sync"),
    (["--bogus", "sync"], "No such option '--bogus'.", "refsync"),
    (["nosuch"], "No such command 'nosuch'.", "refsync"),
    (["--log-level", "loud", "sync"],
     "Invalid value for '--log-level': 'loud' is not one of 'debug', 'info', 'warning', "
     "'error'.", "refsync"),
    (["referrals", "--limit", "many"],
     "Invalid value for '--limit': 'many' is not a valid integer range.", "refsync referrals"),
    (["mapping", "preview", "--mapping", "builtin:salesforce-lead"],
     "give exactly one of --record or --input", "refsync mapping preview"),
])
def test_a_usage_error_is_one_json_event(args: list[str], error: str, command: str) -> None:
    result = refsync("--log-format", "json", *args)
    assert result.exit_code == 2
    assert result.stdout == ""
    (event,) = json_lines(result.stderr)
    assert event["event"] == "command failed" and event["level"] == "error"
    assert event["error"] == error
    assert event["command"] == command
    assert event["exit_code"] == 2


def test_the_log_format_may_follow_the_option_click_refuses() -> None:
    result = refsync("--log-level", "loud", "--log-format", "json", "sync")
    assert result.exit_code == 2
    (event,) = json_lines(result.stderr)
    assert event["error"].startswith("Invalid value for '--log-level'")


@pytest.mark.parametrize("log_format", [[], ["--log-format", "auto"], ["--log-format", "console"]])
def test_without_log_format_json_usage_errors_are_clicks_text(log_format: list[str]) -> None:
    result = refsync(*log_format, "sync", "--bogus")
    assert result.exit_code == 2
    assert result.stderr == ("Usage: refsync sync [OPTIONS]\n"
                             "Try 'refsync sync --help' for help.\n\n"
                             "Error: No such option '--bogus'.\n")


def test_help_and_version_are_unchanged_with_log_format_json() -> None:
    for args in (["--help"], ["sync", "--help"]):
        plain, logged = refsync(*args), refsync("--log-format", "json", *args)
        assert logged.exit_code == 0 and logged.stdout == plain.stdout
        assert logged.stdout.startswith("Usage: refsync")
    version = refsync("--log-format", "json", "--version")
    assert version.exit_code == 0 and version.stdout.startswith("refsync, version ")


def test_a_group_given_no_command_is_one_json_event() -> None:
    """Click (8.2 on) answers a group given no command with its help on standard error and
    exit code 2: under JSON logging that is one event naming the missing command."""
    group = refsync("--log-format", "json", "state")
    if group.exit_code == 0:  # click before 8.2: the help, on standard output, is no error
        assert group.stdout.startswith("Usage: refsync state") and group.stderr == ""
        return
    assert group.exit_code == 2 and group.stdout == ""
    (event,) = json_lines(group.stderr)
    assert event["event"] == "command failed" and event["command"] == "refsync state"
    assert event["error"] == "missing command: `refsync state --help` lists them"


def test_refsync_given_no_command_names_it_as_a_group_does() -> None:
    """``refsync --log-format json`` alone: click says "Missing command."; the event says what
    a group given no command says."""
    given = refsync("--log-format", "json")
    assert given.exit_code == 2 and given.stdout == ""
    (event,) = json_lines(given.stderr)
    assert event["event"] == "command failed" and event["command"] == "refsync"
    assert event["error"] == "missing command: `refsync --help` lists them"


@pytest.mark.parametrize(("args", "error", "exit_code"), [
    (["retry"], "name quarantine ids (see `refsync errors`) or pass --all", 2),
    (["mapping", "preview", "--mapping", "builtin:partnerstack-leads", "--record", "notjson"],
     "--record: not valid JSON: Expecting value (column 1)", 2),
    (["sandbox", "--seed", "/nonexistent/seed.json", "--salesforce-port", "1",
      "--hubspot-port", "2", "--partnerstack-port", "3"],
     "cannot read sandbox seed file /nonexistent/seed.json", 1),
    (["demo", "--workdir", "/proc/refsync-demo"],
     "cannot use /proc/refsync-demo as the demo's work directory", 2),
])
def test_a_command_failing_before_it_loads_a_config_writes_json(
    args: list[str], error: str, exit_code: int
) -> None:
    result = refsync("--log-format", "json", *args)
    assert result.exit_code == exit_code, result.output
    (event,) = json_lines(result.stderr)
    assert event["event"] == "command failed" and event["error"].startswith(error), event


def test_the_console_script_writes_a_usage_error_as_json() -> None:
    done = subprocess.run([sys.executable, "-m", "refsync", "--log-format", "json", "sync",
                           "--bogus"], capture_output=True, text=True, check=False, timeout=60)
    assert done.returncode == 2 and done.stdout == ""
    (event,) = json_lines(done.stderr)
    assert event["event"] == "command failed"
    assert event["error"] == "No such option '--bogus'."


@pytest.mark.parametrize("log_format", [[], ["--log-format", "json"]])
def test_an_option_of_refsync_written_after_the_command_is_told_where_it_goes(
    log_format: list[str],
) -> None:
    result = refsync(*log_format, "sync", "--log-level", "debug")
    assert result.exit_code == 2
    told = ("No such option '--log-level' after the command: it is an option of refsync "
            "itself, written before the command (`refsync --log-level ... sync`).")
    if log_format:
        (event,) = json_lines(result.stderr)
        assert event["error"] == told and event["command"] == "refsync sync"
    else:
        assert result.stderr.endswith(f"Error: {told}\n")
        assert result.stderr.startswith("Usage: refsync sync [OPTIONS]")
