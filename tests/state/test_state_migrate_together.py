"""Daemons starting together on an empty PostgreSQL database both come up."""

from __future__ import annotations

import threading

import pytest
from postgres_server import PostgresServer

from refsync.state import StateStore


@pytest.mark.postgres
def test_stores_migrating_one_empty_database_at_once_all_succeed(
    postgres_server: PostgresServer,
) -> None:
    for _ in range(3):  # the race was lost about one start in three
        url = postgres_server.create_database()
        failures = _open_together(url, stores=4)
        assert failures == []
        with StateStore(url) as store:
            assert store.schema_revision() is not None


def _open_together(url: str, *, stores: int) -> list[BaseException]:
    """Open ``stores`` state stores on ``url`` at the same moment; return what they raised."""
    start = threading.Barrier(stores)
    failures: list[BaseException] = []

    def open_store() -> None:
        start.wait()
        try:
            StateStore(url).close()
        except Exception as exc:
            failures.append(exc)

    threads = [threading.Thread(target=open_store, daemon=True) for _ in range(stores)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    stuck = [thread for thread in threads if thread.is_alive()]
    if stuck:
        failures.append(TimeoutError(f"{len(stuck)} store(s) still opening after 60 s"))
    return failures
