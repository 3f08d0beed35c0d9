"""Fault soak: sync through a flaky sandbox until steady, then account for every referral.

:func:`run_soak` seeds the sandbox like the crash harness, makes every emulator answer a share
of its API calls with a fault, and syncs in this process until a run has nothing left to do:

* ``429`` with ``Retry-After`` (the connectors wait as asked, through an injected sleep that
  only records the wait, so the soak runs at full speed);
* ``5xx`` (503 and 500), retried with backoff;
* slow answers (a delay before the emulator answers);
* token expiry: ``401`` on the Salesforce and HubSpot data APIs, so the connectors sign in again
  (HubSpot through OAuth here, since a private-app token cannot be renewed);
* partial batch failures: single records of a Salesforce Collections upsert or a HubSpot batch
  upsert refused with a validation error while the rest of the batch is written.

Writes deferred after their retries are spent wait for their backoff; the soak moves the
engine's clock forward (an injected clock) instead of waiting. At the end every referral must
be in every CRM exactly once or sit in quarantine with its reason, none missing, none pending
in the outbox, none duplicated. With ``recover``, the faults are then cleared, the quarantine
replayed and the audit repeated: everything must be synced. The report names every reason a
soak failed, a sync that never settled (and why its last run ended) included.
"""

from __future__ import annotations

import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from refsync.config import load_config
from refsync.connectors.base import ConnectorContext
from refsync.sandbox.core import Emulator
from refsync.sandbox.faults import FaultInjector, FaultRule
from refsync.sandbox.runner import RunningSandbox
from refsync.state import StateStore
from refsync.sync.engine import RunReport, SyncEngine
from refsync.sync.push import MAX_BACKOFF
from refsync.sync.wiring import build_bindings, build_engine
from refsync.testing.audit import AuditReport, audit_sync, remote_records
from refsync.testing.chaos import sync_work, verdict_line
from refsync.testing.scenario import (
    SANDBOX_SECRETS,
    scenario_config,
    scenario_sandbox,
    scenario_seed,
)

__all__ = ["SoakOptions", "SoakReport", "fault_rules", "run_soak"]

#: the data API of each emulator (sign-in endpoints are left alone)
_DATA_API = {"salesforce": r"^/services/data/", "hubspot": r"^/crm/", "partnerstack": r"^/api/v2/"}
_RENEWABLE = ("salesforce", "hubspot")


@dataclass
class SoakOptions:
    """What :func:`run_soak` injects and how long it keeps syncing.

    Attributes:
        seed: seeds the data and the fault injectors.
        referrals: PartnerStack leads to seed.
        rate_429: share of API calls answered 429 with ``Retry-After``.
        retry_after: the ``Retry-After`` seconds sent with each 429.
        rate_5xx: share answered 503 or 500.
        rate_slow: share answered after ``slow_ms`` milliseconds.
        slow_ms: delay of a slow answer.
        rate_401: share of Salesforce and HubSpot calls answered 401 (expired token).
        rate_record: share of records in a CRM batch write refused on their own.
        crm_batch_size: records per CRM write call (smaller: more calls to fault).
        max_runs: syncs allowed to reach a run with nothing to do.
        recover: afterwards clear the faults, replay the quarantine and audit again.
        state_url: the state store (an empty database); a SQLite file in ``workdir`` if None.
        workdir: where the config and state go; a temporary directory if None.
        say: receives one line per step.
    """

    seed: int = 1
    referrals: int = 1000
    rate_429: float = 0.05
    retry_after: int = 1
    rate_5xx: float = 0.05
    rate_slow: float = 0.02
    slow_ms: int = 200
    rate_401: float = 0.02
    rate_record: float = 0.01
    crm_batch_size: int | None = None
    max_runs: int = 12
    recover: bool = True
    state_url: str | None = None
    workdir: Path | None = None
    say: Callable[[str], None] = lambda _line: None


