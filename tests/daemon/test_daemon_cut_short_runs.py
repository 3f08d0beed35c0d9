"""Runs cut short, in-process (SQLite and PostgreSQL): a run outlasting the shutdown timeout is
marked abandoned, and a tick whose run was interrupted or abandoned is run again within its
grace, by the next lease holder or by a daemon starting again."""

from __future__ import annotations

import signal
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy.exc import OperationalError

from refsync.daemon.leases import SYNC_LEASE
from refsync.sandbox.faults import FaultRule
from refsync.sandbox.runner import RunningSandbox
from refsync.state import StateStore
from tests.daemon.daemon_helpers import (
    SCHEDULE,
    TICK,
    WriteConfig,
    assert_each_referral_once,
    build_daemon,
    json_log_lines,
    run_left_by_a_dead_daemon,
    tick_waiting_for_its_second_page,
    wait_for,
)

TICK_TIME = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)


def _holding(store: StateStore, job: str, tick: datetime) -> list[dict[str, Any]]:
    """The runs of ``job`` holding ``tick`` (one at most), looked for among the latest."""
    return [r for r in store.list_runs(50, job=job) if r["scheduled_for"] == tick]


def test_a_run_outlasting_the_shutdown_timeout_is_marked_abandoned(
    sandbox: RunningSandbox, write_config: WriteConfig, state_url: str
) -> None:
    """The daemon exits anyway; run history must not show its run running in a dead process."""
    path = write_config(state_url, SCHEDULE + "  shutdown_timeout: 1s\n",
                        settings={"partnerstack": {"page_size": 20}})
    # the second page of PartnerStack leads takes 4 s: longer than the shutdown timeout
    daemon, store, worker = tick_waiting_for_its_second_page(sandbox, path)
    assert store.get_cursor("partnerstack", "leads") is not None
    assert daemon.stop() == 1
    (run,) = store.list_runs()
    assert run["status"] == "abandoned", run
    assert run["instance"] == daemon.identity and run["finished_at"] is not None
    assert f"{daemon.identity} exited after its shutdown timeout of 1 s before the run " \
        "stopped; the pages it committed are kept" in run["error"]
    # the run never finished, yet it says what its committed first page did
    assert run["counts"]["read"] == 20 and run["counts"]["created"] == 20, run["counts"]
    assert run["counts"]["streams"]["partnerstack.leads"]["read"] == 20
    worker.join(timeout=30)
    assert not worker.is_alive()
    store.close()


def test_an_unreachable_store_at_the_shutdown_timeout_is_logged(
    sandbox: RunningSandbox, write_config: WriteConfig, state_url: str,
    monkeypatch: pytest.MonkeyPatch
) -> None:
    daemon, store = build_daemon(write_config(state_url, SCHEDULE))

    def unreachable(*_: object, **__: object) -> int:
        raise OperationalError("UPDATE run", {}, Exception("connection refused"))

    monkeypatch.setattr(store, "abandon_runs", unreachable)
    daemon.shutdown_timeout = 0.1
    daemon._idle.clear()  # a run that does not stop
    with json_log_lines() as lines:
        assert daemon.stop() == 1
        (said,) = [line for line in lines() if "could not mark" in line["event"]]
    assert said["level"] == "error" and "connection refused" in said["error"]
    store.close()


def test_a_tick_whose_run_was_interrupted_is_run_by_the_next_lease_holder(
    sandbox: RunningSandbox, write_config: WriteConfig, state_url: str
) -> None:
    """Daemon A is stopped mid-run (SIGTERM); daemon B fired the same tick and gets the lease
    within the tick's grace: it runs the tick, continuing from what A committed."""
    path = write_config(state_url, SCHEDULE,
                        settings={"partnerstack": {"backoff_seconds": 30, "max_attempts": 5}})
    sandbox.emulators["partnerstack"].faults.add([FaultRule(path="leads", status=503)])
    first, store = build_daemon(path)
    second, other_store = build_daemon(path)
    second.identity = "second-daemon"
    reports: list[Any] = []
    worker = threading.Thread(
        target=lambda: reports.append(first.run_tick(first.jobs["often"], TICK)))
    worker.start()
    time.sleep(1.5)  # inside the first wait between retries
    first.stopping.set()
    worker.join(timeout=20)
    (stopped,) = reports
    assert stopped.status == "interrupted"
    sandbox.emulators["partnerstack"].faults.clear()

    again = second.run_tick(second.jobs["often"], TICK + timedelta(seconds=5))

    assert again is not None and again.status in ("succeeded", "partial"), again
    assert second.metrics.skipped.labels(job="often", reason="already_run")._value.get() == 0
    runs = store.list_runs(job="often")
    assert [(r["id"], r["instance"], r["status"], r["scheduled_for"]) for r in runs] == [
        (again.run_id, "second-daemon", again.status, TICK_TIME),
        (stopped.run_id, first.identity, "interrupted", None),
    ]
    assert runs[1]["counts"]["tick"] == TICK_TIME.isoformat()
    assert runs[1]["counts"]["rerun_by"] == again.run_id
    assert "the daemon is shutting down" in runs[1]["error"]
    assert_each_referral_once(sandbox, store.link_counts())
    store.close()
    other_store.close()


