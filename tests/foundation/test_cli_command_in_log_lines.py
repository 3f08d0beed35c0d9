"""Every log line a command writes carries ``command``, the command as typed (the value its
failure events give): the engine's own lines, other threads' (the daemon's), nested commands'.
It ends with the command: commands run one after another in one process do not share it."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from refsync.cli import cli
from refsync.logging import configure_logging, get_logger, log_context, process_log_context
from refsync.sandbox.config import sandbox_config
from refsync.sandbox.runner import RunningSandbox, start_sandbox
from refsync.state import StateStore


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningSandbox]:
    with start_sandbox(seed="demo", ports={"salesforce": 0, "hubspot": 0, "partnerstack": 0},
                       workdir=tmp_path_factory.mktemp("tls")) as running:
        yield running


def write_config(sandbox: RunningSandbox, tmp_path: Path, **top: Any) -> Path:
    """A config for the sandbox, its state database in ``tmp_path``, with ``top`` keys."""
    path = tmp_path / "refsync.yaml"
    path.write_text(sandbox_config(sandbox.urls, sandbox.ca_bundle,
                                   f"sqlite:///{tmp_path / 'state.db'}",
                                   comment="command in log lines", top=top))
    return path


def json_lines(text: str) -> list[dict[str, Any]]:
    """Every line of ``text``, each parsed (every line must parse)."""
    return [json.loads(line) for line in text.splitlines()]


def failing_sync(sandbox: RunningSandbox, tmp_path: Path,
                 monkeypatch: pytest.MonkeyPatch) -> Result:
    """``refsync --log-format json sync`` with a HubSpot token the sandbox refuses."""
    monkeypatch.setenv("SANDBOX_HUBSPOT_TOKEN", "pat-revoked")
    path = write_config(sandbox, tmp_path)
    result = CliRunner().invoke(cli, ["--log-format", "json", "sync", "-c", str(path)],
                                prog_name="refsync")
    assert result.exit_code == 1, result.output
    return result


def test_every_line_of_a_failed_sync_carries_the_command(
    sandbox: RunningSandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lines = json_lines(failing_sync(sandbox, tmp_path, monkeypatch).stderr)
    assert [line["command"] for line in lines] == ["refsync sync"] * len(lines), lines
    failed = [line for line in lines if line["event"] in ("run failed", "command failed")]
    assert [line["event"] for line in failed] == ["run failed", "command failed"], lines
    assert failed[0]["run_id"] == failed[1]["run_id"]  # the engine's line, the command's word


def test_the_command_ends_with_it(
    sandbox: RunningSandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    failing_sync(sandbox, tmp_path, monkeypatch)
    migrate = StateStore.migrate

    def migrate_saying_so(store: StateStore) -> list[str]:
        get_logger("refsync.state").info("migrating")
        return migrate(store)

    monkeypatch.setattr(StateStore, "migrate", migrate_saying_so)
    nested = CliRunner().invoke(cli, ["--log-format", "json", "state", "migrate",
                                      "-c", str(tmp_path / "refsync.yaml")], prog_name="refsync")
    assert nested.exit_code == 0, nested.output
    (said,) = json_lines(nested.stderr)
    assert said["event"] == "migrating" and said["command"] == "refsync state migrate"
    stream = io.StringIO()
    configure_logging(fmt="json", stream=stream)
    get_logger("refsync.test").info("after the commands")
    (after,) = json_lines(stream.getvalue())
    assert "command" not in after


def test_a_process_wide_value_reaches_every_thread_until_its_block_ends() -> None:
    stream = io.StringIO()
    configure_logging(fmt="json", stream=stream)
    log = get_logger("refsync.test")

    def from_a_thread(event: str) -> None:
        thread = threading.Thread(target=log.info, args=(event,))
        thread.start()
        thread.join()

    with process_log_context(command="refsync run"):
        from_a_thread("other thread")
        with process_log_context(command="refsync run --inner"):
            log.info("inner")
        with log_context(command="bound in context"):
            log.info("context wins")
        log.info("logger wins", command="bound on the line")
        log.info("outer again")
    log.info("after")
    said = {line["event"]: line.get("command") for line in json_lines(stream.getvalue())}
    assert said == {"other thread": "refsync run", "inner": "refsync run --inner",
                    "context wins": "bound in context", "logger wins": "bound on the line",
                    "outer again": "refsync run", "after": None}


def _wait_for(log: Path, event: str, process: subprocess.Popen[bytes], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if f'"event": "{event}"' in log.read_text():
            return
        if process.poll() is not None:
            break
        time.sleep(0.2)
    raise AssertionError(f"no {event!r} line:\n{log.read_text()}")


def test_every_line_of_the_daemon_carries_the_command(
    sandbox: RunningSandbox, tmp_path: Path
) -> None:
    """``refsync run`` with JSON log lines from its config: the lines of its scheduler, its
    lease's heartbeat and its shutdown carry ``command`` as the main thread's do."""
    path = write_config(sandbox, tmp_path, logging={"format": "json"},
                        schedules=[{"name": "often", "every": "1s"}],
                        daemon={"http_port": 0, "lease_ttl": "3s"})
    log = tmp_path / "daemon.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "refsync", "run", "-c", str(path)],
            stdout=subprocess.DEVNULL, stderr=output,
            env={**os.environ, "PYTHONUNBUFFERED": "1"})
        try:
            _wait_for(log, "run finished", process, 60)
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=30) == 0, log.read_text()
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    lines = json_lines(log.read_text())
    events = {line["event"] for line in lines}
    assert {"daemon started", "run started", "run finished", "daemon stopped"} <= events, events
    assert [line["command"] for line in lines] == ["refsync run"] * len(lines), lines
