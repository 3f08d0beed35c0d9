"""PostgreSQL planner statistics kept fresh while a sync fills an empty state store."""

from __future__ import annotations

from typing import Any

import pytest
from postgres_server import PostgresServer

from refsync.domain.ids import new_referral_id
from refsync.state import StateStore

pytestmark = pytest.mark.postgres


def _rows_believed(store: StateStore, table: str) -> float:
    """Rows the planner believes ``table`` holds (-1: never analysed)."""
    with store.snapshot() as view:
        return float(view.connection.exec_driver_sql(
            f"SELECT reltuples FROM pg_class WHERE oid = to_regclass('{table}')").scalar_one())


def test_a_fast_filled_store_is_analysed_as_it_grows(
    postgres_server: PostgresServer,
) -> None:
    with StateStore(postgres_server.create_database()) as store:
        statistics = store.statistics
        assert statistics is not None
        assert _rows_believed(store, "link") < 0
        statistics.minimum_rows = 2_000
        ids = [new_referral_id() for _ in range(6_000)]
        for start in range(0, len(ids), 500):
            chunk = ids[start:start + 500]
            with store.transaction() as tx:  # as a backfill's pages and batches do
                tx.upsert_links([{"system": "partnerstack", "object": "leads",
                                  "external_id": f"lead_{start + n}", "canonical_id": referral}
                                 for n, referral in enumerate(chunk)])
                tx.upsert_links([{"system": "hubspot", "object": "contacts",
                                  "external_id": str(start + n), "canonical_id": referral}
                                 for n, referral in enumerate(chunk)])
        # 12,000 rows written: analysed at 2,000, 4,000 and 8,000 rows
        assert statistics.analyses == 3
        # the last analysis saw the table at 8,000 rows (before: "never analysed")
        assert _rows_believed(store, "link") == 8_000


def test_a_small_run_on_a_large_store_does_not_analyse(postgres_server: PostgresServer) -> None:
    with StateStore(postgres_server.create_database()) as store:
        statistics = store.statistics
        assert statistics is not None
        statistics.minimum_rows = 1_000
        with store.transaction() as tx:
            tx.upsert_links([{"system": "hubspot", "object": "contacts", "external_id": str(n),
                              "canonical_id": f"ref-{n}"} for n in range(3_000)])
        assert statistics.analyses == 1
        # the statistics now describe 3,000 rows: 2,999 more do not make them stale
        with store.transaction() as tx:
            tx.upsert_links([{"system": "hubspot", "object": "contacts", "external_id": str(n),
                              "canonical_id": f"ref-{n}"} for n in range(3_000, 5_999)])
        assert statistics.analyses == 1


def test_no_statistics_keeper_on_sqlite(tmp_path: Any) -> None:
    with StateStore(f"sqlite:///{tmp_path / 'state.db'}") as store:
        assert store.statistics is None
