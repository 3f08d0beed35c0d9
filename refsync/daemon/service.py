"""``refsync run``: the long-lived daemon running the configured schedules (DESIGN section 8).

Each schedule becomes an APScheduler job (coalescing, one instance at a time, a misfire grace of
half its period). A tick of a job:

1. works out which tick it is (its fire time), so every daemon names it the same way;
2. takes the sync lease, waiting for it at most the tick's grace (another daemon may be
   syncing), and starts a heartbeat renewing it;
3. records the run with its tick; the run table takes each ``(job, tick)`` once, so a tick that
   another daemon already ran (or is running) is skipped. A tick whose run was cut short
   (``interrupted``, or ``abandoned`` by a daemon that died or gave up) is run again by the
   lease holder: every page was committed with its cursor, so the new run continues it;
4. runs the sync with the lease, which fences every checkpoint, then gives the lease back.

SIGTERM or SIGINT stops new ticks and asks the current run to stop after the page it is on; the
daemon exits when the run has committed, or after ``daemon.shutdown_timeout`` regardless,
marking the run ``abandoned`` first (a second signal exits at once, marking it ``abandoned`` too
if the state store answers within SECOND_SIGNAL_GRACE_S). Nothing depends on a clean
exit: every page is committed with its cursor, and a daemon killed outright leaves a lease that
expires and is taken over. A daemon starting within the grace of a tick whose run was cut short
runs that tick again at once.

While the state store is unreachable, each tick is skipped with one line saying so. A run whose
end cannot be written then is counted ``failed`` at once; the daemon remembers it and records it
``failed`` as soon as the store answers again (at the next tick, at a check every third of the
lease TTL, or when it stops).
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import FrameType
from typing import Any

from apscheduler.events import EVENT_JOB_MAX_INSTANCES, EVENT_JOB_MISSED, JobEvent
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.date import DateTrigger

from refsync.config import LoadedConfig
from refsync.connectors.base import ConnectorContext
from refsync.connectors.usage import ApiCallCounter, RateLimiters
from refsync.daemon.http import HttpServer, build_http_app
from refsync.daemon.leases import (
    SYNC_LEASE,
    Heartbeat,
    abandon_previous_holders_runs,
    wait_for_lease,
)
from refsync.daemon.metrics import COMPLETED, DaemonMetrics
from refsync.daemon.schedule import CalendarDaysTrigger, ScheduledJob, scheduled_job
from refsync.errors import TickAlreadyRunError
from refsync.logging import get_logger, redact_text
from refsync.state import LeaseToken, StateStore
from refsync.state.outage import driver_words, error_text, unreachable_reason
from refsync.state.store import StartedRun
from refsync.sync.engine import RunReport
from refsync.sync.wiring import build_engine

__all__ = ["Daemon", "daemon_identity"]

_log = get_logger("refsync.daemon")

# APScheduler narrates every job start and end at INFO; refsync logs its own lines per run.
logging.getLogger("apscheduler").setLevel(logging.WARNING)

SECOND_SIGNAL_GRACE_S = 2.0
"""How long a second signal waits for the state store to mark the run left behind abandoned."""

_RERUN = "#rerun"
"""Suffix of the scheduler job that runs a cut-short tick again when the daemon starts."""


class _LoggedByRefsync(logging.Filter):
    """Drops APScheduler's warnings about a missed tick or a job still running: refsync logs
    (and counts) the same events in its own words (:meth:`Daemon._on_scheduler_event`).
    Every other line, its errors included, passes."""

    DUPLICATES = ("Run time of job ", "Execution of job ")

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.levelno == logging.WARNING and isinstance(record.msg, str)
                    and record.msg.startswith(self.DUPLICATES))


_duplicates = _LoggedByRefsync()
# the scheduler reports a job still running; the executor ("default") a missed run time
for _name in ("apscheduler.scheduler", "apscheduler.executors.default"):
    logging.getLogger(_name).addFilter(_duplicates)


def daemon_identity(instance: str | None) -> str:
    """This process's name in run history and on leases: unique even when replicas share a
    configured ``instance`` (``NAME@host:pid``, or ``host:pid`` when none is configured)."""
    process = f"{socket.gethostname()}:{os.getpid()}"
    return f"{instance}@{process}" if instance else process


@dataclass
class Daemon:
    """Runs the configured schedules until stopped.

    Args:
        loaded: the loaded configuration.
        store: the state store (SQLite: the daemon lock must already be held).
        http_host: address of the HTTP endpoint (None: the configured one).
        http_port: its port (None: the configured one; 0 picks a free port).
        engine_options: extra SyncEngine options (tests pass a clock).
    """

    loaded: LoadedConfig
    store: StateStore
    http_host: str | None = None
    http_port: int | None = None
    engine_options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        settings = self.loaded.config.daemon
        self.identity = daemon_identity(self.loaded.config.instance)
        self.lease_ttl = settings.lease_duration
        self.shutdown_timeout = settings.shutdown_seconds
        self.stopping = threading.Event()
        self.api_calls = ApiCallCounter()
        self.metrics = DaemonMetrics(self.store, self.api_calls, self.identity,
                                     systems=self.loaded.config.systems)
        now = datetime.now(UTC)
        self.jobs = {s.name: scheduled_job(s, now) for s in self.loaded.config.schedules}
        # One worker: a daemon runs one job at a time (they share the lease and its holder
        # name); a job due while another runs waits its turn within its misfire grace.
        self.scheduler = BackgroundScheduler(
            executors={"default": ThreadPoolExecutor(1)},
            job_defaults={"coalesce": True, "max_instances": 1},
            timezone=UTC,
        )
        self.http: HttpServer | None = None
        self.record_interval = self.lease_ttl.total_seconds() / 3
        """How often runs whose end could not be written are tried again (the heartbeat's
        pace)."""
        self._recording = threading.Lock()
        self._running: str | None = None  # the job being run (one at a time, see above)
        self._idle = threading.Event()
        self._idle.set()
        self._signals = 0
        self._stopped = threading.Event()  # stop() has finished: the process is exiting

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> None:
        """Start the HTTP endpoint and the scheduler (returns at once)."""
        settings = self.loaded.config.daemon
        self.metrics.declare_jobs(self.jobs)
        self._seed_last_success()
        app = build_http_app(self.readiness, self.metrics.render)
        self.http = HttpServer(app, self.http_host or settings.http_host,
                               settings.http_port if self.http_port is None else self.http_port)
        self.http.start()
        for job in self.jobs.values():
            self.scheduler.add_job(self._run_tick, job.trigger, args=[job], id=job.name,
                                   name=job.name, misfire_grace_time=job.grace_seconds)
        self.scheduler.add_listener(self._on_scheduler_event,
                                    EVENT_JOB_MISSED | EVENT_JOB_MAX_INSTANCES)
        self._rerun_cut_short_ticks(datetime.now(UTC))
        self.scheduler.start()
        threading.Thread(target=self._keep_recording, name="refsync-records",
                         daemon=True).start()
        _log.info("daemon started", instance=self.identity, backend=self.store.backend,
                  http=f"http://{self.http.host}:{self.http.port}",
                  jobs={name: _describe(job) for name, job in self.jobs.items()})

    def serve_forever(self) -> int:
        """Start, then block until a signal stops the daemon; return the exit code."""
        self.install_signal_handlers()
        self.start()
        self.stopping.wait()
        code = self.stop()
        if code != 0:
            # a run is stuck (e.g. in a remote call): don't wait for its thread at exit
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
        return code

    def stop(self) -> int:
        """Stop new ticks, wait for the running ones (up to the shutdown timeout); exit code."""
        self.stopping.set()
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)
        running = self._running
        run = self._run_in_progress()
        if running is not None:
            _log.info("waiting for the current page to commit", job=running,
                      timeout_s=self.shutdown_timeout, **run)
        clean = self._idle.wait(self.shutdown_timeout)
        self.record_unrecorded_runs()
        if not clean:
            _log.error("run did not stop in time; exiting anyway (its committed pages are "
                       "kept, and its lease expires for another daemon)", job=running, **run)
            self._abandon_own_runs(f"exited after its shutdown timeout of "
                                   f"{self.shutdown_timeout:g} s")
        for left in self.store.unrecorded_runs(self.identity):
            _log.error("could not record the run failed: the state store is still unreachable; "
                       "it shows running until a daemon takes the sync lease over and marks it "
                       "abandoned", run_id=left.id, job=left.job)
        if self.http is not None:
            self.http.stop()
        _log.info("daemon stopped", instance=self.identity, clean=clean)
        self._stopped.set()
        return 0 if clean else 1

    def _abandon_own_runs(self, exited: str) -> None:
        """Mark the run this daemon is leaving behind ``abandoned``, so that run history does
        not show it running in a process that is gone (and its tick may be run again);
        ``exited`` says how the daemon left it (``exited after its shutdown timeout…``)."""
        reason = (f"{self.identity} {exited} before the run stopped; the pages it committed "
                  "are kept, and the next run continues from them")
        run = self._run_in_progress()  # in memory: named on the line even if the store is down
        try:
            abandoned = self.store.abandon_runs(self.identity, reason=reason)
        except Exception as exc:  # exiting anyway: the next lease take-over marks it instead
            _log.error("could not mark the unfinished run abandoned; the daemon that takes the "
                       "lease over next will", error=error_text(exc))
            return
        _log.warning("unfinished run marked abandoned", runs=abandoned, **run)

    def _abandon_in_passing(self, exited: str) -> None:
        """Mark the run left behind ``abandoned`` on the way out, waiting at most
        SECOND_SIGNAL_GRACE_S for the state store (the run's own thread may hold a write
        transaction): past that, the next lease take-over marks it instead."""
        marking = threading.Thread(target=self._abandon_own_runs, args=(exited,),
                                   name="refsync-abandon", daemon=True)
        marking.start()
        marking.join(SECOND_SIGNAL_GRACE_S)

    def install_signal_handlers(self) -> None:
        """SIGTERM/SIGINT: stop gracefully; the second one exits at once."""
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)

    def _on_signal(self, signum: int, _: FrameType | None) -> None:
        if self._stopped.is_set():
            return  # already stopped: exiting with the stop's own code
        self._signals += 1
        if self._signals > 1:
            name = signal.Signals(signum).name
            _log.warning("second signal: exiting now", signal=name)
            if self._running is not None:
                self._abandon_in_passing(f"exited at once on a second signal ({name})")
            os._exit(128 + signum)
        _log.info("stopping: no new runs; the current one stops after its page",
                  signal=signal.Signals(signum).name, timeout_s=self.shutdown_timeout)
        self.stopping.set()

    # -- one tick ------------------------------------------------------------------------------

    def run_tick(self, job: ScheduledJob, now: datetime | None = None) -> RunReport | None:
        """Run one tick of ``job`` (what the scheduler calls); None when it was not run here.

        While the state store is unreachable the tick is skipped, said in one line. A run that
        the outage ends is reported ``failed`` (and recorded so once the store answers again).
        """
        tick = job.tick(now or datetime.now(UTC))
        if self.stopping.is_set():
            return None
        log = _log.bind(job=job.name, tick=tick.isoformat())
        self.record_unrecorded_runs()
        try:
            return self._tick_with_lease(job, tick, log)
        except Exception as exc:
            why = unreachable_reason(exc)
            if why is None:
                raise
            log.error("state store unreachable: the tick is skipped", error=why)
            return None

    def _tick_with_lease(self, job: ScheduledJob, tick: datetime, log: Any) -> RunReport | None:
        """Take the sync lease (waiting up to the tick's grace) and run the tick with it."""
        token = wait_for_lease(self.store, self.identity, self.lease_ttl, patience=job.grace,
                               stopping=self.stopping)
        if token is None:
            if not self.stopping.is_set():
                holder = (self.store.get_lease(SYNC_LEASE) or {}).get("holder")
                log.info("tick skipped: another daemon is syncing", holder=holder)
                self.metrics.skipped.labels(job=job.name, reason="lease_held").inc()
            return None
        if token.taken_from:
            abandoned = abandon_previous_holders_runs(self.store, token)
            log.warning("took the sync lease over from a daemon that stopped renewing it",
                        previous=token.taken_from, abandoned_runs=abandoned)
            self.metrics.lease_takeovers.inc()
        self._running = job.name
        self._idle.clear()
        self.metrics.running.labels(job=job.name).set(1)
        heartbeat = Heartbeat(self.store, token, self.lease_ttl)
        try:
            with heartbeat:
                report = self._sync(job, tick, token, lambda: heartbeat.lost)
        finally:
            try:
                self._give_lease_back(heartbeat.token)
            finally:
                self.metrics.running.labels(job=job.name).set(0)
                self._running = None
                self._idle.set()
        if report is None:
            log.info("tick skipped: another daemon already ran it")
            self.metrics.skipped.labels(job=job.name, reason="already_run").inc()
        return report

    def _wait(self, seconds: float) -> None:
        """Sleep through a retry or pacing wait, but wake at once when the daemon is stopping:
        the remaining attempts then fail fast and the run ends ``interrupted`` in time."""
        self.stopping.wait(seconds)

    def _give_lease_back(self, token: LeaseToken) -> None:
        """Release the sync lease; while the state store is unreachable it cannot be, and it
        expires instead (after ``lease_ttl``), for whichever daemon comes next."""
        try:
            self.store.release_lease(token)
        except Exception as exc:
            if unreachable_reason(exc) is None:
                raise

    def _run_tick(self, job: ScheduledJob, now: datetime | None = None) -> None:
        before = self.store.latest_run(self.identity)
        try:
            self.run_tick(job, now)
        except Exception:  # keep the daemon alive; the run row says failed
            run = self._started_since(before)
            _log.exception("tick failed unexpectedly", job=job.name,
                           **({"run_id": run.id} if run is not None else {}))

    def _started_since(self, before: StartedRun | None) -> StartedRun | None:
        """The run this daemon started after ``before`` (its latest run then), if any."""
        run = self.store.latest_run(self.identity)
        if run is None or (before is not None and run.id == before.id):
            return None
        return run

    def _run_in_progress(self) -> dict[str, str]:
        """``run_id`` of the run this daemon has going on, to bind on a line; empty if none."""
        run = self.store.latest_run(self.identity)
        return {"run_id": run.id} if run is not None and run.ended_at is None else {}

    # -- runs whose end could not be written -----------------------------------------------------

    def record_unrecorded_runs(self) -> list[StartedRun]:
        """Record as ``failed`` this daemon's runs whose end could not be written (the state
        store was unreachable as they ended), if the store answers now; return those recorded.

        Their error says why; they keep the counts their committed pages recorded.
        """
        with self._recording:
            if not self.store.unrecorded_runs(self.identity):
                return []
            try:
                recorded = self.store.fail_unrecorded_runs(self.identity)
            except Exception as exc:
                if unreachable_reason(exc) is None:  # not an outage: say it all
                    _log.exception("could not record the end of a run")
                return []  # still unreachable: tried again later
        for run in recorded:
            _log.warning("run recorded failed now that the state store answers again",
                         run_id=run.id, job=run.job, error=run.unrecorded)
        return recorded

    def _keep_recording(self) -> None:
        """Until the daemon stops, try every :attr:`record_interval` to record the runs whose
        end could not be written, so that run history says so soon after the store is back."""
        while not self.stopping.wait(self.record_interval):
            self.record_unrecorded_runs()

    def _rerun_cut_short_ticks(self, now: datetime) -> None:
        """At start, run again each job's latest tick if it is still within its grace and its
        run was cut short (``interrupted`` or ``abandoned``) or is still ``running``; a tick
        without a run is left to the schedule, as a tick before the start is.

        A run still ``running`` may be a killed daemon's (a restart after ``kill -9`` or a
        crash) or a live daemon's: the tick then waits for the lease like any tick. If the
        lease has expired it is taken over, the dead daemon's run is marked abandoned and the
        tick runs again; if a live daemon finishes the tick, it is skipped as already run.

        The run goes on the scheduler's one worker, like any tick, and is counted as missed if
        it cannot start within what is left of the grace.
        """
        for job in self.jobs.values():
            tick = job.tick(now)
            left = tick + job.grace - now
            if left <= timedelta(0):
                continue
            latest = self.store.list_runs(1, job=job.name, scheduled_for=tick)
            if not latest or latest[0]["status"] not in (*StateStore.TICK_RERUN_STATUSES,
                                                          "running"):
                continue
            _log.info("running again a tick whose run was cut short", job=job.name,
                      tick=tick.isoformat(), previous_run=latest[0]["id"],
                      previous_status=latest[0]["status"])
            self.scheduler.add_job(self._run_tick, DateTrigger(now), args=[job, tick],
                                   id=job.name + _RERUN, name=job.name,
                                   misfire_grace_time=max(1, int(left.total_seconds())))

    def _sync(self, job: ScheduledJob, tick: datetime, token: LeaseToken,
              lease_lost: Callable[[], bool]) -> RunReport | None:
        run_limiters = RateLimiters(lambda: datetime.now(UTC), self._wait)

        def context(system: str) -> ConnectorContext:
            # fresh pacing each run (a spent daily allowance is looked at again), one call count
            return ConnectorContext(system=system, api_calls=self.api_calls,
                                    rate_limiters=run_limiters, sleep=self._wait)

        engine = build_engine(self.loaded, self.store, context_factory=context,
                              instance=self.identity,
                              should_stop=lambda: _why_stop(self.stopping.is_set(), lease_lost),
                              **self.engine_options)
        before = self.store.latest_run(self.identity)
        started = time.monotonic()
        try:
            report = engine.run(trigger="schedule", systems=job.config.systems,
                                full=job.config.full, job=job.name, lease=token,
                                scheduled_for=tick)
        except TickAlreadyRunError:
            return None
        except Exception as exc:
            run = self._started_since(before)
            if run is None:
                raise  # no run was recorded: the tick says why
            return self._ended_by(exc, job, tick, run, time.monotonic() - started)
        finally:
            self.metrics.observe_budgets(run_limiters.buckets())
        self.metrics.observe_run(job.name, report)
        return report

    def _ended_by(self, exc: Exception, job: ScheduledJob, tick: datetime, run: StartedRun,
                  duration: float) -> RunReport:
        """Count a run that ``exc`` ended as ``failed``; return its report when ``exc`` is a
        state store outage (said in one line), raise ``exc`` again otherwise."""
        why = unreachable_reason(exc)
        error = run.unrecorded or (f"the state store was unreachable: {why}" if why is not None
                                   else error_text(exc))
        report = RunReport(run.id, "failed", {}, error, round(duration, 3))
        self.metrics.observe_run(job.name, report)
        if why is None:
            raise exc
        log = _log.bind(job=job.name, tick=tick.isoformat(), run_id=run.id)
        if run.unrecorded is not None:
            log.error("run failed: the state store is unreachable; the run is recorded failed "
                      "when it answers again", error=why)
        else:
            log.error("run failed: the state store was unreachable", error=why)
        return report

    # -- scheduler events, readiness -------------------------------------------------------------

    def _on_scheduler_event(self, event: JobEvent) -> None:
        job = event.job_id.removesuffix(_RERUN)
        if event.code == EVENT_JOB_MISSED:
            when = getattr(event, "scheduled_run_time", None)
            _log.warning("tick missed: it could not start within its grace", job=job,
                         **({"tick": when.isoformat()} if when is not None else {}))
            self.metrics.missed.labels(job=job).inc()
        elif event.code == EVENT_JOB_MAX_INSTANCES:
            _log.info("tick skipped: the previous run of the job is still going", job=job)
            self.metrics.skipped.labels(job=job, reason="still_running").inc()

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        """Whether the daemon can do its job: store reachable, scheduler running, jobs healthy."""
        checks: dict[str, Any] = {}
        try:
            self.store.schema_revision()
            checks["state_store"] = "ok"
        except Exception as exc:  # report, don't crash the probe
            # the driver's words (never a statement), as the daemon's log line gives them
            said = driver_words(exc)
            checks["state_store"] = f"unreachable: {redact_text(said)}"
        checks["scheduler"] = "running" if self.scheduler.running and \
            not self.stopping.is_set() else "stopped"
        threshold = self.loaded.config.daemon.unready_after_failures
        failing: list[str] = []
        if checks["state_store"] == "ok":
            # a run whose end could not be written yet shows running: it failed
            unrecorded = {run.id for run in self.store.unrecorded_runs(self.identity)}
            for name in self.jobs:
                statuses = ["failed" if r["id"] in unrecorded else r["status"]
                            for r in self.store.list_runs(threshold + 5, job=name)]
                recent = [s for s in statuses if s not in ("running", "interrupted")][:threshold]
                if len(recent) == threshold and all(s == "failed" for s in recent):
                    failing.append(name)
        checks["jobs"] = {name: ("failing" if name in failing else "ok") for name in self.jobs}
        ready = checks["state_store"] == "ok" and checks["scheduler"] == "running" \
            and not failing
        return ready, checks

    def _seed_last_success(self) -> None:
        for name in self.jobs:
            for run in self.store.list_runs(50, job=name):
                if run["status"] in COMPLETED and run["finished_at"] is not None and \
                        not (run["counts"] or {}).get("stopped_streams"):
                    self.metrics.last_success.labels(job=name).set(
                        run["finished_at"].timestamp())
                    break


def _why_stop(stopping: bool, lease_lost: Callable[[], bool]) -> str | bool:
    """Why a run must stop now, or False."""
    if stopping:
        return "the daemon is shutting down (SIGTERM or Ctrl-C)"
    if lease_lost():
        return "this daemon no longer holds the sync lease (another one took over)"
    return False


def _describe(job: ScheduledJob) -> str:
    schedule = job.config
    if isinstance(job.trigger, CalendarDaysTrigger):
        what = f"every {schedule.every} at 00:00"
    else:
        what = f"every {schedule.every}" if schedule.every else f"cron '{schedule.cron}'"
    return f"{what} ({schedule.timezone})"