@dataclass
class SoakReport:
    """What the soak injected and what became of every referral."""

    options: SoakOptions
    runs: list[RunReport] = field(default_factory=list)
    injected: dict[str, dict[str, int]] = field(default_factory=dict)
    waits: list[float] = field(default_factory=list)
    audit: AuditReport | None = None
    recovery_runs: list[RunReport] = field(default_factory=list)
    recovered: AuditReport | None = None
    seconds: float = 0.0

    @property
    def steady(self) -> bool:
        """True when the last faulty run had nothing left to do."""
        return _settled(self.runs)

    @property
    def problems(self) -> list[str]:
        """Everything that went wrong; empty when no referral was lost or duplicated."""
        found = [] if self.audit is None else list(self.audit.problems)
        found.extend(self._soak_problems())
        if self.recovered is not None:
            found.extend(f"after recovery: {p}" for p in self.recovered.problems)
        found.extend(self._recovery_problems())
        return found

    def _soak_problems(self) -> list[str]:
        """What went wrong beyond the first audit's findings (printed by no audit)."""
        if self.steady:
            return []
        return [_unsettled(self.runs, self.options.max_runs)]

    def _recovery_problems(self) -> list[str]:
        """What went wrong with the recovery beyond the second audit's findings."""
        if self.recovered is None:
            return []
        found = []
        if not _settled(self.recovery_runs):
            found.append("after recovery: "
                         + _unsettled(self.recovery_runs, self.options.max_runs))
        open_quarantine = sum(self.recovered.quarantine_open.values())
        if open_quarantine:
            found.append(f"after recovery: {open_quarantine} records still quarantined")
        return found

    @property
    def ok(self) -> bool:
        """True when the soak found nothing wrong."""
        return not self.problems

    def lines(self) -> list[str]:
        """A readable report: every problem is on a ``PROBLEM:`` line, the verdict last."""
        options = self.options
        out = [f"seed {options.seed}: {options.referrals} referrals; fault rates 429 "
               f"{options.rate_429}, 5xx {options.rate_5xx}, slow {options.rate_slow} "
               f"({options.slow_ms} ms), 401 {options.rate_401}, record {options.rate_record}"]
        total = 0
        for system, kinds in sorted(self.injected.items()):
            total += sum(kinds.values())
            out.append(f"injected in {system}: " + (", ".join(
                f"{kind} {n}" for kind, n in sorted(kinds.items())) or "nothing"))
        out.append(f"injected in all: {total}; retry waits asked for: {len(self.waits)} "
                   f"({sum(self.waits):.1f} s, recorded, not slept)")
        out.append("runs until steady: " + ", ".join(r.status for r in self.runs))
        out.extend(_run_errors(self.runs))
        if self.audit is not None:
            out.extend(self.audit.lines())
        out.extend(f"PROBLEM: {problem}" for problem in self._soak_problems())
        if self.recovered is not None:
            out.append("after clearing the faults and replaying the quarantine: " + ", ".join(
                r.status for r in self.recovery_runs))
            out.extend(_run_errors(self.recovery_runs))
            out.extend(self.recovered.lines())
        out.extend(f"PROBLEM: {problem}" for problem in self._recovery_problems())
        out.append(verdict_line(len(self.problems), self.seconds, options.seed))
        return out


def _settled(runs: list[RunReport]) -> bool:
    """True when the last of ``runs`` succeeded with nothing left to do."""
    return bool(runs) and runs[-1].status == "succeeded" and not sync_work(runs[-1].counts)


def _unsettled(runs: list[RunReport], allowed: int) -> str:
    """Why ``runs`` reached no steady state: how many there were and how the last ended."""
    if not runs:
        return f"no steady state within {allowed} runs (no run was made)"
    last = runs[-1]
    ended = (f"{last.status}: {last.error}" if last.error else
             f"{last.status}, {sync_work(last.counts)} records of work done")
    return f"no steady state within {allowed} runs (the last one {ended})"


def _run_errors(runs: list[RunReport]) -> list[str]:
    """One line per distinct error that ended a run, with how many runs it ended."""
    errors = Counter(run.error for run in runs if run.error)
    return [f"  {n} run{'s' if n > 1 else ''} ended with: {error}"
            for error, n in errors.items()]


