"""Under JSON log lines (``--log-format json``, or ``logging.format: json`` in the config once it
is loaded), a command that crashes writes one ``command crashed`` event, its traceback masked as
the plain traceback is, and a click error raised inside a command is an event too."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner, Result

from refsync.cli import cli
from refsync.cli.common import print_traceback_redacted
from refsync.logging import configure_logging, redactor
from refsync.state import StateStore

EXAMPLE = Path(__file__).parents[2] / "config.example.yaml"
SECRET = "sk_live_crash_0123456789"
"""The PartnerStack secret key of the configuration: a crash quotes it."""
REQUIRED = {"event", "level", "timestamp", "error", "command", "exit_code"}


@pytest.fixture(autouse=True)
def _config_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    redactor.clear()
    monkeypatch.setenv("PARTNERSTACK_SECRET_KEY", SECRET)


def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, log_format: str = "auto") -> Path:
    """config.example.yaml with its state database in ``tmp_path`` and ``log_format``."""
    monkeypatch.setenv("REFSYNC_DATABASE_URL", f"sqlite:///{tmp_path / 'state.db'}")
    text = EXAMPLE.read_text()
    assert "  format: auto" in text
    path = tmp_path / "refsync.yaml"
    path.write_text(text.replace("  format: auto", f"  format: {log_format}"))
    return path


def crash_listing_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    """``refsync runs`` crashes reading the runs, its error quoting the configured secret."""

    def crash(*_: object, **__: object) -> None:
        raise RuntimeError(f"the store choked on {SECRET}\nwhile reading the runs")

    monkeypatch.setattr(StateStore, "list_runs", crash)


def json_lines(result: Result) -> list[dict[str, Any]]:
    """Every line on standard error, each parsed (every line must parse)."""
    return [json.loads(line) for line in result.stderr.splitlines()]


@pytest.mark.parametrize("asked_by", ["option", "config"])
def test_a_crash_under_json_logging_is_one_event_with_the_traceback_masked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, asked_by: str
) -> None:
    crash_listing_runs(monkeypatch)
    if asked_by == "option":
        args = ["--log-format", "json", "runs", "-c", str(config(tmp_path, monkeypatch))]
    else:
        args = ["runs", "-c", str(config(tmp_path, monkeypatch, "json"))]
    result = CliRunner().invoke(cli, args, prog_name="refsync")
    assert result.exit_code == 1, result.output
    assert SECRET not in result.stderr
    (crashed,) = [line for line in json_lines(result) if line["level"] == "error"]
    assert set(crashed) >= REQUIRED | {"traceback"}, crashed
    assert crashed["event"] == "command crashed"
    assert crashed["command"] == "refsync runs" and crashed["exit_code"] == 1
    assert crashed["error"] == "RuntimeError: the store choked on ***"
    assert crashed["traceback"].startswith("Traceback (most recent call last)")
    assert "in crash" in crashed["traceback"]
    assert crashed["traceback"].endswith(
        "RuntimeError: the store choked on ***\nwhile reading the runs\n")


def test_without_json_logging_a_crash_is_still_a_masked_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    crash_listing_runs(monkeypatch)
    monkeypatch.setattr(sys, "excepthook", sys.__excepthook__)
    result = CliRunner().invoke(cli, ["runs", "-c", str(config(tmp_path, monkeypatch))])
    assert isinstance(result.exception, RuntimeError)  # left to Python, which prints it
    assert sys.excepthook is print_traceback_redacted
    error = result.exception
    print_traceback_redacted(type(error), error, error.__traceback__)
    printed = capsys.readouterr().err
    assert printed.startswith("Traceback (most recent call last)") and SECRET not in printed
    assert printed.endswith("RuntimeError: the store choked on ***\nwhile reading the runs\n")


def test_the_masking_hook_writes_an_event_under_json_logging(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging(fmt="json", secrets=[SECRET])
    try:
        raise RuntimeError(f"refused {SECRET}")
    except RuntimeError as error:
        print_traceback_redacted(type(error), error, error.__traceback__)
    printed = capsys.readouterr().err
    (crashed,) = [json.loads(line) for line in printed.splitlines()]
    assert crashed["event"] == "command crashed" and crashed["exit_code"] == 1
    assert crashed["error"] == "RuntimeError: refused ***"
    assert "Traceback (most recent call last)" in crashed["traceback"]
    assert SECRET not in printed


def refuse_listing_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    """``refsync runs`` raises click's usage error once the configuration is loaded, as a
    command's own check of its arguments does (``ctx.fail``)."""

    def refuse(*_: object, **__: object) -> None:
        click.get_current_context().fail("--job names no job of this configuration")

    monkeypatch.setattr(StateStore, "list_runs", refuse)


def test_a_click_error_in_a_command_is_an_event_when_the_config_asks_for_json(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    refuse_listing_runs(monkeypatch)
    result = CliRunner().invoke(cli, ["runs", "-c", str(config(tmp_path, monkeypatch, "json"))],
                                prog_name="refsync")
    assert result.exit_code == 2, result.output
    failed = json_lines(result)[-1]
    assert set(failed) >= REQUIRED and failed["event"] == "command failed", failed
    assert failed["command"] == "refsync runs" and failed["exit_code"] == 2
    assert failed["error"] == "--job names no job of this configuration"


def test_the_log_format_option_wins_over_the_configs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    refuse_listing_runs(monkeypatch)
    path = config(tmp_path, monkeypatch, "json")
    result = CliRunner().invoke(cli, ["--log-format", "console", "runs", "-c", str(path)],
                                prog_name="refsync")
    assert result.exit_code == 2, result.output
    assert result.stderr.splitlines()[-1] == "Error: --job names no job of this configuration"
