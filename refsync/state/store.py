"""The StateStore: the only way refsync reads and writes its state database.

A :class:`StateStore` wraps one SQLAlchemy engine. Reads go through its query methods; writes
go through a :class:`StateTransaction` so that everything one page of a sync changes (referrals,
links, events, outbox rows, quarantine rows and the cursor advance) commits together or not at
all. When a transaction is opened with a :class:`LeaseToken`, its commit is fenced: if another
daemon has taken the lease over in the meantime, the transaction fails with LeaseLostError and
writes nothing.
"""

from __future__ import annotations

import copy
import functools
import operator
import threading
import uuid
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import (
    Connection,
    Dialect,
    Engine,
    Integer,
    Select,
    Table,
    Update,
    and_,
    bindparam,
    distinct,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import (
    DatabaseError,
    IntegrityError,
    SQLAlchemyError,
)

from refsync.domain.ids import is_id_fragment
from refsync.errors import LeaseLostError, StateError, TickAlreadyRunError
from refsync.logging import redact_text
from refsync.state.engine import DaemonLock, create_state_engine, normalise_url, sqlite_path
from refsync.state.outage import error_text, unreachable_reason
from refsync.state.statistics import PlannerStatistics
from refsync.state.tables import (
    CursorRow,
    EventRow,
    LeaseRow,
    LinkRow,
    MappingLayoutRow,
    OutboxRow,
    PartnerRow,
    QuarantineRow,
    ReferralRow,
    RunRow,
    utcnow,
)

__all__ = ["LeaseToken", "StartedRun", "StateStore", "StateTransaction"]

_MIGRATIONS = Path(__file__).with_name("migrations")

_MIGRATION_LOCK = 0x7265_6673_796E_63
"""The PostgreSQL advisory lock migrations hold ("refsync" in ASCII)."""

referral_table: Table = ReferralRow.__table__  # type: ignore[attr-defined]
partner_table: Table = PartnerRow.__table__  # type: ignore[attr-defined]
link_table: Table = LinkRow.__table__  # type: ignore[attr-defined]
cursor_table: Table = CursorRow.__table__  # type: ignore[attr-defined]
event_table: Table = EventRow.__table__  # type: ignore[attr-defined]
outbox_table: Table = OutboxRow.__table__  # type: ignore[attr-defined]
quarantine_table: Table = QuarantineRow.__table__  # type: ignore[attr-defined]
run_table: Table = RunRow.__table__  # type: ignore[attr-defined]
lease_table: Table = LeaseRow.__table__  # type: ignore[attr-defined]
layout_table: Table = MappingLayoutRow.__table__  # type: ignore[attr-defined]

_REFERRAL_COLUMNS = tuple(column.name for column in referral_table.columns)


@dataclass(frozen=True)
class LeaseToken:
    """Proof of holding a lease: its name, holder and the epoch it was taken at."""

    name: str
    holder: str
    epoch: int
    expires_at: datetime
    taken_from: str | None = None
    """The previous holder, when this lease was taken over after it expired."""


@dataclass(frozen=True)
class StartedRun:
    """A run started through a :class:`StateStore`, as that store knows it."""

    id: str
    job: str
    instance: str
    ended_at: datetime | None = None
    """When it ended (its end was written, or could not be); None while it goes on."""
    unrecorded: str | None = None
    """Why its end could not be written, as its error will say; None once it is written."""


class StateStore:
    """refsync's state database (SQLite or PostgreSQL).

    Args:
        url: SQLAlchemy URL (``sqlite:///refsync.db``, ``postgresql://user@host/db``).
        migrate: apply pending Alembic migrations on open (the default, as on every start).
    """

    def __init__(self, url: str, *, migrate: bool = True, engine: Engine | None = None) -> None:
        self.url = normalise_url(url)
        self.engine = engine or create_state_engine(url)
        self._daemon_lock: DaemonLock | None = None
        self._runs_lock = threading.Lock()
        self._latest_runs: dict[str, StartedRun] = {}  # by instance
        self._unrecorded_runs: dict[str, StartedRun] = {}  # by id
        self.statistics = PlannerStatistics(self.engine) if self.backend == "postgresql" \
            else None
        """Keeps PostgreSQL's planner statistics fresh as transactions write rows."""
        if migrate:
            self.migrate()

    @property
    def backend(self) -> str:
        """``sqlite`` or ``postgresql``."""
        return self.url.get_backend_name()

    def close(self) -> None:
        """Release the daemon lock, if held, and dispose of the connection pool."""
        if self._daemon_lock is not None:
            self._daemon_lock.release()
            self._daemon_lock = None
        self.engine.dispose()

    def __enter__(self) -> StateStore:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # -- schema -----------------------------------------------------------------------------

    def migrate(self) -> list[str]:
        """Upgrade the schema to the newest revision; return the revisions applied."""
        config = Config()
        config.set_main_option("script_location", str(_MIGRATIONS))
        before = self.schema_revision()
        try:
            with self.engine.begin() as connection:
                if connection.dialect.name == "postgresql":
                    # daemons starting together on an empty database take turns: the second
                    # finds the schema made (SQLite's BEGIN IMMEDIATE serialises them already)
                    connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_MIGRATION_LOCK})")
                config.attributes["connection"] = connection
                command.upgrade(config, "head")
        except SQLAlchemyError as exc:
            raise StateError(
                f"could not migrate the state database {self._display_url()}: "
                f"{exc.__class__.__name__}",
                detail=str(exc),
            ) from exc
        script = ScriptDirectory.from_config(config)
        applied = [
            rev.revision
            for rev in script.iterate_revisions("head", before or "base")
            if rev.revision != before
        ]
        return list(reversed(applied))

    def schema_revision(self) -> str | None:
        """The schema revision the database is at, or None when it is empty."""
        try:
            with self.engine.connect() as connection:
                return MigrationContext.configure(connection).get_current_revision()
        except DatabaseError as exc:  # OperationalError included
            if "file is not a database" in str(exc.orig):
                raise StateError(
                    f"{sqlite_path(self.url)} is not a SQLite database ({exc.orig}) — point "
                    "state.url at refsync's state database, or at a new file for it to create",
                    detail=str(exc),
                ) from exc
            raise StateError(
                f"cannot open the state database {self._display_url()}: {exc.orig}",
                detail=str(exc),
            ) from exc

    def acquire_daemon_lock(self) -> None:
        """Refuse to share a SQLite file with another daemon (no-op on PostgreSQL).

        The lock sits beside the file the path leads to, symbolic links followed, so a second
        daemon reaching the same file through a link is refused too.
        """
        path = sqlite_path(self.url)
        if path is None or self._daemon_lock is not None:
            return
        path = path.resolve()
        lock = DaemonLock(path.with_name(path.name + ".lock"))
        lock.acquire()
        self._daemon_lock = lock

    def _display_url(self) -> str:
        return self.url.render_as_string(hide_password=True)

    # -- transactions -----------------------------------------------------------------------

    @contextmanager
    def transaction(self, lease: LeaseToken | None = None) -> Iterator[StateTransaction]:
        """A write transaction; with ``lease``, it commits only if the lease is still ours."""
        with self.engine.begin() as connection:
            tx = StateTransaction(connection)
            if lease is not None:
                tx.check_lease(lease)
            yield tx
        if self.statistics is not None:
            self.statistics.wrote(tx.rows_written)

    @contextmanager
    def rehearsal(self) -> Iterator[StateTransaction]:
        """A transaction that is always rolled back: for plans, which must write nothing."""
        with self.engine.connect() as connection:
            transaction = connection.begin()
            try:
                yield StateTransaction(connection)
            finally:
                transaction.rollback()

    @contextmanager
    def snapshot(self) -> Iterator[StateTransaction]:
        """A read-only view for several reads that must agree (no write lock on SQLite).

        Only the transaction's read methods may be used on it.
        """
        with self._reading() as connection:
            yield StateTransaction(connection)

    @contextmanager
    def _reading(self) -> Iterator[Connection]:
        with self.engine.connect().execution_options(refsync_readonly=True) as connection, \
                connection.begin():
            yield connection

    # -- reads ------------------------------------------------------------------------------

    def get_cursor(self, system: str, stream: str) -> dict[str, Any] | None:
        """The committed cursor of one stream, or None before its first read."""
        with self.snapshot() as view:
            return view.cursor(system, stream)

    def list_cursors(self) -> list[dict[str, Any]]:
        """Every stream's cursor, ordered by system and stream."""
        with self._reading() as connection:
            rows = connection.execute(
                select(cursor_table).order_by(cursor_table.c.system, cursor_table.c.stream)
            ).mappings()
            return [dict(row) for row in rows]

    def list_runs(
        self, limit: int = 20, *, job: str | None = None, scheduled_for: datetime | None = None
    ) -> list[dict[str, Any]]:
        """The newest runs first (only those of ``job``, and of the tick ``scheduled_for``,
        when given).

        A run whose tick was run again no longer holds it (its ``scheduled_for`` is empty and
        ``counts["tick"]`` names the tick), so ``scheduled_for`` finds the tick's latest run.
        """
        query = select(run_table).order_by(run_table.c.started_at.desc()).limit(limit)
        if job is not None:
            query = query.where(run_table.c.job == job)
        if scheduled_for is not None:
            query = query.where(run_table.c.scheduled_for == scheduled_for)
        with self._reading() as connection:
            return [dict(row) for row in connection.execute(query).mappings()]

    def abandon_runs(self, instance: str, *, reason: str) -> int:
        """Mark runs that ``instance`` left ``running`` as ``abandoned`` and return how many.

        Said of a daemon that died mid-run, or by a daemon about to exit while its run is stuck;
        ``reason`` is recorded as the runs' error.
        """
        with self.transaction() as tx:
            result = tx.connection.execute(
                update(run_table)
                .where(run_table.c.instance == instance, run_table.c.status == "running")
                .values(status="abandoned", error=reason, finished_at=utcnow())
            )
        return int(result.rowcount or 0)

    def get_run(self, run_id: str) -> dict[str, Any] | None:
        """One run by id (a unique prefix is accepted)."""
        with self._reading() as connection:
            rows = connection.execute(
                select(run_table).where(run_table.c.id.startswith(run_id)).limit(2)
            ).mappings().all()
        return dict(rows[0]) if len(rows) == 1 else None

    def list_quarantine(
        self, *, run_id: str | None = None, include_resolved: bool = False, limit: int = 100
    ) -> list[dict[str, Any]]:
        """Quarantined records, newest first; unresolved only unless asked."""
        query = select(quarantine_table).order_by(quarantine_table.c.id.desc()).limit(limit)
        if run_id:
            query = query.where(quarantine_table.c.run_id.startswith(run_id))
        if not include_resolved:
            query = query.where(quarantine_table.c.resolved_at.is_(None))
        with self._reading() as connection:
            return [dict(row) for row in connection.execute(query).mappings()]

    def get_referral(self, referral_id: str) -> dict[str, Any] | None:
        """One canonical referral by id."""
        return self.get_referrals([referral_id]).get(referral_id)

    def get_referrals(self, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """Canonical referrals by id, in one query."""
        with self.snapshot() as view:
            return view.referrals(ids)

    def find_links(
        self, system: str, object_name: str, external_ids: Sequence[str]
    ) -> dict[str, dict[str, Any]]:
        """Links of one system object by external id, in one query."""
        with self.snapshot() as view:
            return view.links_by_external(system, object_name, external_ids)

    def links_of(self, canonical_id: str, *, entity: str = "referral") -> list[dict[str, Any]]:
        """Every system record linked to one canonical record (a referral unless ``entity``
        says otherwise), found through the ``(entity, canonical_id, system)`` index."""
        with self._reading() as connection:
            rows = connection.execute(
                select(link_table)
                .where(link_table.c.entity == entity, link_table.c.canonical_id == canonical_id)
                .order_by(link_table.c.system)
            ).mappings()
            return [dict(row) for row in rows]

    def events_of(self, referral_id: str) -> list[dict[str, Any]]:
        """The event history of one referral, oldest first."""
        with self._reading() as connection:
            rows = connection.execute(
                select(event_table)
                .where(event_table.c.referral_id == referral_id)
                .order_by(event_table.c.id)
            ).mappings()
            return [dict(row) for row in rows]

    def list_referrals(
        self, *, status: str | None = None, partner_id: str | None = None, limit: int = 200
    ) -> list[dict[str, Any]]:
        """Referrals, newest first, optionally by status and partner."""
        query = select(referral_table).order_by(referral_table.c.created_at.desc()).limit(limit)
        if status:
            query = query.where(referral_table.c.status == status)
        if partner_id:
            query = query.where(referral_table.c.partner_id == partner_id)
        with self._reading() as connection:
            return [dict(row) for row in connection.execute(query).mappings()]

    def referral_ids_like(self, fragment: str, *, limit: int = 2) -> list[str]:
        """Ids of referrals whose id starts or ends with ``fragment`` (at most ``limit``).

        ``refsync referrals show`` takes what people copy from a table: the whole id, a
        prefix, or the short tail that tables show (:func:`refsync.domain.ids.short_referral_id`).

        Raises:
            ValueError: ``fragment`` cannot be part of a referral id.
        """
        if not is_id_fragment(fragment):
            raise ValueError(f"{fragment!r} is not part of a referral id")
        column = referral_table.c.id
        query = (select(column).where(or_(column.startswith(fragment), column.endswith(fragment)))
                 .order_by(column).limit(limit))
        with self._reading() as connection:
            return [str(row) for row in connection.execute(query).scalars()]

    def due_outbox(
        self, system: str, stream: str, *, limit: int, now: datetime | None = None
    ) -> list[dict[str, Any]]:
        """Pending writes to one stream whose next attempt is due, longest due first."""
        with self.snapshot() as view:
            return view.due_outbox(system, stream, limit=limit, now=now)

    def link_counts(self) -> dict[str, int]:
        """How many records refsync knows in each system (links per system)."""
        with self._reading() as connection:
            rows = connection.execute(
                select(link_table.c.system, func.count()).group_by(link_table.c.system)
            ).all()
        return {str(system): int(count) for system, count in rows}

    def status_counts(self) -> dict[str, int]:
        """Referrals per status."""
        with self._reading() as connection:
            rows = connection.execute(
                select(referral_table.c.status, func.count()).group_by(referral_table.c.status)
            ).all()
        return {str(status): int(count) for status, count in rows}

    def counts(self) -> dict[str, int]:
        """Row counts of the main tables, for status output and metrics.

        ``partners`` counts the partners who have submitted a referral (distinct partner ids
        of the referrals), not rows of the partner table.
        """
        queries = {
            "referrals": select(func.count()).select_from(referral_table),
            "partners": select(func.count(distinct(referral_table.c.partner_id))),
            "links": select(func.count()).select_from(link_table),
            "events": select(func.count()).select_from(event_table),
            "runs": select(func.count()).select_from(run_table),
        }
        with self._reading() as connection:
            result = {name: int(connection.execute(query).scalar_one())
                      for name, query in queries.items()}
            result["outbox_pending"] = int(connection.execute(
                select(func.count()).select_from(outbox_table)
                .where(outbox_table.c.state == "pending")
            ).scalar_one())
            result["quarantine_open"] = int(connection.execute(
                select(func.count()).select_from(quarantine_table)
                .where(quarantine_table.c.resolved_at.is_(None))
            ).scalar_one())
        return result

    def backlog(self) -> dict[str, dict[str, int]]:
        """Pending outbox rows and open quarantine entries by system (for metrics)."""
        with self._reading() as connection:
            outbox = connection.execute(
                select(outbox_table.c.system, func.count())
                .where(outbox_table.c.state == "pending").group_by(outbox_table.c.system)
            ).all()
            quarantine = connection.execute(
                select(quarantine_table.c.system, func.count())
                .where(quarantine_table.c.resolved_at.is_(None))
                .group_by(quarantine_table.c.system)
            ).all()
        return {
            "outbox": {str(system): int(n) for system, n in outbox},
            "quarantine": {str(system): int(n) for system, n in quarantine},
        }

    # -- runs -------------------------------------------------------------------------------

    def start_run(
        self,
        *,
        trigger: str,
        instance: str,
        job: str = "sync",
        scheduled_for: datetime | None = None,
    ) -> str:
        """Record the start of a sync cycle and return its id.

        Args:
            scheduled_for: the schedule tick a daemon run was fired for; a tick of a job is
                recorded once only, whichever daemon gets there first. A tick whose run was
                cut short (``interrupted`` or ``abandoned``) may be run again: in the same
                transaction the earlier run gives the tick up (see :meth:`_release_tick`).

        Raises:
            TickAlreadyRunError: another run already recorded ``(job, scheduled_for)``, and it
                is running or has ended ``succeeded``, ``partial`` or ``failed``.
        """
        run_id = str(uuid.uuid4())
        try:
            with self.transaction() as tx:
                if scheduled_for is not None:
                    self._release_tick(tx.connection, job, scheduled_for, rerun_by=run_id)
                tx.connection.execute(run_table.insert().values(
                    id=run_id, job=job, trigger=trigger, status="running", instance=instance,
                    started_at=utcnow(), counts={}, scheduled_for=scheduled_for,
                ))
        except IntegrityError as exc:
            if scheduled_for is None:
                raise
            raise TickAlreadyRunError(
                f"the {scheduled_for.isoformat()} tick of job {job} has already run"
            ) from exc
        with self._runs_lock:
            self._latest_runs[instance] = StartedRun(run_id, job, instance)
        return run_id

    def finish_run(
        self, run_id: str, *, status: str, counts: Mapping[str, Any], error: str | None = None
    ) -> None:
        """Record how a sync cycle ended.

        A run marked abandoned while it still went on (its daemon was paused past its lease,
        or gave up at the shutdown timeout) ends with the status it reached, and its error still
        says why it had been marked; if its tick was meanwhile run again, it keeps the counts
        that say so (``tick``, ``rerun_by``).

        When the end cannot be written (the database is unreachable), the error is raised and
        the store remembers the run: :meth:`unrecorded_runs` lists it and
        :meth:`fail_unrecorded_runs` records it later.
        """
        try:
            self._write_run_end(run_id, status=status, counts=counts, error=error)
        except BaseException as exc:
            self._run_ended(run_id, unrecorded=exc)
            raise
        self._run_ended(run_id)

    def _write_run_end(
        self, run_id: str, *, status: str, counts: Mapping[str, Any], error: str | None
    ) -> None:
        with self.transaction() as tx:
            stored = tx.connection.execute(
                select(run_table.c.scheduled_for, run_table.c.counts, run_table.c.status,
                       run_table.c.error)
                .where(run_table.c.id == run_id).with_for_update()
            ).first()
            kept: dict[str, Any] = {}
            if stored is not None and stored.scheduled_for is None:
                kept = {key: value for key, value in (stored.counts or {}).items()
                        if key in self._RELEASED_TICK_COUNTS}
            if stored is not None and stored.status == "abandoned" and stored.error:
                error = f"{error or f'the run then ended {status}'}; it had been marked " \
                    f"abandoned: {stored.error}"
            tx.connection.execute(
                update(run_table).where(run_table.c.id == run_id).values(
                    status=status, counts={**counts, **kept}, error=error, finished_at=utcnow()
                )
            )

    def _run_ended(self, run_id: str, *, unrecorded: BaseException | None = None) -> None:
        """Note that a run started through this store ended; remember it if its end could
        not be written."""
        with self._runs_lock:
            run = next((r for r in self._latest_runs.values() if r.id == run_id), None) \
                or self._unrecorded_runs.get(run_id)
            if run is None:  # started elsewhere (another process or store): nothing to note
                return
            ended = replace(run, ended_at=run.ended_at or utcnow(),
                            unrecorded=None if unrecorded is None else _unrecorded(unrecorded))
            if ended.unrecorded is None:
                self._unrecorded_runs.pop(run_id, None)
            else:
                self._unrecorded_runs[run_id] = ended
            if self._latest_runs.get(run.instance, ended).id == run_id:
                self._latest_runs[run.instance] = ended

    def latest_run(self, instance: str) -> StartedRun | None:
        """The run ``instance`` last started through this store (whether it goes on, ended,
        or ended without its end written), or None."""
        with self._runs_lock:
            return self._latest_runs.get(instance)

    def unrecorded_runs(self, instance: str | None = None) -> list[StartedRun]:
        """Runs started through this store (by ``instance``, when given) whose end could not
        be written, oldest first: the database still shows them ``running``."""
        with self._runs_lock:
            runs = list(self._unrecorded_runs.values())
        return [run for run in runs if instance is None or run.instance == instance]

    def fail_unrecorded_runs(self, instance: str | None = None) -> list[StartedRun]:
        """Record as ``failed`` the runs whose end could not be written (those of ``instance``,
        when given), with why as their error and the time they ended; return them.

        A run keeps the counts its committed pages recorded. One marked ``abandoned``
        meanwhile (another daemon took the lease over) says so in its error, as
        :meth:`finish_run` says it; one whose end was written after all is left as it is.

        Raises:
            the database's error when it still cannot be written; the runs not recorded yet
            stay remembered.
        """
        recorded = []
        for run in self.unrecorded_runs(instance):
            if self._record_failure(run):
                recorded.append(run)
            with self._runs_lock:
                self._unrecorded_runs.pop(run.id, None)
                latest = self._latest_runs.get(run.instance)
                if latest is not None and latest.id == run.id:
                    self._latest_runs[run.instance] = replace(run, unrecorded=None)
        return recorded

    def _record_failure(self, run: StartedRun) -> bool:
        """Write the end of an unrecorded run as ``failed``; False if it was no longer open."""
        with self.transaction() as tx:
            stored = tx.connection.execute(
                select(run_table.c.status, run_table.c.error)
                .where(run_table.c.id == run.id).with_for_update()
            ).first()
            if stored is None or stored.status not in ("running", "abandoned"):
                return False
            error = run.unrecorded
            if stored.status == "abandoned" and stored.error:
                error = f"{error}; it had been marked abandoned: {stored.error}"
            tx.connection.execute(
                update(run_table).where(run_table.c.id == run.id).values(
                    status="failed", error=error, finished_at=run.ended_at)
            )
        return True

    TICK_RERUN_STATUSES = ("interrupted", "abandoned")
    """How a scheduled run may have ended for its tick to be run again (within its grace)."""

    _RELEASED_TICK_COUNTS = ("tick", "rerun_by")

    @staticmethod
    def _release_tick(
        connection: Connection, job: str, scheduled_for: datetime, *, rerun_by: str
    ) -> None:
        """Let a cut-short run of ``(job, scheduled_for)`` give its tick up to run ``rerun_by``.

        Its ``scheduled_for`` becomes empty (the unique index ignores it then) and its counts
        keep the tick and which run took it. A run in any other state keeps the tick, so the
        insert that follows is refused. The update matches the tick and the status again, so of
        two transactions releasing the same run only the first does (the other's insert then
        collides with the first's new run).
        """
        tick = run_table.c.scheduled_for == scheduled_for
        earlier = connection.execute(
            select(run_table.c.id, run_table.c.counts)
            .where(run_table.c.job == job, tick,
                   run_table.c.status.in_(StateStore.TICK_RERUN_STATUSES))
        ).first()
        if earlier is None:
            return
        counts = {**(earlier.counts or {}), "tick": scheduled_for.isoformat(),
                  "rerun_by": rerun_by}
        connection.execute(
            update(run_table)
            .where(run_table.c.id == earlier.id, tick,
                   run_table.c.status.in_(StateStore.TICK_RERUN_STATUSES))
            .values(scheduled_for=None, counts=counts)
        )

    # -- leases -----------------------------------------------------------------------------

    def acquire_lease(
        self,
        name: str,
        holder: str,
        ttl: timedelta,
        *,
        now: datetime | None = None,
        force: bool = False,
    ) -> LeaseToken | None:
        """Take (or renew) the lease ``name`` for ``holder``; None when someone else holds it.

        On PostgreSQL the lease row is locked with ``FOR UPDATE SKIP LOCKED``, so daemons racing
        for it never block each other: the loser simply gets None. Taking over an expired lease
        increments its epoch, which fences the previous holder's writes. ``force`` takes it even
        from a live holder: only for a process that knows no one else can run (the SQLite
        daemon, which holds the database file's lock).
        """
        moment = now or utcnow()
        with self.transaction() as tx:
            connection = tx.connection
            _insert_ignore(connection, lease_table, [{"name": name, "epoch": 0}], ["name"])
            query = select(lease_table).where(lease_table.c.name == name)
            if self.backend == "postgresql":
                query = query.with_for_update(skip_locked=True)
            row = connection.execute(query).mappings().first()
            if row is None:
                return None
            expires_at = moment + ttl
            taken_from = None
            if row["holder"] == holder and row["expires_at"] is not None \
                    and row["expires_at"] > moment:
                epoch = row["epoch"]
            elif force or row["holder"] is None or row["expires_at"] is None \
                    or row["expires_at"] <= moment:
                epoch = row["epoch"] + 1
                if row["holder"] not in (None, holder):
                    taken_from = row["holder"]
            else:
                return None
            connection.execute(
                update(lease_table).where(lease_table.c.name == name).values(
                    holder=holder, epoch=epoch, expires_at=expires_at, heartbeat_at=moment
                )
            )
        return LeaseToken(name, holder, epoch, expires_at, taken_from)

    def renew_lease(
        self, token: LeaseToken, ttl: timedelta, *, now: datetime | None = None
    ) -> LeaseToken:
        """Extend a held lease (the heartbeat); raise LeaseLostError if it was taken over."""
        moment = now or utcnow()
        with self.transaction() as tx:
            result = tx.connection.execute(
                update(lease_table)
                .where(_lease_matches(token))
                .values(expires_at=moment + ttl, heartbeat_at=moment)
            )
            if result.rowcount != 1:
                raise LeaseLostError(
                    f"lease {token.name} was taken over by another daemon; stopping this run"
                )
        return LeaseToken(token.name, token.holder, token.epoch, moment + ttl)

    def get_lease(self, name: str) -> dict[str, Any] | None:
        """The lease row ``name`` (holder, epoch, expiry), or None if never taken."""
        with self._reading() as connection:
            row = connection.execute(
                select(lease_table).where(lease_table.c.name == name)
            ).mappings().first()
            return dict(row) if row is not None else None

    def release_lease(self, token: LeaseToken) -> None:
        """Give a lease up so another daemon can take it at once (idempotent)."""
        with self.transaction() as tx:
            tx.connection.execute(
                update(lease_table).where(_lease_matches(token)).values(
                    holder=None, expires_at=None
                )
            )


def _unrecorded(exc: BaseException) -> str:
    """What the run's error says when its end could not be written because of ``exc``."""
    why = unreachable_reason(exc)
    if why is not None:
        text = f"the state store was unreachable when the run ended: {why}"
    else:
        text = f"its end could not be recorded: {error_text(exc)}"
    return redact_text(f"{text}; the pages it committed are kept, and the next run continues "
                       "from them")


def _due(query: Any, system: str, stream: str, limit: int, now: datetime | None) -> Any:
    """Restrict ``query`` to a stream's due outbox rows, in ``ix_outbox_due`` order."""
    return (
        query.where(
            outbox_table.c.system == system,
            outbox_table.c.stream == stream,
            outbox_table.c.state == "pending",
            outbox_table.c.next_attempt_at <= (now or utcnow()),
        )
        .order_by(outbox_table.c.next_attempt_at, outbox_table.c.id)
        .limit(limit)
    )


# -- the statements of the sync's hot paths, built once ----------------------------------------
# Building a statement (its clauses and its cache key) costs SQLAlchemy more than running it
# on a page of rows; these are built once, with bound parameters, and executed with values.
# Those with a list of values (``column IN (...)``) are functions of the list's parameters:
# see :func:`_select_in`.


def _referral_rows(columns: tuple[str, ...], ids: Any) -> Select[Any]:
    """The ``columns`` of the referrals whose id is in ``ids``."""
    selected = [referral_table.c[name] for name in columns]
    return select(*selected).where(referral_table.c.id.in_(ids))


def _referrals_matching(column: str, keys: Any) -> Select[Any]:
    """Referrals whose match column is in ``keys``, oldest submission first."""
    return (
        select(referral_table)
        .where(referral_table.c[column].in_(keys))
        .order_by(referral_table.c.created_at, referral_table.c.id)
    )


def _links_by_external(external_ids: Any) -> Select[Any]:
    """Links of the system object ``:system``/``:object`` whose external id is in the list."""
    return select(link_table).where(
        link_table.c.system == bindparam("system"),
        link_table.c.object == bindparam("object"),
        link_table.c.external_id.in_(external_ids),
    )


def _links_by_canonical(canonical_ids: Any) -> Select[Any]:
    """Links of ``:entity`` records in ``:system``/``:object`` whose canonical id is in the
    list, oldest first."""
    return select(link_table).where(
        link_table.c.entity == bindparam("entity"),
        link_table.c.canonical_id.in_(canonical_ids),
        link_table.c.system == bindparam("system"),
        link_table.c.object == bindparam("object"),
    ).order_by(link_table.c.id)


def _outbox_state(outbox_ids: Any) -> Update:
    """Set the state (``:new_state``, at ``:moment``) of the outbox rows in the list."""
    return (
        update(outbox_table)
        .where(outbox_table.c.id.in_(outbox_ids))
        .values(state=bindparam("new_state"), updated_at=bindparam("moment"))
    )


_DUE_WRITES: Select[Any] = (
    select(outbox_table.c.id, outbox_table.c.referral_id, outbox_table.c.attempts)
    .where(
        outbox_table.c.system == bindparam("system"),
        outbox_table.c.stream == bindparam("stream"),
        outbox_table.c.state == "pending",
        outbox_table.c.next_attempt_at <= bindparam("now"),
    )
    .order_by(outbox_table.c.next_attempt_at, outbox_table.c.id)
    .limit(bindparam("limit", type_=Integer()))
)
"""What :meth:`StateTransaction.due_writes` reads: the query of :func:`_due`, prepared."""

_OPEN_QUARANTINE_PROBE: Select[Any] = select(quarantine_table.c.id).where(
    quarantine_table.c.resolved_at.is_(None),
    quarantine_table.c.system == bindparam("system"),
    quarantine_table.c.stream == bindparam("stream"),
    quarantine_table.c.direction == bindparam("direction"),
).limit(1)
"""Whether any quarantine row of one place and direction is still open."""


_unfinished_run_counts = (
    update(run_table)
    .where(run_table.c.id == bindparam("run"),
           run_table.c.status.in_(["running", "abandoned"]))
    .values(counts=bindparam("counts"))
)


def _lease_matches(token: LeaseToken) -> Any:
    return and_(
        lease_table.c.name == token.name,
        lease_table.c.holder == token.holder,
        lease_table.c.epoch == token.epoch,
    )


class StateTransaction:
    """The writes of one unit of work (typically one page of a sync), committed together."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self.rows_written = 0
        """Rows this transaction inserted or updated through its write methods."""

    def check_lease(self, token: LeaseToken) -> None:
        """Fail unless ``token`` still holds its lease (the epoch fence)."""
        query = select(lease_table.c.epoch, lease_table.c.holder).where(
            lease_table.c.name == token.name
        )
        if self.connection.dialect.name == "postgresql":
            # FOR SHARE keeps a concurrent take-over from committing until this page has.
            query = query.with_for_update(read=True)
        row = self.connection.execute(query).first()
        if row is None or row.epoch != token.epoch or row.holder != token.holder:
            raise LeaseLostError(
                f"lease {token.name} is no longer held by {token.holder} "
                f"(epoch {token.epoch}); the page or batch in progress was not written (what "
                "was committed before it stays)"
            )

    # reads inside the transaction (they see its own uncommitted writes) ------------------

    def referrals(
        self, ids: Sequence[str], *, provenance: bool = True,
        columns: Sequence[str] | None = None,
    ) -> dict[str, dict[str, Any]]:
        """Canonical referrals by id; ``provenance=False`` leaves that column out (a push
        needs none of it, and it is the largest value of a row to decode), and ``columns``
        reads those columns only (``id`` always; names of no column are ignored)."""
        if not ids:
            return {}
        wanted = {"id", *columns} if columns is not None else set(_REFERRAL_COLUMNS)
        if not provenance:
            wanted.discard("provenance")
        read = tuple(name for name in _REFERRAL_COLUMNS if name in wanted)
        rows = _select_in(self.connection, _referral_rows, (read,), ids)
        return {row["id"]: row for row in rows}

    def referrals_by(self, column: str, values: Sequence[str]) -> list[dict[str, Any]]:
        """Referrals whose match column (``email_norm``, ``domain``, ``company_norm``,
        ``phone_norm``) is one of ``values``, oldest submission first."""
        if not values:
            return []
        return _select_in(self.connection, _referrals_matching, (column,), values)

    def links_by_external(
        self, system: str, object_name: str, external_ids: Sequence[str]
    ) -> dict[str, dict[str, Any]]:
        """Links of one system object by external id."""
        if not external_ids:
            return {}
        rows = _select_in(self.connection, _links_by_external, (), external_ids,
                          {"system": system, "object": object_name})
        return {row["external_id"]: row for row in rows}

    def links_by_canonical(
        self, system: str, object_name: str, canonical_ids: Sequence[str],
        *, entity: str = "referral",
    ) -> dict[str, dict[str, Any]]:
        """Links of one system object by canonical id (the newest link wins if several).

        ``entity`` (referrals unless said otherwise) lets the lookup use the
        ``(entity, canonical_id, system)`` index instead of reading every link.
        """
        if not canonical_ids:
            return {}
        rows = _select_in(self.connection, _links_by_canonical, (), canonical_ids,
                          {"entity": entity, "system": system, "object": object_name})
        return {row["canonical_id"]: row for row in rows}

    def cursor(self, system: str, stream: str) -> dict[str, Any] | None:
        """One stream's cursor as this transaction sees it."""
        row = self.connection.execute(
            select(cursor_table.c.value).where(
                cursor_table.c.system == system, cursor_table.c.stream == stream
            )
        ).first()
        return dict(row.value) if row else None

    def pending_outbox(
        self, system: str, stream: str, *, after_id: int = 0, limit: int | None = None
    ) -> list[dict[str, Any]]:
        """Pending writes to one stream, due or not, oldest first: every one, or ``limit`` of
        them after the row ``after_id`` (to page through a large backlog)."""
        query = select(outbox_table).where(
            outbox_table.c.system == system, outbox_table.c.stream == stream,
            outbox_table.c.state == "pending", outbox_table.c.id > after_id,
        ).order_by(outbox_table.c.id)
        if limit is not None:
            query = query.limit(limit)
        return [dict(row) for row in self.connection.execute(query).mappings()]

    def due_outbox(
        self, system: str, stream: str, *, limit: int, now: datetime | None = None
    ) -> list[dict[str, Any]]:
        """Pending writes to one stream whose next attempt is due, longest due first.

        Ordered by ``(next_attempt_at, id)``, the order of the ``ix_outbox_due`` index, so each
        call reads only the rows it returns however many are pending (ordering by id alone
        would sort every pending row of the stream on each call).
        """
        query = _due(select(outbox_table), system, stream, limit, now)
        return [dict(row) for row in self.connection.execute(query).mappings()]

    def due_writes(
        self, system: str, stream: str, *, limit: int, now: datetime | None = None
    ) -> list[dict[str, Any]]:
        """The rows :meth:`due_outbox` returns, with only what a push needs of each.

        ``id``, ``referral_id`` and ``attempts``: the payload and timestamps are not read.
        """
        rows = self.connection.execute(_DUE_WRITES, {
            "system": system, "stream": stream, "now": now or utcnow(), "limit": limit})
        return [{"id": row[0], "referral_id": row[1], "attempts": row[2]} for row in rows]

    def outbox_rows(self, outbox_ids: Sequence[int]) -> list[dict[str, Any]]:
        """Outbox rows by id."""
        if not outbox_ids:
            return []
        rows = self.connection.execute(
            select(outbox_table).where(outbox_table.c.id.in_(list(outbox_ids)))
        ).mappings()
        return [dict(row) for row in rows]

    def open_quarantine(self, ids: Sequence[int] | None = None) -> list[dict[str, Any]]:
        """Unresolved quarantine rows (all, or those with the given ids), oldest first."""
        query = select(quarantine_table).where(quarantine_table.c.resolved_at.is_(None))
        if ids is not None:
            query = query.where(quarantine_table.c.id.in_(list(ids)))
        rows = self.connection.execute(query.order_by(quarantine_table.c.id)).mappings()
        return [dict(row) for row in rows]

    def upsert_referrals(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """Insert or replace canonical referrals by id."""
        self.rows_written += len(rows)
        _upsert(self.connection, referral_table, _with_defaults(ReferralRow, rows), ["id"])

    def upsert_partners(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """Insert or replace partners by id."""
        _upsert(self.connection, partner_table, _with_defaults(PartnerRow, rows), ["id"])

    def upsert_links(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """Insert or update links by (system, object, external_id)."""
        self.rows_written += len(rows)
        _upsert(
            self.connection, link_table, _with_defaults(LinkRow, rows),
            ["system", "object", "external_id"],
        )

    def append_events(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """Append ledger events."""
        self.rows_written += len(rows)
        if rows:
            _insert(self.connection, event_table, _with_defaults(EventRow, rows))

    def enqueue(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """Queue writes; a newer write of the same referral to the same stream replaces the old."""
        self.rows_written += len(rows)
        _upsert(
            self.connection, outbox_table, _with_defaults(OutboxRow, rows),
            ["system", "stream", "referral_id"],
            keep=["id", "created_at"],
        )

    def finish_outbox(self, outbox_ids: Sequence[int], *, state: str = "sent") -> None:
        """Mark outbox rows done (``sent``) or ``quarantined``."""
        self.rows_written += len(outbox_ids)
        if outbox_ids:
            _execute_in(self.connection, _outbox_state, (), outbox_ids,
                        {"new_state": state, "moment": utcnow()})

    def delay_outbox(self, outbox_id: int, *, error: str, next_attempt_at: datetime) -> None:
        """Keep a failed write pending for a later attempt."""
        self.connection.execute(
            update(outbox_table).where(outbox_table.c.id == outbox_id).values(
                attempts=outbox_table.c.attempts + 1, last_error=error,
                next_attempt_at=next_attempt_at, updated_at=utcnow(),
            )
        )

    def quarantine(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """Record records that could not be read or written, with their reasons.

        A record has at most one open row per place: a write to a system and stream is known
        by its referral, a read by the remote record's id. A record that fails again while its
        row is open updates that row (the new run, reason and payload; one more attempt; the
        first failure's time stays). So does a record whose replay by ``refsync retry`` fails:
        the row it replayed (``replay_of`` in the given row) reopens instead of a new one
        starting again at one attempt.
        """
        fresh = []
        table = quarantine_table
        for row in rows:
            target = _quarantine_target(row)
            if target is None:
                fresh.append(row)
                continue
            reopen = row.get("replay_of")
            still_open = table.c.resolved_at.is_(None)
            found = self.connection.execute(
                select(table.c.id).where(*target, still_open if reopen is None
                                         else or_(still_open, table.c.id == reopen))
                .order_by(table.c.id.desc()).limit(1)
            ).scalar()
            if found is None:
                fresh.append(row)
                continue
            self.connection.execute(
                update(table).where(table.c.id == found).values(
                    run_id=row.get("run_id"), payload=row.get("payload") or {},
                    error_code=row["error_code"], message=row["message"],
                    attempts=table.c.attempts + 1, resolved_at=None,
                    external_id=row.get("external_id") or table.c.external_id,
                    referral_id=row.get("referral_id") or table.c.referral_id)
            )
        if fresh:
            fresh = [{k: v for k, v in row.items() if k != "replay_of"} for row in fresh]
            _insert(self.connection, table, _with_defaults(QuarantineRow, fresh))

    def resolve_quarantine(self, quarantine_ids: Sequence[int]) -> None:
        """Mark quarantined records as dealt with."""
        if quarantine_ids:
            self.connection.execute(
                update(quarantine_table).where(quarantine_table.c.id.in_(list(quarantine_ids)))
                .values(resolved_at=utcnow())
            )

    def resolve_synced(
        self, system: str, stream: str, direction: str, record_ids: Sequence[str]
    ) -> None:
        """Close the open quarantine rows of records that have now synced there.

        ``record_ids`` are referral ids for writes (``out``) and remote ids for reads (``in``):
        a write that succeeds, or a record read and mapped, no longer awaits a fix.
        """
        if not record_ids:
            return
        # nearly always nothing is open: one indexed probe instead of a statement binding a
        # whole page of ids
        probe = self.connection.execute(_OPEN_QUARANTINE_PROBE, {
            "system": system, "stream": stream, "direction": direction})
        if probe.first() is None:
            return
        table = quarantine_table
        open_here = (table.c.resolved_at.is_(None), table.c.system == system,
                     table.c.stream == stream, table.c.direction == direction)
        self.connection.execute(
            update(table).where(*open_here, table.c[_record_key(direction)].in_(list(record_ids)))
            .values(resolved_at=utcnow())
        )

    def record_progress(self, run_id: str, counts: Mapping[str, Any]) -> None:
        """Keep a running run's counts as of this transaction (they commit with its work).

        So a run that never finishes (its daemon was killed or gave up at the shutdown
        timeout) still says what its committed pages did. A run marked ``abandoned`` while it
        still goes on (its daemon is exiting after the shutdown timeout) goes on counting: only
        the lease holder commits, so its tick cannot have been taken by another run yet, whose
        ``tick`` and ``rerun_by`` these counts would overwrite.
        """
        self.connection.execute(_unfinished_run_counts, {"run": run_id, "counts": dict(counts)})

    def remember_layout(
        self, system: str, object_name: str, fingerprint: str,
        written: Sequence[Sequence[str]], read_only: Sequence[Sequence[str]],
    ) -> None:
        """Keep the fields a version of a mapping writes and only reads (once per
        fingerprint), as ``[remote path, kind]`` pairs."""
        _insert_ignore(self.connection, layout_table, [{
            "system": system, "object": object_name, "fingerprint": fingerprint,
            "written": [list(item) for item in written],
            "read_only": [list(item) for item in read_only], "created_at": utcnow(),
        }], ["system", "object", "fingerprint"])

    def layout(
        self, system: str, object_name: str, fingerprint: str
    ) -> tuple[list[list[str]], list[list[str]]] | None:
        """The fields the version ``fingerprint`` of a mapping writes and only reads, if it
        was remembered."""
        row = self.connection.execute(
            select(layout_table.c.written, layout_table.c.read_only).where(
                layout_table.c.system == system, layout_table.c.object == object_name,
                layout_table.c.fingerprint == fingerprint)
        ).first()
        if row is None:
            return None
        return [list(item) for item in row[0]], [list(item) for item in row[1]]

    def set_cursor(
        self, system: str, stream: str, value: Mapping[str, Any], run_id: str | None = None
    ) -> None:
        """Advance one stream's cursor (commits with the data it covers)."""
        _upsert(
            self.connection, cursor_table,
            [{"system": system, "stream": stream, "value": dict(value), "run_id": run_id,
              "updated_at": utcnow()}],
            ["system", "stream"],
        )


def _record_key(direction: str) -> str:
    """The quarantine column naming the record: a write's referral, a read's remote id."""
    return "referral_id" if direction == "out" else "external_id"


def _quarantine_target(row: Mapping[str, Any]) -> list[Any] | None:
    """What identifies a quarantined record's place (None: nothing names the record)."""
    table = quarantine_table
    key = _record_key(row["direction"])
    if not row.get(key):
        return None
    return [table.c.system == row["system"], table.c.stream == row["stream"],
            table.c.direction == row["direction"], table.c[key] == row[key]]


_LONGEST_PREPARED_LIST = 2048
"""Lists up to this long are sent with a statement prepared for their padded length."""

_LIST_PARAMETERS = tuple(f"in_{index}" for index in range(_LONGEST_PREPARED_LIST))
"""The names of the list's parameters in a prepared statement (see :func:`_prepared_in`)."""


def _select_in(
    connection: Connection,
    query: Callable[..., Select[Any]],
    arguments: tuple[Any, ...],
    values: Sequence[Any],
    parameters: Mapping[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """The rows (plain dicts, see :func:`_result_dicts`) of ``query(*arguments, values)``, a
    select of whole table rows with a list of values (``column IN (...)``) and ``parameters``;
    sent as :func:`_run_in` sends it."""
    values = list(values)
    if not values:  # nothing is in an empty list
        return []
    result = _run_in(connection, query, arguments, values, parameters)
    return _result_dicts(connection.dialect, _selected_columns(query, arguments), result)


def _execute_in(
    connection: Connection,
    query: Callable[..., Any],
    arguments: tuple[Any, ...],
    values: Sequence[Any],
    parameters: Mapping[str, Any] | None = None,
) -> None:
    """Run ``query(*arguments, values)`` (an update or delete), sent as :func:`_run_in` sends
    it."""
    values = list(values)
    if values:  # nothing is in an empty list
        _run_in(connection, query, arguments, values, parameters)


def _run_in(
    connection: Connection,
    query: Callable[..., Any],
    arguments: tuple[Any, ...],
    values: list[Any],
    parameters: Mapping[str, Any] | None,
) -> Any:
    """Execute ``query(*arguments, values)`` for a non-empty list ``values``; the result.

    SQLAlchemy expands a list parameter into one parameter per value on every execution, which
    for a page of values costs more than the query. Instead the statement is compiled once per
    padded list length (the next power of two) and sent as driver SQL, the list padded with
    its last value (which ``IN`` ignores). A list longer than :data:`_LONGEST_PREPARED_LIST`
    goes SQLAlchemy's way.
    """
    if len(values) > _LONGEST_PREPARED_LIST:
        statement = query(*arguments, bindparam("in_list", expanding=True))
        return connection.execute(statement, {**(parameters or {}), "in_list": values})
    prepared = _prepared_in(connection.dialect, query, arguments, _padded_length(len(values)))
    return connection.exec_driver_sql(prepared.sql, _list_bound(prepared, values, parameters))


def _padded_length(count: int) -> int:
    """The length a list of ``count`` values is padded to: the next power of two, so that a
    dozen prepared statements of a query serve every length."""
    return 1 << max(count - 1, 0).bit_length()


@functools.lru_cache(maxsize=256)
def _prepared_in(
    dialect: Dialect, query: Callable[..., Any], arguments: tuple[Any, ...], length: int
) -> _DriverStatement:
    """``query(*arguments, list)`` compiled for a list of ``length`` values."""
    statement = query(*arguments, [bindparam(name) for name in _LIST_PARAMETERS[:length]])
    return _compile_driver_statement(dialect, statement, ())


@functools.lru_cache(maxsize=64)
def _selected_columns(query: Callable[..., Select[Any]], arguments: tuple[Any, ...]) -> Any:
    """The columns ``query(*arguments, list)`` selects, whatever the list."""
    return query(*arguments, bindparam("in_list", expanding=True)).selected_columns


def _list_bound(
    statement: _DriverStatement, values: list[Any], parameters: Mapping[str, Any] | None
) -> Any:
    """The driver parameters of a statement from :func:`_prepared_in` for ``values``."""
    length = _padded_length(len(values))
    padded = values + [values[-1]] * (length - len(values))  # IN ignores values seen before
    bound = dict(zip(_LIST_PARAMETERS[:length], padded, strict=True))
    if parameters:
        bound.update(parameters)
    return _driver_parameters(statement, [bound])[0]


def _result_dicts(dialect: Dialect, columns: Any, result: Any) -> list[dict[str, Any]]:
    """The rows of ``result`` (a select of ``columns``) as plain dicts.

    The values go through the same result processors SQLAlchemy would apply (chosen from the
    column types and the driver's type codes), but straight from the driver's rows: building
    SQLAlchemy rows and then dicts from them costs several times the query itself.
    """
    try:
        keys = tuple(result.keys())
        raw = result.cursor.fetchall() if result.cursor is not None else []
        description = result.cursor.description if result.cursor is not None else None
    finally:
        result.close()
    if not raw:
        return []
    converters = []
    for index, key in enumerate(keys):
        code = description[index][1] if description else None
        processor = _result_processor(dialect, columns[key].type, code)
        if processor is not None:
            converters.append((key, processor))
    rows = []
    for values in raw:
        row = dict(zip(keys, values, strict=True))
        for key, processor in converters:
            row[key] = processor(row[key])
        rows.append(row)
    return rows


def _result_processor(dialect: Dialect, type_: Any, code: Any) -> Callable[[Any], Any] | None:
    cache = _RESULT_PROCESSORS.setdefault(dialect, {})
    marker = (type_, code)
    if marker not in cache:
        cache[marker] = type_.dialect_impl(dialect).result_processor(dialect, code)
    return cache[marker]


_RESULT_PROCESSORS: weakref.WeakKeyDictionary[Dialect, dict[tuple[Any, Any], Any]] = (
    weakref.WeakKeyDictionary()
)


def _with_defaults(model: Any, rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Fill the Python-side defaults SQLModel would apply, without a pydantic model per row."""
    defaults: dict[str, Any] = {}
    for name, info in model.model_fields.items():
        if info.default_factory is not None:
            defaults[name] = info.default_factory()
        elif not info.is_required() and info.default is not None:
            defaults[name] = info.default
    if "id" in defaults and defaults["id"] is None:
        del defaults["id"]
    mutable = [key for key, value in defaults.items() if isinstance(value, (dict, list))]
    filled = []
    for row in rows:
        merged = {**defaults, **row}
        for key in mutable:
            if merged[key] is defaults[key]:
                merged[key] = copy.copy(defaults[key])
        filled.append(merged)
    return filled


def _dialect_insert(dialect_name: str, table: Table) -> Any:
    """The dialect's ``INSERT`` construct, which knows ``ON CONFLICT``."""
    return postgresql_insert(table) if dialect_name == "postgresql" else sqlite_insert(table)


def _upsert(
    connection: Connection,
    table: Table,
    rows: Sequence[Mapping[str, Any]],
    keys: Sequence[str],
    *,
    keep: Sequence[str] = (),
) -> None:
    """Insert or update ``rows`` by ``keys`` with as few statements as the rows allow.

    Rows may carry different sets of columns (only the columns a row carries are updated on
    conflict), so they are sent as one executemany per set of columns. When two rows target the
    same key, order matters and runs of rows are sent in their given order instead.
    """
    if not rows:
        return
    key_names = tuple(keys)
    batches = _column_runs(rows)
    if _distinct_keys(rows, key_names) == len(rows):
        # no key twice: the order between rows does not matter
        by_columns: dict[tuple[str, ...], list[Mapping[str, Any]]] = {}
        for columns, members in batches:
            by_columns.setdefault(columns, []).extend(members)
        batches = list(by_columns.items())
    dialect = connection.dialect
    for columns, members in batches:
        statement = _upsert_statement(dialect.name, table, key_names, columns, tuple(keep))
        _execute_many(connection, _driver_statement(dialect, statement, columns), members)


def _distinct_keys(rows: Sequence[Mapping[str, Any]], key_names: tuple[str, ...]) -> int:
    """How many different values of ``key_names`` the rows hold (a missing one is None)."""
    try:  # rows normally carry their key columns: read them without a loop in Python
        return len(set(map(operator.itemgetter(*key_names), rows)))
    except KeyError:
        return len({tuple([row.get(name) for name in key_names]) for row in rows})


def _insert(connection: Connection, table: Table, rows: Sequence[Mapping[str, Any]]) -> None:
    """Insert ``rows`` in their order, one executemany per run of rows with the same columns."""
    dialect = connection.dialect
    for columns, members in _column_runs(rows):
        statement = _driver_statement(dialect, _insert_statement(table), columns)
        _execute_many(connection, statement, members)


def _column_runs(
    rows: Sequence[Mapping[str, Any]],
) -> list[tuple[tuple[str, ...], list[Mapping[str, Any]]]]:
    """Consecutive rows that carry the same columns, in their order, with those columns sorted."""
    runs: list[tuple[tuple[str, ...], list[Mapping[str, Any]]]] = []
    sorted_columns = _ColumnSets()
    for row in rows:
        columns = sorted_columns[tuple(row)]
        if runs and runs[-1][0] == columns:
            runs[-1][1].append(row)
        else:
            runs.append((columns, [row]))
    return runs


class _ColumnSets(dict[tuple[str, ...], tuple[str, ...]]):
    """A row's column names (in its key order) → the same names sorted, sorted once per order."""

    def __missing__(self, names: tuple[str, ...]) -> tuple[str, ...]:
        ordered = self[names] = tuple(sorted(names))
        return ordered


@functools.lru_cache(maxsize=16)
def _insert_statement(table: Table) -> Any:
    return table.insert()


@dataclass(frozen=True)
class _DriverStatement:
    """A statement compiled once for one dialect and set of columns, sent as driver SQL.

    ``parameters`` lists, per placeholder, the parameter name, the row key it takes its
    value from and the bind processor of its column type: the same conversions (UTC
    datetimes, JSON text, decimals) SQLAlchemy applies, without its per-row bookkeeping.
    ``values_of`` reads a row's values in placeholder order, ``converters`` are the
    ``(position, processor)`` pairs of the placeholders that have a processor.
    """

    sql: str
    positional: bool
    parameters: tuple[tuple[str, str, Callable[[Any], Any] | None], ...]
    values_of: Callable[[Mapping[str, Any]], tuple[Any, ...]]
    converters: tuple[tuple[int, Callable[[Any], Any]], ...]


@functools.lru_cache(maxsize=256)
def _driver_statement(
    dialect: Dialect, statement: Any, columns: tuple[str, ...]
) -> _DriverStatement:
    """``statement`` compiled for ``dialect`` and ``columns`` (once: the result is kept)."""
    return _compile_driver_statement(dialect, statement, columns)


def _compile_driver_statement(
    dialect: Dialect, statement: Any, columns: tuple[str, ...]
) -> _DriverStatement:
    compiled = statement.compile(dialect=dialect, column_keys=list(columns))
    names = list(compiled.positiontup or ()) if compiled.positional else list(compiled.binds)
    parameters = []
    for name in names:
        bind = compiled.binds[name]
        processor = bind.type.dialect_impl(dialect).bind_processor(dialect)
        parameters.append((compiled.escaped_bind_names.get(name, name), bind.key, processor))
    converters = tuple((index, processor) for index, (_, _, processor) in enumerate(parameters)
                       if processor is not None)
    return _DriverStatement(compiled.string, compiled.positional, tuple(parameters),
                            _values_getter(tuple(key for _, key, _ in parameters)), converters)


def _values_getter(keys: tuple[str, ...]) -> Callable[[Mapping[str, Any]], tuple[Any, ...]]:
    """A function of a row returning its values of ``keys`` as a tuple."""
    if len(keys) > 1:
        return operator.itemgetter(*keys)
    return lambda row: tuple(row[key] for key in keys)  # itemgetter of one key is no tuple


def _execute_many(
    connection: Connection, statement: _DriverStatement, rows: Sequence[Mapping[str, Any]]
) -> None:
    """Run ``statement`` once per row (one executemany), converting values as SQLAlchemy would.

    Every value goes through its column's processor, ``None`` included: a ``None`` in a JSON
    column is stored as JSON ``null``, as SQLAlchemy stores it.
    """
    connection.exec_driver_sql(statement.sql, _driver_parameters(statement, rows))


def _driver_parameters(statement: _DriverStatement, rows: Sequence[Mapping[str, Any]]) -> Any:
    """The driver's parameters of ``statement`` for each row (values converted)."""
    if statement.positional:
        values_of, converters = statement.values_of, statement.converters
        params: list[Any] = []
        for row in rows:
            values = list(values_of(row))
            for index, processor in converters:
                values[index] = processor(values[index])
            params.append(tuple(values))
    else:
        params = [
            {name: row[key] if processor is None else processor(row[key])
             for name, key, processor in statement.parameters}
            for row in rows
        ]
    return params


@functools.lru_cache(maxsize=128)
def _upsert_statement(
    dialect: str, table: Table, keys: tuple[str, ...], columns: tuple[str, ...],
    keep: tuple[str, ...],
) -> Any:
    """The upsert statement for one table, key and set of columns (built once, reused)."""
    statement = _dialect_insert(dialect, table)
    updated = {
        name: statement.excluded[name]
        for name in columns
        if name not in keys and name not in keep and name != "id"
    }
    return statement.on_conflict_do_update(index_elements=list(keys), set_=updated)


def _insert_ignore(
    connection: Connection, table: Table, rows: Sequence[Mapping[str, Any]], keys: Sequence[str]
) -> None:
    statement = _dialect_insert(connection.dialect.name, table)
    statement = statement.on_conflict_do_nothing(index_elements=list(keys))
    connection.execute(statement, list(rows))
