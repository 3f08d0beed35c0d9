"""Every line the daemon logs about a run in progress carries the run's id, so that it can be
matched with ``refsync runs``: lines of the lease's heartbeat (its own thread), of a stopping
daemon, and of a tick that failed unexpectedly."""

from __future__ import annotations

import threading
from datetime import timedelta
from pathlib import Path

import pytest

from refsync.daemon import Daemon
from refsync.daemon.leases import SYNC_LEASE
from refsync.sandbox.runner import RunningSandbox
from refsync.state import StateStore
from refsync.sync.engine import SyncEngine
from tests.daemon.daemon_helpers import (
    SCHEDULE,
    TICK,
    WriteConfig,
    build_daemon,
    json_log_lines,
    tick_waiting_for_its_second_page,
)


def _slow_run(sandbox: RunningSandbox, write_config: WriteConfig, tmp_path: Path,
              extra: str = "") -> tuple[Daemon, StateStore, threading.Thread]:
    """A daemon whose tick is waiting for its second page of PartnerStack leads (4 s)."""
    path = write_config(f"sqlite:///{tmp_path / 'state.db'}", SCHEDULE + extra,
                        settings={"partnerstack": {"page_size": 20}})
    return tick_waiting_for_its_second_page(sandbox, path)


def _run_id(store: StateStore) -> str:
    (run,) = store.list_runs()
    return str(run["id"])


def test_the_heartbeats_lease_lost_line_carries_the_run_id(
    sandbox: RunningSandbox, write_config: WriteConfig, tmp_path: Path
) -> None:
    with json_log_lines() as lines:
        _, store, worker = _slow_run(sandbox, write_config, tmp_path)
        # another process takes the lease: the heartbeat's next renewal finds it lost
        assert store.acquire_lease(SYNC_LEASE, "intruder", timedelta(minutes=1),
                                   force=True) is not None
        worker.join(timeout=30)
        logged = lines()
    (lost,) = [line for line in logged if line["event"] == "lease lost; stopping the run"]
    assert lost["run_id"] == _run_id(store)
    assert store.list_runs()[0]["status"] == "interrupted"
    store.close()


def test_a_stopping_daemons_lines_about_its_run_carry_the_run_id(
    sandbox: RunningSandbox, write_config: WriteConfig, tmp_path: Path
) -> None:
    with json_log_lines() as lines:
        daemon, store, worker = _slow_run(sandbox, write_config, tmp_path,
                                          "  shutdown_timeout: 1s\n")
        assert daemon.stop() == 1
        logged = lines()
    run_id = _run_id(store)
    for event in ("waiting for the current page to commit", "run did not stop in time",
                  "unfinished run marked abandoned"):
        (line,) = [line for line in logged if line["event"].startswith(event)]
        assert line["run_id"] == run_id, line
    worker.join(timeout=30)
    store.close()


def test_a_tick_failed_unexpectedly_line_carries_the_run_id_and_the_run_counts_as_failed(
    sandbox: RunningSandbox, write_config: WriteConfig, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*_: object, **__: object) -> str:
        raise RuntimeError("boom")

    monkeypatch.setattr(SyncEngine, "_push_all", broken)
    daemon, store = build_daemon(write_config(f"sqlite:///{tmp_path / 'state.db'}", SCHEDULE))
    with json_log_lines() as lines:
        daemon._run_tick(daemon.jobs["often"], TICK)  # as the scheduler calls it
        (said,) = [line for line in lines() if line["event"] == "tick failed unexpectedly"]
    (run,) = store.list_runs()
    assert run["status"] == "failed" and "RuntimeError: boom" in run["error"]
    assert said["run_id"] == run["id"] and "RuntimeError: boom" in said["exception"]
    assert daemon.metrics.runs.labels(job="often", status="failed")._value.get() == 1
    store.close()