def test_a_tick_whose_daemon_died_mid_run_is_run_by_the_daemon_taking_over(
    sandbox: RunningSandbox, write_config: WriteConfig, state_url: str
) -> None:
    daemon, store = build_daemon(write_config(state_url, SCHEDULE))
    _, dead = run_left_by_a_dead_daemon(store, scheduled_for=TICK_TIME)

    report = daemon.run_tick(daemon.jobs["often"], TICK + timedelta(seconds=5))

    assert report is not None and report.status in ("succeeded", "partial"), report
    left = store.get_run(dead)
    assert left is not None and left["status"] == "abandoned"
    assert "dead-daemon stopped renewing its lease" in left["error"]
    assert left["scheduled_for"] is None
    assert left["counts"] == {"tick": TICK_TIME.isoformat(), "rerun_by": report.run_id}
    (latest,) = _holding(store, "often", TICK_TIME)
    assert latest["id"] == report.run_id and latest["instance"] == daemon.identity
    store.close()


RESTARTING = """
schedules:
  - name: cut
    every: 4s
  - name: done
    every: 4s
  - name: never
    every: 4s
daemon:
  http_port: 0
  lease_ttl: 3s
"""


@pytest.mark.parametrize("ended", ["interrupted", "abandoned", "killed"])
def test_a_daemon_starting_within_the_grace_of_a_cut_short_tick_runs_it_again(
    sandbox: RunningSandbox, write_config: WriteConfig, state_url: str, ended: str
) -> None:
    """Only the tick whose run was cut short runs at start: not one that ran to its end, and
    not one that has no run (a tick before the start is the schedule's, as always)."""
    daemon, store = build_daemon(write_config(state_url, RESTARTING))
    cut = daemon.jobs["cut"]
    # start just after a tick, well within its 2 s grace
    tick = cut.tick(datetime.now(UTC)) + cut.period
    time.sleep(max((tick - datetime.now(UTC)).total_seconds(), 0) + 0.05)
    assert cut.tick(datetime.now(UTC)) == tick
    previous = store.start_run(trigger="schedule", instance="stopped-daemon", job="cut",
                               scheduled_for=tick)
    if ended == "abandoned":
        store.abandon_runs("stopped-daemon", reason="stopped-daemon exited")
    elif ended == "killed":
        # killed mid-run: its run is left running and its lease runs out
        past = datetime.now(UTC) - timedelta(minutes=10)
        assert store.acquire_lease(SYNC_LEASE, "stopped-daemon", timedelta(seconds=3), now=past)
    else:
        store.finish_run(previous, status="interrupted", counts={}, error="stopped")
    done = store.start_run(trigger="schedule", instance="stopped-daemon", job="done",
                           scheduled_for=tick)
    store.finish_run(done, status="succeeded", counts={})

    daemon.start()
    try:
        def rerun_finished() -> bool:
            runs = _holding(store, "cut", tick)
            return bool(runs) and runs[0]["id"] != previous and runs[0]["status"] != "running"

        wait_for(rerun_finished, 60, "the cut-short tick to run again")
    finally:
        daemon.stop()
    (rerun,) = _holding(store, "cut", tick)
    assert rerun["instance"] == daemon.identity and rerun["trigger"] == "schedule"
    assert rerun["status"] in ("succeeded", "partial"), rerun
    left = store.get_run(previous)
    assert left is not None and left["counts"]["rerun_by"] == rerun["id"]
    assert left["status"] == ("abandoned" if ended == "killed" else ended)
    assert [r["id"] for r in _holding(store, "done", tick)] == [done]
    assert _holding(store, "never", tick) == []
    assert daemon.metrics.missed.labels(job="cut")._value.get() == 0
    store.close()


def test_a_signal_after_the_daemon_has_stopped_does_not_change_its_exit(
    sandbox: RunningSandbox, write_config: WriteConfig, state_url: str,
    monkeypatch: pytest.MonkeyPatch
) -> None:
    """A second SIGTERM while a stopped daemon exits (systemd sends one on its own timeout) is
    not "exit now with 143": the stop's own exit code stands."""
    daemon, store = build_daemon(write_config(state_url, SCHEDULE))
    exits: list[int] = []
    monkeypatch.setattr("refsync.daemon.service.os._exit", exits.append)
    daemon._on_signal(signal.SIGTERM, None)
    assert daemon.stop() == 0
    daemon._on_signal(signal.SIGTERM, None)
    assert exits == []
    store.close()
