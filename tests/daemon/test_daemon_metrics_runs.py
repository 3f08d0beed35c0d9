"""What a finished run adds to the daemon's metrics."""

from __future__ import annotations

from pathlib import Path
from typing import cast

import pytest

from refsync.connectors.usage import ApiCallCounter
from refsync.daemon.metrics import DaemonMetrics
from refsync.state import StateStore
from refsync.sync.engine import RunReport
from tests.daemon.daemon_helpers import SCHEDULE, WriteConfig, build_daemon


@pytest.fixture
def metrics(tmp_path: Path) -> DaemonMetrics:
    store = StateStore(f"sqlite:///{tmp_path / 'state.db'}")
    return DaemonMetrics(store, ApiCallCounter(), "test")


def _last_success(metrics: DaemonMetrics) -> float | None:
    return metrics.registry.get_sample_value("refsync_last_success_timestamp_seconds",
                                             {"job": "often"})


def test_a_partial_run_whose_stream_stopped_is_not_a_success(metrics: DaemonMetrics) -> None:
    """With the PRM down every run is partial; counting those as successes kept the
    "nothing synced for three periods" alert quiet through the whole outage."""
    down = RunReport("r1", "partial", {"streams": {}}, "partnerstack.leads: stopped",
                     stopped_streams=["partnerstack.leads"])
    metrics.observe_run("often", down)
    assert _last_success(metrics) is None
    quarantined = RunReport("r2", "partial", {"quarantined": 1, "streams": {}}, "1 record")
    metrics.observe_run("often", quarantined)
    assert _last_success(metrics) is not None


def test_a_refused_write_is_counted_as_a_write(metrics: DaemonMetrics) -> None:
    report = RunReport("r1", "partial", {"streams": {"hubspot.contacts": {
        "read": 3, "quarantined": 1, "written": 5, "write_quarantined": 2}}})
    metrics.observe_run("often", report)

    def records(direction: str, outcome: str) -> float | None:
        return metrics.registry.get_sample_value("refsync_records_total", {
            "system": "hubspot", "stream": "contacts", "direction": direction,
            "outcome": outcome})

    assert records("out", "quarantined") == 2 and records("in", "quarantined") == 1
    assert records("out", "written") == 5 and records("in", "read") == 3


def test_every_jobs_run_counters_start_at_zero(metrics: DaemonMetrics) -> None:
    """A failed-runs alert on increase() misses a series that first appears at 1."""
    metrics.declare_jobs(["often", "nightly"])
    for job in ("often", "nightly"):
        for status in ("succeeded", "partial", "interrupted", "failed"):
            assert metrics.registry.get_sample_value(
                "refsync_runs_total", {"job": job, "status": status}) == 0


def test_every_jobs_missed_and_skipped_counters_start_at_zero(metrics: DaemonMetrics) -> None:
    """The README's alerts on increase() of missed and skipped ticks must see the first one."""
    metrics.declare_jobs(["often", "nightly"])
    for job in ("often", "nightly"):
        assert metrics.registry.get_sample_value("refsync_runs_missed_total", {"job": job}) == 0
        for reason in ("lease_held", "already_run", "still_running"):
            assert metrics.registry.get_sample_value(
                "refsync_runs_skipped_total", {"job": job, "reason": reason}) == 0


class _Backlog:
    """A state store that reports the backlog it is given (what metrics read of a store)."""

    def __init__(self) -> None:
        self.outbox: dict[str, int] = {}
        self.quarantine: dict[str, int] = {}
        self.down = False

    def backlog(self) -> dict[str, dict[str, int]]:
        if self.down:
            raise ConnectionError("database unreachable")
        return {"outbox": dict(self.outbox), "quarantine": dict(self.quarantine)}


def _queues(metrics: DaemonMetrics, system: str) -> tuple[float | None, float | None]:
    return (metrics.registry.get_sample_value("refsync_outbox_backlog", {"system": system}),
            metrics.registry.get_sample_value("refsync_quarantine_open", {"system": system}))


def test_queues_read_zero_for_every_configured_system_and_when_they_empty() -> None:
    """An emptied outbox or a closed last quarantine row reads 0: a vanished series leaves a
    graph broken off and an alert on its value never resolving."""
    store = _Backlog()
    metrics = DaemonMetrics(cast(StateStore, store), ApiCallCounter(), "test",
                            systems=["partnerstack", "salesforce"])
    assert _queues(metrics, "partnerstack") == (0, 0)
    assert _queues(metrics, "salesforce") == (0, 0)
    store.outbox, store.quarantine = {"salesforce": 3, "hubspot": 2}, {"hubspot": 1}
    assert _queues(metrics, "salesforce") == (3, 0)
    assert _queues(metrics, "hubspot") == (2, 1)
    store.outbox, store.quarantine = {}, {}
    assert _queues(metrics, "salesforce") == (0, 0)
    assert _queues(metrics, "hubspot") == (0, 0)  # not configured here, but seen: still 0
    store.down = True  # an unreachable store says nothing about the queues
    assert _queues(metrics, "salesforce") == (None, None)
    assert metrics.registry.get_sample_value("refsync_state_store_up") == 0


def test_a_daemon_exports_every_configured_systems_queues_from_its_first_scrape(
    write_config: WriteConfig, state_url: str
) -> None:
    daemon, store = build_daemon(write_config(state_url, SCHEDULE))
    try:
        text = daemon.metrics.render().decode()
    finally:
        store.close()
    for system in ("partnerstack", "salesforce", "hubspot"):
        assert f'refsync_outbox_backlog{{system="{system}"}} 0.0' in text
        assert f'refsync_quarantine_open{{system="{system}"}} 0.0' in text
