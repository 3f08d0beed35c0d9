"""A state store outage under a running daemon: PostgreSQL is taken down and brought back.

A tick while the store is down is one line, not a traceback. A run the outage ends cannot be
recorded then: it is counted ``failed`` at once, and the daemon records it ``failed`` (with
why, keeping what its committed pages counted) as soon as the store answers again, whether
at its periodic check, at the next tick or as it stops.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import pytest

from refsync.daemon import Daemon
from refsync.daemon.leases import SYNC_LEASE
from refsync.sandbox.runner import RunningSandbox
from refsync.state import StateStore
from refsync.sync.engine import RunReport
from tests.daemon.daemon_helpers import (
    SLOW_SECOND_PAGE,
    WriteConfig,
    build_daemon,
    json_log_lines,
    wait_for,
)
from tests.postgres_server import PostgresServer, PostgresUnavailable, start_postgres

pytestmark = pytest.mark.postgres

YEARLY = """
schedules:
  - name: yearly
    cron: "0 0 1 1 *"
daemon:
  http_port: 0
  lease_ttl: 3s
"""
"""A job whose ticks never come during a test (so a started daemon runs only what the test
runs), a quick lease and a free HTTP port."""
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
"""A moment within the grace of the job's 2026-01-01 tick."""

"""PartnerStack's second page of leads takes 4 s: time to take the store down mid-run."""

SKIPPED = "state store unreachable: the tick is skipped"


@pytest.fixture(scope="module")
def outage_server() -> Iterator[PostgresServer]:
    """A PostgreSQL server of this module's own, which its tests take down and bring back."""
    try:
        server = start_postgres()
    except PostgresUnavailable as exc:
        if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
            pytest.fail(f"PostgreSQL is required in CI: {exc}")
        pytest.skip(f"PostgreSQL unavailable: {exc}")
    yield server
    server.stop()


@contextmanager
def store_down(server: PostgresServer) -> Iterator[None]:
    """The state database is down inside the block, and back (same data) after it."""
    server.pause()
    try:
        yield
    finally:
        server.resume()


def _daemon(sandbox: RunningSandbox, write_config: WriteConfig, server: PostgresServer,
            extra: str = "") -> tuple[Daemon, StateStore]:
    path = write_config(server.create_database(), YEARLY + extra,
                        settings={"partnerstack": {"page_size": 20}})
    sandbox.emulators["partnerstack"].faults.add([SLOW_SECOND_PAGE])
    return build_daemon(path)


def _tick_cut_short_by_an_outage(daemon: Daemon, sandbox: RunningSandbox,
                                 server: PostgresServer) -> RunReport:
    """Run a tick and take the store down while it waits for its second page; the store is
    still down on return."""
    reports: list[RunReport | None] = []
    worker = threading.Thread(
        target=lambda: reports.append(daemon.run_tick(daemon.jobs["yearly"], NOW)))
    worker.start()
    faults = sandbox.emulators["partnerstack"].faults
    wait_for(lambda: faults.snapshot()["injected"].get("delay"), 30,
             "the run to wait for its second page")
    wait_for(lambda: daemon.store.get_cursor("partnerstack", "leads") is not None, 3,
             "the first page to commit")
    server.pause()
    worker.join(timeout=60)
    assert not worker.is_alive()
    (report,) = reports
    assert report is not None
    return report


def _failed(daemon: Daemon) -> float:
    return float(daemon.metrics.runs.labels(job="yearly", status="failed")._value.get())


def _assert_recorded_failed(store: StateStore, report: RunReport) -> None:
    """The run is recorded failed, saying why, with what its committed first page counted."""
    run = store.get_run(report.run_id)
    assert run is not None and run["status"] == "failed", run
    assert run["error"].startswith("the state store was unreachable when the run ended: "), run
    assert "the pages it committed are kept" in run["error"]
    assert run["finished_at"] is not None
    assert run["counts"].get("read") == 20, run["counts"]
    assert run["counts"]["streams"]["partnerstack.leads"]["read"] == 20


