"""The daemon in-process: ticks, the sync lease, metrics and readiness (SQLite and PostgreSQL)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from refsync.daemon import Daemon
from refsync.daemon.leases import SYNC_LEASE
from refsync.sandbox.runner import RunningSandbox
from tests.daemon.daemon_helpers import (
    SCHEDULE,
    TICK,
    WriteConfig,
    assert_each_referral_once,
    build_daemon,
    json_log_lines,
    run_left_by_a_dead_daemon,
)


def _metrics(daemon: Daemon) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    assert daemon.http is not None
    text = requests.get(f"http://127.0.0.1:{daemon.http.port}/metrics", timeout=5).text
    found: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return found


def test_a_tick_runs_once_however_many_daemons_fire_it(
    sandbox: RunningSandbox, write_config: WriteConfig, state_url: str
) -> None:
    path = write_config(state_url, SCHEDULE)
    first, store = build_daemon(path)
    second, other_store = build_daemon(path)
    second.identity = "second-daemon"
    job = first.jobs["often"]
    report = first.run_tick(job, TICK)
    assert report is not None and report.status in ("succeeded", "partial"), report
    assert second.run_tick(second.jobs["often"], TICK + timedelta(seconds=5)) is None
    assert second.metrics.skipped.labels(job="often", reason="already_run")._value.get() == 1
    runs = store.list_runs(job="often")
    assert [(r["scheduled_for"], r["instance"]) for r in runs] == [
        (datetime(2026, 12, 1, 10, 0, tzinfo=UTC), first.identity)]
    assert runs[0]["trigger"] == "schedule"
    # the lease was given back: the next tick may run anywhere at once
    assert store.get_lease(SYNC_LEASE)["holder"] is None
    later = second.run_tick(second.jobs["often"], TICK + timedelta(minutes=1))
    assert later is not None
    assert_each_referral_once(sandbox, store.link_counts())
    store.close()
    other_store.close()


@pytest.mark.postgres
def test_a_busy_lease_makes_the_tick_wait_then_skip(
    sandbox: RunningSandbox, write_config: WriteConfig, postgres_server: object
) -> None:
    # PostgreSQL only: on SQLite one daemon owns the file and takes the lease by force
    url = postgres_server.create_database()  # type: ignore[attr-defined]
    daemon, store = build_daemon(write_config(url, SCHEDULE))
    assert store.acquire_lease(SYNC_LEASE, "someone-else", timedelta(minutes=5)) is not None
    job = daemon.jobs["often"]
    quick = type(job)(job.config, job.trigger, job.period, timedelta(milliseconds=200))
    assert daemon.run_tick(quick, TICK) is None
    assert daemon.metrics.skipped.labels(job="often", reason="lease_held")._value.get() == 1
    assert store.list_runs() == []
    store.close()


def test_taking_over_an_expired_lease_abandons_the_dead_daemons_run(
    sandbox: RunningSandbox, write_config: WriteConfig, state_url: str
) -> None:
    daemon, store = build_daemon(write_config(state_url, SCHEDULE))
    dead, stuck = run_left_by_a_dead_daemon(store)
    report = daemon.run_tick(daemon.jobs["often"], TICK)
    assert report is not None
    assert store.get_run(stuck)["status"] == "abandoned"
    assert "dead-daemon stopped renewing its lease" in store.get_run(stuck)["error"]
    assert daemon.metrics.lease_takeovers._value.get() == 1
    # the dead daemon's late write is fenced off by the epoch
    from refsync.errors import LeaseLostError
    with pytest.raises(LeaseLostError), store.transaction(lease=dead):
        pass
    store.close()


def test_metrics_and_health_endpoints(
    sandbox: RunningSandbox, write_config: WriteConfig, state_url: str
) -> None:
    daemon, store = build_daemon(write_config(state_url, SCHEDULE))
    daemon.start()
    try:
        base = f"http://127.0.0.1:{daemon.http.port}"  # type: ignore[union-attr]
        assert requests.get(f"{base}/healthz", timeout=5).json() == {"status": "ok"}
        ready = requests.get(f"{base}/readyz", timeout=5)
        assert ready.status_code == 200, ready.text
        assert ready.json()["checks"] == {"state_store": "ok", "scheduler": "running",
                                          "jobs": {"often": "ok"}}
        report = daemon.run_tick(daemon.jobs["often"], TICK)
        assert report is not None
        metrics = _metrics(daemon)
        status = (("job", "often"), ("status", report.status))
        assert metrics["refsync_runs_total"][status] == 1
        assert metrics["refsync_run_duration_seconds_count"][(("job", "often"),)] == 1
        written = metrics["refsync_records_total"][(
            ("direction", "out"), ("outcome", "written"), ("stream", "leads"),
            ("system", "salesforce"))]
        assert written == report.counts["streams"]["salesforce.leads"]["written"] > 0
        read = metrics["refsync_records_total"][(
            ("direction", "in"), ("outcome", "read"), ("stream", "leads"),
            ("system", "partnerstack"))]
        assert read == report.counts["streams"]["partnerstack.leads"]["read"]
        calls = metrics["refsync_api_calls_total"]
        assert sum(v for k, v in calls.items() if ("system", "salesforce") in k) == \
            sandbox.emulators["salesforce"].calls.snapshot()["total"]
        assert metrics["refsync_api_budget_remaining"][(("system", "salesforce"),)] > 0
        assert metrics["refsync_api_budget_remaining"][(("system", "hubspot"),)] > 0
        backlog = store.backlog()
        for system, value in backlog["outbox"].items():
            assert metrics["refsync_outbox_backlog"][(("system", system),)] == value
        assert metrics["refsync_state_store_up"][()] == 1
        assert metrics["refsync_last_success_timestamp_seconds"][(("job", "often"),)] > 0
        assert metrics["refsync_daemon_info"][(("instance", daemon.identity),
                                               ("version", "0.1.0"))] == 1
    finally:
        daemon.stop()
        store.close()


def test_readiness_fails_after_repeated_failed_runs(
    sandbox: RunningSandbox, write_config: WriteConfig, state_url: str
) -> None:
    path = write_config(state_url, SCHEDULE + "  unready_after_failures: 2\n")
    daemon, store = build_daemon(path)
    daemon.start()
    try:
        for _ in range(2):
            run_id = store.start_run(trigger="schedule", instance="x", job="often")
            store.finish_run(run_id, status="failed", counts={}, error="boom")
        ready = requests.get(f"http://127.0.0.1:{daemon.http.port}/readyz",  # type: ignore[union-attr]
                             timeout=5)
        assert ready.status_code == 503
        assert ready.json()["checks"]["jobs"] == {"often": "failing"}
    finally:
        daemon.stop()
    ready_after_stop = daemon.readiness()
    assert ready_after_stop[0] is False and ready_after_stop[1]["scheduler"] == "stopped"
    store.close()


def test_a_tick_that_cannot_start_within_its_grace_is_logged_and_counted_as_missed(
    sandbox: RunningSandbox, write_config: WriteConfig, tmp_path: Path
) -> None:
    from apscheduler.triggers.date import DateTrigger

    daemon, store = build_daemon(write_config(f"sqlite:///{tmp_path / 'state.db'}", SCHEDULE))
    daemon.start()
    try:
        # a tick whose time passed 10 s ago, with a 1 s grace: the scheduler must skip it
        daemon.scheduler.add_job(lambda: None, DateTrigger(datetime.now(UTC)
                                                           - timedelta(seconds=10)),
                                 id="late", misfire_grace_time=1)
        deadline = datetime.now(UTC) + timedelta(seconds=10)
        while daemon.metrics.missed.labels(job="late")._value.get() == 0:
            assert datetime.now(UTC) < deadline, "the missed tick was not counted"
            time.sleep(0.05)
        assert "refsync_runs_missed_total{job=\"late\"} 1.0" in daemon.metrics.render().decode()
    finally:
        daemon.stop()
        store.close()


def test_skipped_and_missed_ticks_are_logged_once_in_refsyncs_words(
    sandbox: RunningSandbox, write_config: WriteConfig, tmp_path: Path
) -> None:
    """APScheduler's own warnings for the same events are not repeated; its errors still show."""
    import threading

    from apscheduler.triggers.date import DateTrigger
    from apscheduler.triggers.interval import IntervalTrigger

    daemon, store = build_daemon(write_config(f"sqlite:///{tmp_path / 'state.db'}", SCHEDULE))
    release = threading.Event()

    def fail() -> None:
        raise RuntimeError("boom")

    with json_log_lines() as lines:
        daemon.start()
        try:
            daemon.scheduler.pause_job("often")
            now = datetime.now(UTC)
            daemon.scheduler.add_job(lambda: None, DateTrigger(now - timedelta(seconds=10)),
                                     id="late", misfire_grace_time=1)
            daemon.scheduler.add_job(fail, DateTrigger(now), id="failing")
            # runs for 2 s while its next tick comes after 0.5 s: that one is skipped
            daemon.scheduler.add_job(lambda: release.wait(2), IntervalTrigger(seconds=0.5),
                                     id="busy", next_run_time=now)
            skipped = daemon.metrics.skipped.labels(job="busy", reason="still_running")
            deadline = time.monotonic() + 10
            while skipped._value.get() == 0 or \
                    daemon.metrics.missed.labels(job="late")._value.get() == 0:
                assert time.monotonic() < deadline, "the skipped or missed tick was not seen"
                time.sleep(0.05)
        finally:
            release.set()
            daemon.stop()
        # the failing job may get a worker only once the busy one lets go, as the daemon stops
        deadline = time.monotonic() + 10
        while not any("raised an exception" in line["event"] for line in lines()):
            assert time.monotonic() < deadline, "the failing job's error was not logged"
            time.sleep(0.05)
        logged = lines()
    events = [(line["event"], line.get("job")) for line in logged]
    assert ("tick missed: it could not start within its grace", "late") in events
    (missed,) = [line for line in logged if line["event"].startswith("tick missed")]
    assert missed["tick"] == (now - timedelta(seconds=10)).isoformat(), missed  # which tick
    assert ("tick skipped: the previous run of the job is still going", "busy") in events
    assert not [line for line in logged
                if line["event"].startswith(("Run time of job", "Execution of job"))]
    (error,) = [line for line in logged if "raised an exception" in line["event"]]
    assert error["level"] == "error" and "RuntimeError: boom" in error["exception"]
    store.close()


def test_stopping_cuts_short_the_waits_between_retries(
    sandbox: RunningSandbox, write_config: WriteConfig, tmp_path: Path
) -> None:
    """A system that keeps failing makes a call wait between attempts (here 30 s, 60 s...);
    a stopping daemon must not sleep through them past its shutdown timeout."""
    import threading

    from refsync.sandbox.faults import FaultRule

    path = write_config(f"sqlite:///{tmp_path / 'state.db'}", SCHEDULE,
                        settings={"partnerstack": {"backoff_seconds": 30, "max_attempts": 5}})
    sandbox.emulators["partnerstack"].faults.add([FaultRule(path="leads", status=503)])
    daemon, store = build_daemon(path)
    job = daemon.jobs["often"]
    reports: list[Any] = []
    worker = threading.Thread(target=lambda: reports.append(daemon.run_tick(job)))
    started = time.monotonic()
    worker.start()
    time.sleep(1.5)  # inside the first 30 s wait
    daemon.stopping.set()
    worker.join(timeout=20)
    assert not worker.is_alive(), "the run slept through its retry waits"
    assert time.monotonic() - started < 20
    (report,) = reports
    assert report.status == "interrupted"
    assert "the daemon is shutting down" in (report.error or "")
    store.close()
