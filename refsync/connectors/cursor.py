"""The incremental read cursor: a small, typed, JSON-serialisable value.

Most sync tools lose data at the edges of an incremental read. refsync's cursor closes the
three usual gaps:

* **Ties at the boundary.** The lower bound is *inclusive* (``modstamp >= lower``), so records
  sharing the last modstamp are read again; the cursor remembers which versions it already
  yielded (``seen``: id → modstamp) and skips exactly those.
* **Records changing during the run.** The upper bound is capped at the run's start minus a
  settle lag, so a record modified while the run pages through the API is read next run,
  never half-read now.
* **Late indexing.** A configurable lookback re-reads a recent window; versions already yielded
  inside that window are remembered and skipped, late arrivals are returned once.

A :class:`Cursor` is immutable and only ever advanced by :class:`IncrementalWindow` for a
record that was actually yielded, so persisting the cursor of the last *committed* page can
never skip a record. Connectors with a positional API (a file offset, a paging token) may
also carry an opaque ``position``.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

__all__ = ["Cursor", "CursorPolicy", "IncrementalWindow"]


def _as_utc(value: datetime) -> datetime:
    """Return ``value`` as an aware UTC datetime (naive values are taken to be UTC)."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


@dataclass(frozen=True)
class CursorPolicy:
    """How far an incremental read looks back and how long it lets changes settle.

    Args:
        settle_lag: changes younger than this at the run's start are left for the next run.
        lookback: how far before the high-water mark each run starts re-reading, to catch
            records the remote system indexed late.
    """

    settle_lag: timedelta = timedelta(seconds=0)
    lookback: timedelta = timedelta(seconds=0)

    def __post_init__(self) -> None:
        if self.settle_lag < timedelta(0) or self.lookback < timedelta(0):
            raise ValueError("settle_lag and lookback must not be negative")