def test_a_run_cut_short_by_an_outage_is_counted_failed_and_recorded_once_the_store_is_back(
    sandbox: RunningSandbox, write_config: WriteConfig, outage_server: PostgresServer
) -> None:
    daemon, store = _daemon(sandbox, write_config, outage_server)
    daemon.start()
    try:
        with json_log_lines() as lines:
            try:
                report = _tick_cut_short_by_an_outage(daemon, sandbox, outage_server)
                assert report.status == "failed"
                assert report.error is not None and report.error.startswith(
                    "the state store was unreachable when the run ended: ")
                # counted at once, as a failed run is
                assert _failed(daemon) == 1
                ready, checks = daemon.readiness()
                assert not ready and checks["state_store"].startswith("unreachable: ")
                # in the driver's words, not the name of an exception class
                assert "StateError" not in checks["state_store"], checks
                assert len(checks["state_store"]) > len("unreachable: ") + 15, checks
                assert store.unrecorded_runs(daemon.identity)[0].id == report.run_id
            finally:
                outage_server.resume()
            # the periodic check records it soon after the store answers again
            wait_for(lambda: not store.unrecorded_runs(daemon.identity), 20,
                     "the run to be recorded")
            logged = lines()
        _assert_recorded_failed(store, report)
        assert daemon.readiness()[0], daemon.readiness()
    finally:
        assert daemon.stop() == 0
    assert _failed(daemon) == 1  # recording it later does not count it twice

    # every line of the run carries its id, the heartbeat's included
    events = [line["event"] for line in logged]
    first = events.index("run started")
    ended = [line for line in logged if line["event"].startswith("run failed")]
    assert len(ended) == 1 and ended[0]["level"] == "error"
    assert "recorded failed when it answers again" in ended[0]["event"]
    during = logged[first:logged.index(ended[0]) + 1]
    assert all(line.get("run_id") == report.run_id for line in during), \
        [line for line in during if line.get("run_id") != report.run_id]
    assert "could not renew the lease" in events
    assert "exception" not in ended[0] and len(json.dumps(ended[0])) < 800
    assert "tick failed unexpectedly" not in events
    (recorded,) = [line for line in logged
                   if line["event"] == "run recorded failed now that the state store answers "
                                       "again"]
    assert recorded["run_id"] == report.run_id and recorded["job"] == "yearly"
    store.close()


def test_a_run_the_store_could_not_record_is_recorded_at_the_next_tick(
    sandbox: RunningSandbox, write_config: WriteConfig, outage_server: PostgresServer
) -> None:
    # a single failed run makes the job fail readiness
    daemon, store = _daemon(sandbox, write_config, outage_server,
                            "  unready_after_failures: 1\n")
    try:
        report = _tick_cut_short_by_an_outage(daemon, sandbox, outage_server)
        # while the store is down, a tick skips in one line and the run stays remembered
        with json_log_lines() as lines:
            assert daemon.run_tick(daemon.jobs["yearly"], NOW + timedelta(days=1)) is None
            (said,) = lines()
        assert said["event"] == SKIPPED
        assert [run.id for run in store.unrecorded_runs(daemon.identity)] == [report.run_id]
    finally:
        outage_server.resume()
    sandbox.emulators["partnerstack"].faults.clear()
    wait_for(lambda: daemon.readiness()[1]["state_store"] == "ok", 20, "the store")
    # a run still shown running that could not be recorded counts as failed for readiness
    assert daemon.readiness()[1]["jobs"] == {"yearly": "failing"}

    with json_log_lines() as lines:
        # the tick of the next year: the one cut short holds its own
        later = daemon.run_tick(daemon.jobs["yearly"], NOW + timedelta(days=365))
        events = [line["event"] for line in lines()]
    assert events.index("run recorded failed now that the state store answers again") \
        < events.index("run started")
    _assert_recorded_failed(store, report)
    assert later is not None and later.status in ("succeeded", "partial"), later
    assert daemon.readiness()[1]["jobs"] == {"yearly": "ok"}
    daemon.stop()
    store.close()