def fault_rules(system: str, emulator: Emulator, options: SoakOptions) -> list[FaultRule]:
    """The fault rules one emulator gets, at the rates ``options`` gives."""
    path = _DATA_API[system]
    rules: list[FaultRule] = []
    if system in _RENEWABLE and options.rate_401:
        rules.append(FaultRule(path=path, status=401, probability=options.rate_401,
                               preset="token_expired"))
    if options.rate_429:
        rules.append(FaultRule(path=path, status=429, probability=options.rate_429,
                               headers={"Retry-After": str(options.retry_after)},
                               preset="rate_limited"))
    if options.rate_5xx:
        half = options.rate_5xx / 2
        rules.append(FaultRule(path=path, status=503, probability=half, preset="server_error"))
        # the second rule only sees calls the first let through
        rules.append(FaultRule(path=path, status=500, probability=min(1.0, half / (1 - half)),
                               preset="server_error"))
    if options.rate_slow:
        rules.append(FaultRule(path=path, delay_ms=options.slow_ms,
                               probability=options.rate_slow, preset="slow"))
    partial = emulator.all_fault_presets().get("partial_batch_failure")
    if options.rate_record and partial:
        rules.extend(rule.model_copy(update={"match_record": "@",
                                             "probability": options.rate_record,
                                             "preset": "record_refused"})
                     for rule in partial)
    return rules


class _ShiftedClock:
    """The wall clock plus an offset the soak moves forward instead of waiting for backoffs."""

    def __init__(self) -> None:
        self.offset = timedelta(0)

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset


@contextmanager
def _workdir(path: Path | None) -> Iterator[Path]:
    if path is not None:
        path.mkdir(parents=True, exist_ok=True)
        yield path.resolve()
        return
    with tempfile.TemporaryDirectory(prefix="refsync-soak-") as temporary:
        yield Path(temporary)


def _until_steady(engine: SyncEngine, store: StateStore, clock: _ShiftedClock, runs: int,
                  say: Callable[[str], None]) -> list[RunReport]:
    reports = []
    for _ in range(runs):
        report = engine.run(trigger="soak")
        reports.append(report)
        say(f"run {len(reports)}: {report.status}, work {sync_work(report.counts)}"
            + (f" ({report.error})" if report.error else ""))
        if report.status == "succeeded" and not sync_work(report.counts):
            break
        if store.counts()["outbox_pending"]:
            clock.offset += MAX_BACKOFF  # deferred writes become due at once
    return reports


def _install(sandbox: RunningSandbox, options: SoakOptions) -> None:
    for number, (system, emulator) in enumerate(sorted(sandbox.emulators.items())):
        emulator.faults = FaultInjector(seed=options.seed * 10 + number)
        emulator.faults.add(fault_rules(system, emulator, options))


def run_soak(options: SoakOptions) -> SoakReport:
    """Sync through injected faults until steady; audit; optionally recover and audit again."""
    started = time.monotonic()
    report = SoakReport(options)
    seed_data = scenario_seed(options.seed, options.referrals)
    with _workdir(options.workdir) as workdir, scenario_sandbox(seed_data, workdir) as sandbox:
        config = workdir / "refsync.yaml"
        state_url = options.state_url or f"sqlite:///{workdir / 'state.db'}"
        config.write_text(scenario_config(sandbox, state_url, instance="soak",
                                          backoff_seconds=0.5, hubspot_oauth=True,
                                          crm_batch_size=options.crm_batch_size), "utf-8")
        loaded = load_config(config, environ={**SANDBOX_SECRETS})
        untouched = {b.system: len(remote_records(sandbox.emulators[b.system], b.object))
                     for b in build_bindings(loaded) if b.role != "prm" and b.writes}
        _install(sandbox, options)
        clock = _ShiftedClock()

        def context(system: str) -> ConnectorContext:
            return ConnectorContext(system=system, sleep=report.waits.append)

        with StateStore(state_url) as store:
            engine = build_engine(loaded, store, context_factory=context, clock=clock)
            report.runs = _until_steady(engine, store, clock, options.max_runs, options.say)
            report.injected = {system: dict(emulator.faults.snapshot()["injected"])
                               for system, emulator in sorted(sandbox.emulators.items())}
            report.audit = audit_sync(store, engine.bindings, sandbox.emulators,
                                      untouched_before=untouched)
            if options.recover:
                for emulator in sandbox.emulators.values():
                    emulator.faults.clear()
                report.recovery_runs = [engine.retry()]
                report.recovery_runs += _until_steady(engine, store, clock, options.max_runs,
                                                      options.say)
                report.recovered = audit_sync(store, engine.bindings, sandbox.emulators,
                                              untouched_before=untouched)
    report.seconds = time.monotonic() - started
    return report