@dataclass(frozen=True)
class Cursor:
    """Where the next incremental read starts.

    Attributes:
        modstamp: the high-water mark: the greatest modstamp yielded so far (``None`` before
            the first record).
        seen: versions already yielded near the high-water mark (remote id → modstamp), used to
            skip re-read boundary records. Only versions at or after ``modstamp - lookback``
            are kept, so the map stays small.
        position: an opaque, connector-specific resume token (a file offset, a paging token),
            for sources read by position rather than by modstamp.
    """

    modstamp: datetime | None = None
    seen: Mapping[str, datetime] = field(default_factory=dict)
    position: str | None = None

    def lower_bound(self, policy: CursorPolicy) -> datetime | None:
        """Return the inclusive lower bound of the next read (``None``: from the beginning)."""
        if self.modstamp is None:
            return None
        return self.modstamp - policy.lookback

    def already_seen(self, modstamp: datetime, record_id: str) -> bool:
        """Return True when this exact version of the record was yielded before."""
        previous = self.seen.get(record_id)
        return previous is not None and previous == _as_utc(modstamp)

    def advanced(self, modstamp: datetime, record_id: str, policy: CursorPolicy) -> Cursor:
        """Return the cursor after yielding one record version.

        The high-water mark never moves backwards: a late-indexed record older than it is only
        remembered in ``seen``.
        """
        stamp = _as_utc(modstamp)
        high = stamp if self.modstamp is None or stamp > self.modstamp else self.modstamp
        keep_from = high - policy.lookback
        seen = {rid: ts for rid, ts in self.seen.items() if ts >= keep_from}
        if stamp >= keep_from:
            seen[record_id] = stamp
        return Cursor(modstamp=high, seen=seen, position=self.position)

    def with_position(self, position: str | None) -> Cursor:
        """Return a copy carrying a new opaque position token."""
        return Cursor(modstamp=self.modstamp, seen=dict(self.seen), position=position)

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict for the state store (stable key order)."""
        return {
            "modstamp": self.modstamp.isoformat() if self.modstamp is not None else None,
            "seen": {rid: ts.isoformat() for rid, ts in sorted(self.seen.items())},
            "position": self.position,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Cursor:
        """Rebuild a cursor from :meth:`to_dict` output.

        Raises:
            ValueError: when the dict is not a cursor (unknown keys or bad timestamps).
        """
        unknown = set(data) - {"modstamp", "seen", "position"}
        if unknown:
            raise ValueError(f"not a cursor: unexpected keys {sorted(unknown)}")
        raw_modstamp = data.get("modstamp")
        modstamp = _as_utc(datetime.fromisoformat(raw_modstamp)) if raw_modstamp else None
        seen = {
            str(rid): _as_utc(datetime.fromisoformat(ts))
            for rid, ts in dict(data.get("seen") or {}).items()
        }
        position = data.get("position")
        return cls(
            modstamp=modstamp, seen=seen, position=None if position is None else str(position)
        )


class IncrementalWindow:
    """The bounds of one incremental read and the cursor it has reached so far.

    A connector creates one per ``read()`` call, queries the remote system for
    ``lower <= modstamp <= upper`` in ascending ``(modstamp, id)`` order, passes every record
    through :meth:`accept`, and attaches :attr:`cursor` to each page it yields.

    Args:
        cursor: the cursor persisted by the previous run (``None`` for a full read).
        policy: settle lag and lookback.
        run_started_at: the run's start; the upper bound is this minus the settle lag.
    """

    def __init__(
        self, cursor: Cursor | None, policy: CursorPolicy, run_started_at: datetime
    ) -> None:
        start = cursor if cursor is not None else Cursor()
        self._policy = policy
        self.lower: datetime | None = start.lower_bound(policy)
        self.upper: datetime = _as_utc(run_started_at) - policy.settle_lag
        # Working state is mutable, so accepting a record costs O(log n) even when thousands
        # share one modstamp; :attr:`cursor` takes an immutable snapshot per page.
        self._modstamp = start.modstamp
        self._seen: dict[str, datetime] = dict(start.seen)
        self._expiry: list[tuple[datetime, str]] = [(ts, rid) for rid, ts in self._seen.items()]
        heapq.heapify(self._expiry)
        self._position = start.position
        self._snapshot: Cursor | None = start

    @property
    def cursor(self) -> Cursor:
        """The cursor after every record accepted so far."""
        if self._snapshot is None:
            self._snapshot = Cursor(
                modstamp=self._modstamp, seen=dict(self._seen), position=self._position
            )
        return self._snapshot

    def in_bounds(self, modstamp: datetime) -> bool:
        """Return True when ``modstamp`` lies inside ``[lower, upper]``."""
        stamp = _as_utc(modstamp)
        if self.lower is not None and stamp < self.lower:
            return False
        return stamp <= self.upper

    def accept(self, modstamp: datetime, record_id: str) -> bool:
        """Decide whether to yield a record version, advancing the cursor if so.

        Returns False for versions outside the window and for versions already yielded.
        Follows the same rules as :meth:`Cursor.advanced`.
        """
        stamp = _as_utc(modstamp)
        if not self.in_bounds(stamp) or self._seen.get(record_id) == stamp:
            return False
        if self._modstamp is None or stamp > self._modstamp:
            self._modstamp = stamp
        keep_from = self._modstamp - self._policy.lookback
        while self._expiry and self._expiry[0][0] < keep_from:
            old_stamp, old_id = heapq.heappop(self._expiry)
            if self._seen.get(old_id) == old_stamp:
                del self._seen[old_id]
        if stamp >= keep_from:
            self._seen[record_id] = stamp
            heapq.heappush(self._expiry, (stamp, record_id))
        self._snapshot = None
        return True

    def set_position(self, position: str | None) -> None:
        """Record a connector-specific resume token alongside the modstamp cursor."""
        self._position = position
        self._snapshot = None