def test_a_daemon_stopping_records_the_run_the_store_missed(
    sandbox: RunningSandbox, write_config: WriteConfig, outage_server: PostgresServer
) -> None:
    daemon, store = _daemon(sandbox, write_config, outage_server)
    try:
        report = _tick_cut_short_by_an_outage(daemon, sandbox, outage_server)
    finally:
        outage_server.resume()
    with json_log_lines() as lines:
        assert daemon.stop() == 0
        events = [line["event"] for line in lines()]
    assert "run recorded failed now that the state store answers again" in events
    _assert_recorded_failed(store, report)
    store.close()


def test_a_daemon_stopping_while_the_store_is_down_says_so_and_the_next_holder_marks_the_run(
    sandbox: RunningSandbox, write_config: WriteConfig, outage_server: PostgresServer
) -> None:
    """What the stopping daemon says happens: the daemon taking the lease over marks the run
    abandoned, and runs its tick again from what it committed."""
    daemon, store = _daemon(sandbox, write_config, outage_server)
    try:
        report = _tick_cut_short_by_an_outage(daemon, sandbox, outage_server)
        with json_log_lines() as lines:
            assert daemon.stop() == 0  # nothing was left running in this process
            (said,) = [line for line in lines() if "could not record" in line["event"]]
        assert said["level"] == "error" and said["run_id"] == report.run_id
        assert "until a daemon takes the sync lease over" in said["event"]
    finally:
        outage_server.resume()
    sandbox.emulators["partnerstack"].faults.clear()
    assert store.get_run(report.run_id)["status"] == "running"  # type: ignore[index]
    assert store.get_lease(SYNC_LEASE)["holder"] == daemon.identity  # type: ignore[index]

    second, other_store = build_daemon(daemon.loaded.path)
    second.identity = "second-daemon"
    again = second.run_tick(second.jobs["yearly"], NOW + timedelta(seconds=5))
    assert again is not None and again.status in ("succeeded", "partial"), again
    run = store.get_run(report.run_id)
    assert run is not None and run["status"] == "abandoned", run
    assert run["counts"]["rerun_by"] == again.run_id
    store.close()
    other_store.close()


def test_a_tick_while_the_store_is_down_is_one_line_without_a_traceback(
    sandbox: RunningSandbox, write_config: WriteConfig, outage_server: PostgresServer
) -> None:
    daemon, store = _daemon(sandbox, write_config, outage_server)
    with store_down(outage_server), json_log_lines() as lines:
        assert daemon.run_tick(daemon.jobs["yearly"], NOW) is None
        daemon._run_tick(daemon.jobs["yearly"], NOW)  # as the scheduler calls it
        logged = lines()
    assert [line["event"] for line in logged] == [SKIPPED, SKIPPED]
    for line in logged:
        assert line["level"] == "error" and line["job"] == "yearly"
        assert "exception" not in line
        assert "Connection refused" in line["error"], line
        # the driver's words only: no statement, no SQLAlchemy background link
        assert "\n" not in line["error"] and "sqlalche.me" not in line["error"]
    assert _failed(daemon) == 0  # no run was started
    daemon.stop()
    store.close()


def test_an_unexpected_error_in_a_tick_keeps_its_traceback(
    sandbox: RunningSandbox, write_config: WriteConfig, outage_server: PostgresServer,
    monkeypatch: pytest.MonkeyPatch
) -> None:
    daemon, store = _daemon(sandbox, write_config, outage_server)

    def broken(*_: object, **__: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(store, "acquire_lease", broken)
    with json_log_lines() as lines:
        daemon._run_tick(daemon.jobs["yearly"], NOW)
        (said,) = lines()
    assert said["event"] == "tick failed unexpectedly" and said["level"] == "error"
    assert "RuntimeError: boom" in said["exception"]
    assert "run_id" not in said  # no run was started
    daemon.stop()
    store.close()
