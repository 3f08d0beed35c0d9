"""The sync lease: which daemon may run a sync now, kept alive by a heartbeat.

Every run of every job writes the same cursors and drains the same outbox, so one lease
(``sync``) guards them all: whichever daemon holds it runs, the others wait for it (up to the
tick's misfire grace) or skip the tick. A heartbeat thread renews the lease every third of its
time to live; when a renewal finds the lease taken over (this daemon was paused longer than the
TTL), the run is told to stop, and the epoch fence makes sure its next checkpoint writes nothing.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

from refsync.errors import LeaseLostError, StateError
from refsync.logging import get_logger
from refsync.state import LeaseToken, StateStore
from refsync.state.outage import driver_words
from refsync.state.tables import utcnow

__all__ = [
    "SYNC_LEASE",
    "Heartbeat",
    "abandon_previous_holders_runs",
    "hold_sync_lease",
    "take_sync_lease",
    "wait_for_lease",
]

SYNC_LEASE = "sync"

_log = get_logger("refsync.daemon")


def take_sync_lease(store: StateStore, holder: str, ttl: timedelta) -> LeaseToken | None:
    """Take the sync lease once; None when another process holds it.

    On SQLite the database file's lock already keeps every other process out, so a lease left
    by a process that died is taken at once instead of after its expiry.
    """
    return store.acquire_lease(SYNC_LEASE, holder, ttl, force=store.backend == "sqlite")


def wait_for_lease(
    store: StateStore,
    holder: str,
    ttl: timedelta,
    *,
    patience: timedelta,
    stopping: threading.Event,
) -> LeaseToken | None:
    """Take the sync lease, retrying for up to ``patience``; None if it stayed busy.

    Returns early with None when ``stopping`` is set.
    """
    poll = min(max(patience.total_seconds() / 10, 0.05), 1.0)
    deadline = time.monotonic() + patience.total_seconds()
    while not stopping.is_set():
        token = take_sync_lease(store, holder, ttl)
        if token is not None or time.monotonic() >= deadline:
            return token
        stopping.wait(poll)
    return None


class Heartbeat:
    """Renews a held lease in the background until stopped or lost.

    Args:
        store: the state store holding the lease.
        token: the lease as taken.
        ttl: how long each renewal extends it.
        on_lost: called once if a renewal finds the lease taken over.
    """

    def __init__(
        self,
        store: StateStore,
        token: LeaseToken,
        ttl: timedelta,
        on_lost: Callable[[], None] = lambda: None,
    ) -> None:
        self.store = store
        self.token = token
        self.ttl = ttl
        self.lost = False
        self._on_lost = on_lost
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="refsync-lease", daemon=True)
        self._since = utcnow()

    def __enter__(self) -> Heartbeat:
        self._since = utcnow()
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def _beat(self) -> None:
        interval = self.ttl.total_seconds() / 3
        while not self._stop.wait(interval):
            try:
                self.token = self.store.renew_lease(self.token, self.ttl)
            except LeaseLostError as exc:
                self._log().error("lease lost; stopping the run", error=exc.message)
                self.lost = True
                self._on_lost()
                return
            except Exception as exc:  # a heartbeat must never die silently
                # e.g. the database is briefly unreachable: keep trying; if another daemon takes
                # the lease over meanwhile, the epoch fence stops this run's writes
                self._log().warning("could not renew the lease", error=driver_words(exc))

    def _log(self) -> Any:
        """The logger of a line about the lease: bound to the run the lease guards (its
        holder's latest run in this store, unless that ended before the heartbeat started),
        since the heartbeat's thread does not share the run's log context."""
        run = self.store.latest_run(self.token.holder)
        if run is None or (run.ended_at is not None and run.ended_at < self._since):
            return _log
        return _log.bind(run_id=run.id)


def abandon_previous_holders_runs(store: StateStore, token: LeaseToken) -> int:
    """After a take-over, mark the runs the previous holder left ``running`` as abandoned."""
    if not token.taken_from:
        return 0
    return store.abandon_runs(
        token.taken_from,
        reason=f"{token.taken_from} stopped renewing its lease; {token.holder} took over")


@contextmanager
def hold_sync_lease(
    store: StateStore, holder: str, ttl: timedelta, *, say: Callable[[str], None] = _log.info
) -> Iterator[LeaseToken]:
    """Hold the sync lease for a one-off command (``refsync sync``, ``refsync retry``).

    When the holder has stopped renewing it (a killed process), wait for it to expire and take
    it over, marking the dead process's unfinished runs abandoned.

    Raises:
        StateError: a live daemon is syncing this database right now.
    """
    token = take_sync_lease(store, holder, ttl)
    if token is None:
        current = store.get_lease(SYNC_LEASE) or {}
        now = utcnow()
        beat, expires = current.get("heartbeat_at"), current.get("expires_at")
        silent_after = ttl / 3 + timedelta(seconds=2)
        silent = beat is not None and now - beat > silent_after
        if silent and expires is not None:
            wait = max(expires - now, timedelta(0)) + timedelta(milliseconds=200)
            say(f"the sync lease is held by {current.get('holder')}, which stopped renewing it; "
                f"waiting {wait.total_seconds():.0f} s for it to expire")
            token = wait_for_lease(store, holder, ttl, patience=wait + timedelta(seconds=1),
                                   stopping=threading.Event())
        if token is None:
            killed = ""
            if beat is not None and not silent:
                wait = max((beat + silent_after - now).total_seconds(), 1)
                killed = (f"; if that process was killed, run this again in {wait:.0f} s: a "
                          "lease whose holder stopped renewing it is taken over")
            raise StateError(
                f"{current.get('holder') or 'another process'} is syncing this database right "
                "now; try again when its run has finished (`refsync runs` shows it), or stop "
                f"that daemon{killed}"
            )
    abandoned = abandon_previous_holders_runs(store, token)
    if token.taken_from:
        _log.warning("took the sync lease over from a process that stopped renewing it",
                     previous=token.taken_from, abandoned_runs=abandoned)
    heartbeat = Heartbeat(store, token, ttl)
    try:
        with heartbeat:
            yield token
    finally:
        store.release_lease(heartbeat.token)
