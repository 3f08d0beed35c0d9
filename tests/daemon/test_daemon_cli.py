"""`refsync run` refuses bad set-ups before touching anything; manual syncs respect the lease."""

from __future__ import annotations

import json
import socket
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from refsync.cli import cli
from refsync.daemon.leases import SYNC_LEASE
from refsync.sandbox.runner import RunningSandbox
from refsync.state import StateStore
from tests.daemon.daemon_helpers import WriteConfig


def test_run_without_schedules_says_what_to_add(
    sandbox: RunningSandbox, write_config: WriteConfig, tmp_path: Path
) -> None:
    path = write_config(f"sqlite:///{tmp_path / 'state.db'}")
    result = CliRunner().invoke(cli, ["run", "-c", str(path)])
    assert result.exit_code == 2, result.output
    assert "no schedules to run" in result.output and "every: 5m" in result.output
    assert not (tmp_path / "state.db").exists()


def test_a_bad_daemon_setting_names_its_line(
    sandbox: RunningSandbox, write_config: WriteConfig, tmp_path: Path
) -> None:
    path = write_config(f"sqlite:///{tmp_path / 'state.db'}",
                        "schedules:\n  - {name: often, every: 1m}\n"
                        "daemon:\n  lease_ttl: 1s\n  shutdown_timout: 5s\n")
    result = CliRunner().invoke(cli, ["run", "-c", str(path)])
    assert result.exit_code == 2, result.output
    lines = path.read_text().splitlines()
    ttl_line = next(i for i, line in enumerate(lines, 1) if "lease_ttl" in line)
    assert f"refsync.yaml:{ttl_line}:" in result.output, result.output
    assert "lease_ttl must be at least 3s" in result.output
    assert f"refsync.yaml:{ttl_line + 1}:" in result.output
    assert "did you mean 'shutdown_timeout'" in result.output
    assert not (tmp_path / "state.db").exists()


def test_run_reports_a_busy_http_port(
    sandbox: RunningSandbox, write_config: WriteConfig, tmp_path: Path
) -> None:
    path = write_config(f"sqlite:///{tmp_path / 'state.db'}",
                        "schedules:\n  - {name: often, every: 1h}\n")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = CliRunner().invoke(cli, ["run", "-c", str(path), "--http-port", str(port)])
    assert result.exit_code == 1, result.output
    assert f"cannot listen on 127.0.0.1:{port}" in result.output
    assert "--http-port" in result.output
    # refused before the state database (or its lock) is created
    assert not (tmp_path / "state.db").exists()
    assert not (tmp_path / "state.db.lock").exists()


@pytest.mark.postgres
def test_a_manual_sync_waits_its_turn_while_a_daemon_syncs(
    sandbox: RunningSandbox, write_config: WriteConfig, postgres_server: object
) -> None:
    url = postgres_server.create_database()  # type: ignore[attr-defined]
    path = write_config(url)
    with StateStore(url) as store:
        assert store.acquire_lease(SYNC_LEASE, "daemon-7@host:42", timedelta(minutes=1))
        result = CliRunner().invoke(cli, ["sync", "-c", str(path)])
        assert result.exit_code == 1, result.output
        assert "daemon-7@host:42 is syncing this database right now" in result.output
        # its heartbeat is fresh: a process killed a moment ago looks alive for a while
        assert "if that process was killed, run this again in" in result.output
        assert store.list_runs() == []
        store.release_lease(store.acquire_lease(SYNC_LEASE, "daemon-7@host:42",
                                                timedelta(minutes=1)))  # type: ignore[arg-type]
        result = CliRunner().invoke(cli, ["sync", "-c", str(path)])
        assert result.exit_code in (0, 4), result.output
        assert store.get_lease(SYNC_LEASE)["holder"] is None  # type: ignore[index]


def _held_by_a_sync_killed_40s_ago(store: StateStore, holder: str) -> None:
    """The sync lease of ``holder``, a sync killed 40 s ago: its heartbeat stopped, and its lease
    expires in a second."""
    silent_since = datetime.now(UTC) - timedelta(seconds=40)
    assert store.acquire_lease(SYNC_LEASE, holder, timedelta(seconds=41), now=silent_since)


@pytest.mark.postgres
def test_a_manual_sync_takes_over_from_a_killed_one(
    sandbox: RunningSandbox, write_config: WriteConfig, postgres_server: object
) -> None:
    url = postgres_server.create_database()  # type: ignore[attr-defined]
    path = write_config(url)
    with StateStore(url) as store:
        _held_by_a_sync_killed_40s_ago(store, "sync@host:41")
        dead = store.start_run(trigger="manual", instance="sync@host:41")
        result = CliRunner().invoke(cli, ["sync", "-c", str(path)])
        assert result.exit_code in (0, 4), result.output
        assert "sync@host:41, which stopped renewing it; waiting 1 s" in result.output
        assert "took the sync lease over from a process that stopped renewing it" in \
            result.output
        assert store.get_run(dead)["status"] == "abandoned"  # type: ignore[index]
        (latest, _) = store.list_runs(2)
        assert latest["status"] in ("succeeded", "partial")


@pytest.mark.postgres
def test_under_json_logging_the_wait_for_a_killed_syncs_lease_is_an_event(
    sandbox: RunningSandbox, write_config: WriteConfig, postgres_server: object
) -> None:
    url = postgres_server.create_database()  # type: ignore[attr-defined]
    path = write_config(url)
    with StateStore(url) as store:
        _held_by_a_sync_killed_40s_ago(store, "sync@host:43")
        result = CliRunner().invoke(cli, ["--log-format", "json", "sync", "-c", str(path)])
        assert result.exit_code in (0, 4), result.output
        events = [json.loads(line) for line in result.stderr.splitlines()]
        (waiting,) = [e for e in events if e["event"] == "waiting for the sync lease"]
        assert "sync@host:43, which stopped renewing it; waiting 1 s" in waiting["message"]
