"""One sync cycle: pull every input stream page by page, then push every output stream.

:class:`SyncEngine` owns the loop (DESIGN section 7). Pulls run PRM streams first so that new
referrals exist before CRM changes are reconciled against them; each page commits in one
transaction together with its cursor. Pushes then drain the outbox. The run row records the
trigger, status (``succeeded``, ``partial``, ``interrupted``, ``failed``) and counts.

A plan (``refsync plan``) runs the same pulls inside one transaction that is rolled back, and
reports what the pushes would write instead of writing.
"""

from __future__ import annotations

import contextlib
import gc
import os
import socket
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from refsync.config import RefsyncConfig
from refsync.connectors.base import Page, ReadRecord
from refsync.connectors.cursor import Cursor
from refsync.domain import Lifecycle
from refsync.errors import ConnectorError, LeaseLostError, QuotaExhaustedError, RefsyncError
from refsync.logging import get_logger, log_context, redact_text
from refsync.state import LeaseToken, StateStore
from refsync.state.outage import error_text
from refsync.sync.bindings import RunCounts, StreamBinding, run_transaction
from refsync.sync.customers import CustomerIndex, load_customers
from refsync.sync.pull import FieldChange, PageProcessor
from refsync.sync.push import OutboxDrainer, PlannedWrite
from refsync.sync.reasons import RunReasons

__all__ = ["PLAN_PAGE", "PlanReport", "RunReport", "SyncEngine", "default_instance_name"]

PLAN_PAGE = 1_000
"""Pending outbox rows a plan reads at a time."""


def default_instance_name() -> str:
    """``host:pid``, the name a daemon records in run history unless configured."""
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass
class RunReport:
    """How one run ended."""

    run_id: str
    status: str
    counts: dict[str, Any]
    error: str | None = None
    duration_s: float = 0.0
    stopped_streams: list[str] = field(default_factory=list)
    """Streams that did not go through (a system down, an allowance spent): a ``partial`` run
    with none quarantined or deferred records only."""


@dataclass
class PlanReport:
    """What a sync would do: hub field changes and remote writes."""

    changes: list[FieldChange] = field(default_factory=list)
    writes: list[PlannedWrite] = field(default_factory=list)
    counts: dict[str, Any] = field(default_factory=dict)


class _PlanRollback(Exception):
    """Raised inside a plan's transaction to undo everything it did."""


