"""Prometheus metrics of a running daemon.

Counters and the duration histogram are fed by the daemon as runs end; queue sizes (outbox
backlog, open quarantine) are read from the state store at scrape time, so they are right even
when another daemon did the work. Every metric is described in the README's deployment section.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Iterator
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from refsync import __version__
from refsync.connectors.usage import ApiCallCounter, TokenBucket
from refsync.state import StateStore
from refsync.sync.engine import RunReport

__all__ = ["COMPLETED", "CONTENT_TYPE", "OUTBOUND_COUNTS", "RUN_STATUSES", "SKIP_REASONS",
           "DaemonMetrics"]

disable_created_metrics()  # no *_created series: they double the output and nothing reads them

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

OUTBOUND_COUNTS = {"written": "written", "deferred": "deferred",
                   "write_quarantined": "quarantined"}
"""Stream counts that describe writes to a system, and the outcome each is exported as; every
other count describes reads from it."""

RUN_STATUSES = ("succeeded", "partial", "interrupted", "failed")
"""How a run can end."""

SKIP_REASONS = ("lease_held", "already_run", "still_running")
"""Why a daemon may not run a tick (``refsync_runs_skipped_total``'s ``reason``)."""

COMPLETED = frozenset({"succeeded", "partial"})
"""Run statuses that can count as a success for ``refsync_last_success_timestamp_seconds``: a
``partial`` run counts only if every stream went through (records quarantined or deferred),
not one whose stream stopped (a system down, an allowance spent)."""

_DURATION_BUCKETS = (0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)


class DaemonMetrics:
    """The daemon's metrics, in a registry of their own.

    Args:
        store: read at scrape time for the outbox backlog and open quarantine.
        api_calls: the counter every connector of this daemon records its calls in.
        instance: this daemon's name (exported in ``refsync_daemon_info``).
        systems: the configured systems: the outbox backlog and open quarantine of each are
            exported, at 0 when it has none.
    """

    def __init__(self, store: StateStore, api_calls: ApiCallCounter, instance: str,
                 systems: Iterable[str] = ()) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.runs = Counter("refsync_runs", "Runs finished by this daemon, by job and status.",
                            ["job", "status"], registry=self.registry)
        self.records = Counter(
            "refsync_records", "Records handled, by system, stream, direction and outcome.",
            ["system", "stream", "direction", "outcome"], registry=self.registry)
        self.duration = Histogram("refsync_run_duration_seconds", "How long runs took, by job.",
                                  ["job"], buckets=_DURATION_BUCKETS, registry=self.registry)
        self.last_success = Gauge(
            "refsync_last_success_timestamp_seconds",
            "When a run of the job last went through (succeeded, or partial with every "
            "stream through: only some records quarantined or deferred); Unix time.",
            ["job"], registry=self.registry)
        self.skipped = Counter(
            "refsync_runs_skipped", "Ticks not run by this daemon, by job and reason "
            "(lease_held: another daemon was syncing; already_run: another daemon ran the "
            "tick; still_running: the previous run of the job had not finished).",
            ["job", "reason"], registry=self.registry)
        self.missed = Counter(
            "refsync_runs_missed", "Ticks that could not start within their misfire grace.",
            ["job"], registry=self.registry)
        self.lease_takeovers = Counter(
            "refsync_lease_takeovers", "Sync leases taken over from a daemon that stopped "
            "renewing them.", registry=self.registry)
        self.running = Gauge("refsync_run_in_progress", "1 while this daemon is running a job.",
                             ["job"], registry=self.registry)
        info = Gauge("refsync_daemon_info", "This daemon: its instance name and version.",
                     ["instance", "version"], registry=self.registry)
        info.labels(instance=instance, version=__version__).set(1)
        self._budgets = _BudgetCollector()
        self.registry.register(_ApiCallCollector(api_calls))
        self.registry.register(self._budgets)
        self.registry.register(_StoreCollector(store, systems))

    def declare_jobs(self, jobs: Iterable[str]) -> None:
        """Export every job's tick counters at zero from the start: runs by status, missed
        ticks and skipped ticks by reason. An alert on ``increase(...)`` then sees a daemon's
        first failure, missed or skipped tick (a series that first appears at 1 shows no
        increase)."""
        for job in jobs:
            for status in RUN_STATUSES:
                self.runs.labels(job=job, status=status)
            self.missed.labels(job=job)
            for reason in SKIP_REASONS:
                self.skipped.labels(job=job, reason=reason)

    def observe_run(self, job: str, report: RunReport) -> None:
        """Count one finished run: its status, records by stream and duration."""
        self.runs.labels(job=job, status=report.status).inc()
        self.duration.labels(job=job).observe(report.duration_s)
        if report.status in COMPLETED and not report.stopped_streams:
            self.last_success.labels(job=job).set(time.time())
        for label, counts in report.counts.get("streams", {}).items():
            system, _, stream = label.partition(".")
            for name, value in counts.items():
                outbound = OUTBOUND_COUNTS.get(name)
                self.records.labels(system=system, stream=stream,
                                    direction="in" if outbound is None else "out",
                                    outcome=outbound or name).inc(value)

    def observe_budgets(self, buckets: Iterable[TokenBucket]) -> None:
        """Remember what each system last said about its daily API allowance."""
        self._budgets.update(buckets)

    def render(self) -> bytes:
        """The metrics in Prometheus' text format."""
        return generate_latest(self.registry)


class _ApiCallCollector(Collector):
    def __init__(self, api_calls: ApiCallCounter) -> None:
        self._api_calls = api_calls

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily("refsync_api_calls", "API calls made, by system and "
                                     "outcome (ok, client_error, server_error, timeout...).",
                                     labels=["system", "outcome"])
        for (system, outcome), value in sorted(self._api_calls.snapshot().items()):
            family.add_metric([system, outcome], value)
        yield family


class _BudgetCollector(Collector):
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._budgets: dict[str, tuple[int, int]] = {}

    def update(self, buckets: Iterable[TokenBucket]) -> None:
        with self._lock:
            for bucket in buckets:
                if bucket.daily is not None:
                    self._budgets[bucket.system] = (bucket.daily.remaining, bucket.daily.limit)

    def collect(self) -> Iterator[Metric]:
        remaining = GaugeMetricFamily(
            "refsync_api_budget_remaining",
            "Calls left of the system's daily (or rolling 24 h) API allowance, as it last said.",
            labels=["system"])
        limit = GaugeMetricFamily("refsync_api_budget_limit",
                                  "The system's daily (or rolling 24 h) API allowance.",
                                  labels=["system"])
        with self._lock:
            for system, (left, total) in sorted(self._budgets.items()):
                remaining.add_metric([system], left)
                limit.add_metric([system], total)
        yield remaining
        yield limit


class _StoreCollector(Collector):
    """The outbox backlog and open quarantine by system, read at scrape time.

    Every configured system is exported, and so is every system the store has reported since
    the daemon started: a system with nothing waiting reads 0 instead of vanishing, so an
    alert sees its queue empty and a graph does not break off.
    """

    def __init__(self, store: StateStore, systems: Iterable[str] = ()) -> None:
        self._store = store
        self._systems = set(systems)

    def collect(self) -> Iterator[Metric]:
        backlog: dict[str, Any]
        try:
            backlog = self._store.backlog()
            up = 1
        except Exception:  # a scrape must answer even when the database is down
            backlog, up = {"outbox": {}, "quarantine": {}}, 0
        if up:
            self._systems.update(backlog["outbox"], backlog["quarantine"])
        outbox = GaugeMetricFamily("refsync_outbox_backlog",
                                   "Writes waiting in the outbox, by target system.",
                                   labels=["system"])
        quarantine = GaugeMetricFamily("refsync_quarantine_open",
                                       "Records in quarantine awaiting a fix, by system.",
                                       labels=["system"])
        if up:  # an unreachable store says nothing about the queues: no made-up zeros
            for system in sorted(self._systems):
                outbox.add_metric([system], backlog["outbox"].get(system, 0))
                quarantine.add_metric([system], backlog["quarantine"].get(system, 0))
        reachable = GaugeMetricFamily("refsync_state_store_up",
                                      "1 when the state database answered this scrape.")
        reachable.add_metric([], up)
        yield outbox
        yield quarantine
        yield reachable
