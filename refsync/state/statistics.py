"""Fresh planner statistics on PostgreSQL while a sync writes many rows.

PostgreSQL chooses how to run a query from statistics that ``ANALYZE`` gathers (autovacuum runs
it now and then). A state store that grows fast, above all a first backfill into an empty
database, outruns them: planning the link lookups of a push with statistics that still describe
an empty table, PostgreSQL read every link of a system for each batch instead of using the
canonical-id index, so each batch got slower as the table grew (a quadratic backfill).

:class:`PlannerStatistics` counts the rows refsync's transactions write and runs ``ANALYZE`` on
the tables the sync reads by index whenever they have grown by as many rows as the statistics
last described (and by at least :attr:`PlannerStatistics.minimum_rows`): a handful of times in
a backfill of a million referrals, never in a run that changes a small share of a large store.
SQLite needs none of this: its planner's choices for these queries do not depend on statistics.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from refsync.logging import get_logger

__all__ = ["ANALYZED_TABLES", "PlannerStatistics"]

ANALYZED_TABLES = ("referral", "link", "outbox", "event")
"""The tables whose lookups a sync makes by index (page prefetches, push reads)."""

_log = get_logger("refsync.state")


@dataclass
class PlannerStatistics:
    """Runs ``ANALYZE`` on :data:`ANALYZED_TABLES` as the rows written outgrow the statistics.

    Args:
        engine: a PostgreSQL engine.
        minimum_rows: never analyse for fewer rows written than this.
    """

    engine: Engine
    minimum_rows: int = 5_000
    analyses: int = 0
    """How many times the statistics were refreshed (for tests and logs)."""
    _described: int | None = None
    _written: int = 0
    _disabled: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def wrote(self, rows: int) -> None:
        """Count ``rows`` committed; refresh the statistics if the tables outgrew them."""
        if rows <= 0 or self._disabled:
            return
        with self._lock:
            if self._described is None:
                self._described = self._rows_described()
            self._written += rows
            if self._written < max(self.minimum_rows, self._described):
                return
            self._described += self._written
            self._written = 0
        self.refresh()

    def refresh(self) -> None:
        """``ANALYZE`` the tables now (a failure, e.g. a user that does not own them, is logged
        once and turns the refreshes off; syncing goes on)."""
        try:
            with self.engine.begin() as connection:
                connection.exec_driver_sql(f"ANALYZE {', '.join(ANALYZED_TABLES)}")
        except SQLAlchemyError as exc:
            self._disabled = True
            _log.warning("could not refresh the state store's planner statistics; leaving it "
                         "to autovacuum", error=str(exc.orig if hasattr(exc, "orig") else exc))
            return
        self.analyses += 1

    def _rows_described(self) -> int:
        """Rows the current statistics say the tables hold (0 for never-analysed tables)."""
        names = ", ".join(f"to_regclass('{name}')" for name in ANALYZED_TABLES)
        with self.engine.connect() as connection:
            value = connection.exec_driver_sql(
                "SELECT COALESCE(SUM(GREATEST(reltuples, 0)), 0) FROM pg_class "
                f"WHERE oid IN ({names})"
            ).scalar()
        return int(value or 0)