@dataclass
class SyncEngine:
    """Runs sync cycles over the configured streams.

    Args:
        config: the validated configuration.
        store: the state store.
        bindings: every configured stream with its connector and mapping.
        clock: current time (aware UTC).
        instance: this process's name in run history.
        progress: called with (stream label, records so far) after each page (TTY progress).
        should_stop: asked after every page and batch; something true ends the run
            ``interrupted``, and a string says why (the run records it).
    """

    config: RefsyncConfig
    store: StateStore
    bindings: Sequence[StreamBinding]
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    instance: str = field(default_factory=default_instance_name)
    lifecycle: Lifecycle = field(default_factory=Lifecycle)
    progress: Callable[[str, int], None] | None = None
    should_stop: Callable[[], bool | str] = lambda: False

    def _inputs(self, systems: Sequence[str] | None) -> list[StreamBinding]:
        chosen = [b for b in self.bindings if b.reads and (not systems or b.system in systems)]
        return sorted(chosen, key=lambda b: 0 if b.role == "prm" else 1)

    def _customers(self) -> CustomerIndex | None:
        rules = self.config.rules
        source = rules.customers_from
        opportunities = rules.open_opportunities_from if rules.reject_open_opportunities \
            else None
        if source is None or not (rules.reject_existing_customers or opportunities):
            return None
        connector = next(b.connector for b in self.bindings if b.system == source.system)
        customer_types = rules.customer_account_types if rules.reject_existing_customers \
            else []
        return load_customers(connector, source, customer_types, opportunities)

    def _outputs(self, systems: Sequence[str] | None = None) -> list[StreamBinding]:
        return [b for b in self.bindings if b.writes and (not systems or b.system in systems)]

    def run(
        self,
        *,
        trigger: str = "manual",
        systems: Sequence[str] | None = None,
        full: bool = False,
        job: str = "sync",
        lease: LeaseToken | None = None,
        scheduled_for: datetime | None = None,
    ) -> RunReport:
        """Run one cycle and record it; never raises for remote failures (they set the status).

        ``should_stop`` is looked at after every committed page and pushed batch: a stop
        request ends the run as ``interrupted`` with everything done so far committed.

        Raises:
            TickAlreadyRunError: ``scheduled_for`` was given and that tick of ``job`` has
                already been run (by another daemon); nothing was done.
            KeyboardInterrupt: Ctrl-C, or a signal handler ending the run at once; the page
                or batch in progress is not committed, and the run is recorded
                ``interrupted`` first.
        """
        run_id = self.store.start_run(trigger=trigger, instance=self.instance, job=job,
                                      scheduled_for=scheduled_for)
        with log_context(run_id=run_id, job=job), heap_set_aside():
            return self._run(run_id, job, trigger, systems, full, lease, scheduled_for)

    def _run(
        self,
        run_id: str,
        job: str,
        trigger: str,
        systems: Sequence[str] | None,
        full: bool,
        lease: LeaseToken | None,
        scheduled_for: datetime | None,
    ) -> RunReport:
        log = get_logger("refsync.sync", run_id=run_id, job=job)
        log.info("run started", trigger=trigger, systems=list(systems or []), full=full,
                 instance=self.instance,
                 **({"tick": scheduled_for.isoformat()} if scheduled_for else {}))
        counts = RunCounts()
        reasons = RunReasons()
        stopped: list[str] = []

        def cycle() -> str:
            status = "succeeded"
            inputs = self._inputs(systems)
            try:
                customers = self._customers()
            except ConnectorError as exc:
                if exc.action == "fatal":
                    raise
                # new referrals cannot be judged against customers and open deals: partner
                # streams wait for the next run; CRM changes and pending writes still move
                waiting = [b for b in inputs if b.role == "prm"]
                inputs = [b for b in inputs if b.role != "prm"]
                customers, status = None, "partial"
                stopped.extend(b.label for b in waiting)
                reasons.add(f"existing customers could not be read ({exc.message}); "
                            f"{', '.join(b.label for b in waiting) or 'no stream'} "
                            "waits for the next run")
                log.warning("customers not read; partner streams wait", error=exc.message)
            for binding in inputs:
                if self.should_stop():
                    break
                finished = self._pull(binding, run_id, counts, reasons, full=full,
                                      lease=lease, customers=customers)
                if not finished:
                    status = "partial"
                    stopped.append(binding.label)
            return self._push_all(run_id, counts, lease, status, reasons, stopped)

        return self._recorded(run_id, counts, log, cycle, reasons=reasons, stopped=stopped)

    def _push_all(self, run_id: str, counts: RunCounts, lease: LeaseToken | None,
                  status: str, reasons: RunReasons, stopped: list[str]) -> str:
        """Drain every output stream's outbox; return the run's status so far, updated, and
        add to ``reasons`` why it is not ``succeeded`` (and to ``stopped`` the streams that
        did not go through)."""
        held_by_quota = 0  # deferred writes the allowance's reason already tells of
        for binding in self._outputs():
            if self.should_stop():
                break
            drainer = OutboxDrainer(self.store, binding, run_id, counts, self.clock, lease,
                                    should_stop=self.should_stop)
            finished = drainer.drain()
            held_by_quota += drainer.held_by_quota
            if not finished and not drainer.stopped:
                status = "partial"
                stopped.append(binding.label)
                reasons.allowance_spent(binding.system, binding.label, writing=True)
        stop = self.should_stop()
        if stop:
            why = stop if isinstance(stop, str) else "a stop was requested"
            reasons.add(f"stopped: {why}; everything committed so far stays, and the next run "
                        "resumes from there")
            return "interrupted"
        deferred, quarantined = counts.total["deferred"], counts.total["quarantined"]
        if deferred > held_by_quota:
            reasons.add(f"{deferred - held_by_quota} write(s) deferred after remote failures; "
                        "they are "
                        "retried automatically (`refsync state show` counts them)")
        if quarantined:
            reasons.add(f"{quarantined} record(s) quarantined: `refsync errors` says why, "
                        "`refsync retry` replays them")
        if status == "succeeded" and (quarantined or deferred):
            return "partial"
        return status

    def _recorded(
        self,
        run_id: str,
        counts: RunCounts,
        log: Any,
        work: Callable[[], str],
        reasons: RunReasons | None = None,
        stopped: Sequence[str] = (),
    ) -> RunReport:
        """Do a run's ``work`` (which returns its status) and record how it ended.

        A lost lease ends it ``interrupted`` and a refsync error ``failed``, both reported, not
        raised. A :class:`KeyboardInterrupt` (Ctrl-C, or a signal handler ending the run at
        once, its message saying why) ends it ``interrupted`` in the middle of a page or batch,
        which is not committed; it is recorded and logged as any run's end, then raised again.
        An unexpected exception is recorded as ``failed`` and raised again. A run that did not
        succeed records why: the error, or the ``reasons`` its work gave.
        """
        started = time.monotonic()
        reasons = reasons if reasons is not None else RunReasons()
        error = None
        interruption: KeyboardInterrupt | None = None
        try:
            status = work()
        except LeaseLostError as exc:
            status, error = "interrupted", redact_text(exc.message)
        except RefsyncError as exc:
            status, error = "failed", redact_text(exc.message)
            log.error("run failed", error=exc.message)
        except KeyboardInterrupt as exc:
            status, interruption = "interrupted", exc
            reasons.add(_cut_short(exc))
        except BaseException as exc:
            # an unexpected bug: record the run as failed, then let the error surface
            self.store.finish_run(run_id, status="failed", counts=counts.as_dict(),
                                  error=redact_text(error_text(exc)))
            raise
        if error is None and status != "succeeded" and reasons:
            error = redact_text(reasons.text())
        summary = counts.as_dict()
        if stopped:
            summary["stopped_streams"] = sorted(set(stopped))
        duration = round(time.monotonic() - started, 3)
        self.store.finish_run(run_id, status=status, counts=summary, error=error)
        details = {k: v for k, v in summary.items()
                   if k not in ("streams", "stopped_streams") and v}
        if error:
            details["error"] = error
        log.info("run finished", status=status, duration_s=duration, **details)
        if interruption is not None:
            raise interruption
        return RunReport(run_id, status, summary, error, duration,
                         stopped_streams=sorted(set(stopped)))

    def _pull(
        self,
        binding: StreamBinding,
        run_id: str,
        counts: RunCounts,
        reasons: RunReasons,
        *,
        full: bool,
        lease: LeaseToken | None,
        customers: CustomerIndex | None = None,
    ) -> bool:
        """Pull one stream page by page; return whether it finished, adding to ``reasons`` why
        it did not."""
        stored = None if full else self.store.get_cursor(binding.system, binding.stream)
        cursor = Cursor.from_dict(stored) if stored else None
        processor = PageProcessor(binding, self._outputs(), self.config, self.lifecycle,
                                  run_id, counts, self.clock, customers=customers)
        log = get_logger("refsync.sync", run_id=run_id, system=binding.system,
                         stream=binding.stream)
        fields = list(binding.mapping.remote_fields)
        try:
            for page in binding.connector.read(binding.object, fields, cursor):
                with run_transaction(self.store, run_id, counts, lease) as tx:
                    processor.process(tx, page)
                    tx.set_cursor(binding.system, binding.stream, page.cursor.to_dict(), run_id)
                if self.progress is not None:
                    stream_counts = counts.by_stream.get(binding.label)
                    self.progress(binding.label, stream_counts["read"] if stream_counts else 0)
                if self.should_stop():
                    break
        except QuotaExhaustedError as exc:
            log.warning("daily API allowance spent; stopping this stream", error=exc.message)
            reasons.allowance_spent(binding.system, binding.label, said=exc.message)
            return False
        except ConnectorError as exc:
            if exc.action == "fatal":
                raise
            log.warning("stream stopped by a remote failure; it resumes next run",
                        error=exc.message)
            reasons.add(f"stopped by a remote failure ({exc.message}); reading resumes next run",
                        binding.label)
            return False
        return True

    def retry(
        self, quarantine_ids: Sequence[int] | None = None, *, lease: LeaseToken | None = None
    ) -> RunReport:
        """Replay quarantined records with the current mappings, as a run of its own.

        Writes that failed go back to the outbox and are pushed now; records that could not be
        read are mapped again from the payload kept in quarantine. A record that fails again
        is quarantined again with its new reason. The replay commits as one transaction and the
        pushes batch by batch, fenced by ``lease`` like a sync; failures end the run the way
        they end a sync (recorded, never left ``running``).
        """
        run_id = self.store.start_run(trigger="retry", instance=self.instance, job="retry")
        with log_context(run_id=run_id, job="retry"), heap_set_aside():
            return self._retry(run_id, quarantine_ids, lease)

    def _retry(
        self, run_id: str, quarantine_ids: Sequence[int] | None, lease: LeaseToken | None
    ) -> RunReport:
        log = get_logger("refsync.sync", run_id=run_id, job="retry")
        log.info("run started", trigger="retry", instance=self.instance)
        counts = RunCounts(run_totals={"replayed": 0})
        reasons = RunReasons()

        def replay_and_push() -> str:
            self._replay_quarantine(run_id, counts, quarantine_ids, lease)
            return self._push_all(run_id, counts, lease, "succeeded", reasons, [])

        return self._recorded(run_id, counts, log, replay_and_push, reasons=reasons)

    def _replay_quarantine(
        self, run_id: str, counts: RunCounts, quarantine_ids: Sequence[int] | None,
        lease: LeaseToken | None,
    ) -> None:
        """Resolve open quarantine rows, queue failed writes again and re-read failed reads,
        in one transaction, which also records how many rows were replayed (``replayed``)."""
        by_label = {b.label: b for b in self.bindings}
        with self.store.snapshot() as view:
            rereads = any(row["direction"] == "in" for row in view.open_quarantine(quarantine_ids))
        # a re-read record may become a new referral: the same rules apply as in a sync (the
        # customer index is read from the CRM before the transaction, not while it is open)
        customers = self._customers() if rereads else None
        with run_transaction(self.store, run_id, counts, lease) as tx:
            rows = tx.open_quarantine(quarantine_ids)
            tx.resolve_quarantine([row["id"] for row in rows])
            outgoing = [row for row in rows if row["direction"] == "out" and row["referral_id"]]
            tx.enqueue([{
                "referral_id": row["referral_id"], "system": row["system"],
                "stream": row["stream"], "payload": {"retry_of": row["id"]},
                "payload_hash": f"retry-{row['id']}", "next_attempt_at": self.clock(),
            } for row in outgoing])
            for row in rows:
                binding = by_label.get(f"{row['system']}.{row['stream']}")
                if row["direction"] != "in" or binding is None:
                    continue
                data = row["payload"]
                record = ReadRecord(
                    id=str(data.get("id") or row["external_id"]),
                    modstamp=datetime.fromisoformat(data["modstamp"]) if data.get("modstamp")
                    else None,
                    data=dict(data.get("data") or {}),
                )
                processor = PageProcessor(binding, self._outputs(), self.config, self.lifecycle,
                                          run_id, counts, self.clock, customers=customers,
                                          replaying={record.id: row["id"]})
                processor.process(tx, Page([record], Cursor()))
            counts.run_totals["replayed"] = len(rows)

    def plan(self, *, systems: Sequence[str] | None = None, full: bool = False) -> PlanReport:
        """Compute what a run would change, writing nothing anywhere."""
        report = PlanReport()
        counts = RunCounts()
        customers = self._customers()
        with self.store.rehearsal() as tx:
            for binding in self._inputs(systems):
                stored = None if full else tx.cursor(binding.system, binding.stream)
                cursor = Cursor.from_dict(stored) if stored else None
                processor = PageProcessor(binding, self._outputs(), self.config,
                                          self.lifecycle, "plan", counts, self.clock,
                                          on_change=report.changes.append,
                                          customers=customers)
                fields = list(binding.mapping.remote_fields)
                for page in binding.connector.read(binding.object, fields, cursor):
                    processor.process(tx, page)
            for binding in self._outputs():
                drainer = OutboxDrainer(self.store, binding, "plan", counts, self.clock)
                after = 0
                # a page of the backlog at a time: a large one neither fills memory with rows
                # nor exceeds the database's limit on parameters in one query
                while due := tx.pending_outbox(binding.system, binding.stream, after_id=after,
                                               limit=PLAN_PAGE):
                    after = due[-1]["id"]
                    referrals = tx.referrals([row["referral_id"] for row in due])
                    links = tx.links_by_canonical(binding.system, binding.object,
                                                  list(referrals))
                    report.writes.extend(drainer.plan(due, referrals, links))
        report.counts = counts.as_dict()
        return report


def _cut_short(interruption: KeyboardInterrupt) -> str:
    """Why a run ended in the middle of a page or batch: the interruption's message, or
    Ctrl-C when it has none (Python's own ``KeyboardInterrupt``)."""
    why = str(interruption) or "Ctrl-C (SIGINT)"
    return (f"stopped: {why}; the page or batch in progress was not committed, everything "
            "committed before it stays, and the next run resumes from there")


@contextlib.contextmanager
def heap_set_aside() -> Iterator[None]:
    """Keep the objects that exist before a run out of the garbage collector's way during it.

    A run allocates many short-lived objects, so the collector runs often, and its full
    collections walk every object of the process: the modules, the client libraries, the
    compiled mappings. Frozen (:func:`gc.freeze`), those are skipped; that takes about 5% of a
    backfill's engine time away. They are unfrozen when the run ends, so anything among them
    that became garbage is collected as usual afterwards. Nothing is collected first: that
    would cost a full collection per run, which a small run would notice. Where objects are
    frozen already (by the application embedding refsync, or by a run going on in another
    thread), freezing is left to whoever froze them.
    """
    if gc.get_freeze_count():
        yield
        return
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()
