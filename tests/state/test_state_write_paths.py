"""The state store's bulk write and read paths keep SQLAlchemy's stored formats exactly."""

from __future__ import annotations

import sqlite3
import uuid
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import select

from refsync.domain.ids import new_referral_id
from refsync.state import StateStore
from refsync.state.store import event_table, link_table, outbox_table, referral_table

REFERRAL_ID = "0f8fad5b-d9cb-469f-a165-70867728950e"


def _rows() -> dict[str, list[dict[str, Any]]]:
    plus_two = timezone(timedelta(hours=2))
    return {
        "referral": [{
            "id": REFERRAL_ID, "email": "pat@acme.example", "amount": Decimal("1200.50"),
            "submitted_at": datetime(2024, 1, 5, 12, 0, 0, 123456, tzinfo=plus_two),
            "custom": {"tier": "gold", "tags": ["a", "b"]},
            "provenance": {"email": {"system": "partnerstack", "at": "2024-01-05T10:00:00+00:00"}},
        }],
        "event": [
            {"kind": "created", "referral_id": REFERRAL_ID, "payload": {"note": "é", "n": None},
             "at": datetime(2024, 1, 5, 10, 0, tzinfo=UTC)},
            {"kind": "noted", "referral_id": REFERRAL_ID, "payload": None},
        ],
        "outbox": [{"referral_id": REFERRAL_ID, "system": "salesforce", "stream": "leads",
                    "payload": {"version": 1}, "payload_hash": "v1",
                    "next_attempt_at": datetime(2024, 1, 5, 10, 0, 0, 7, tzinfo=UTC)}],
        "link": [{"system": "salesforce", "object": "Lead", "external_id": "00Q1",
                  "canonical_id": REFERRAL_ID, "last_read_hash": "h1",
                  "remote_modstamp": datetime(2024, 1, 5, 10, 0)}],
    }


def _write(store: StateStore) -> None:
    rows = _rows()
    with store.transaction() as tx:
        tx.upsert_referrals(rows["referral"])
        tx.append_events(rows["event"])
        tx.enqueue(rows["outbox"])
        tx.upsert_links(rows["link"])
        tx.upsert_links([{**rows["link"][0], "last_written_hash": "w1"}])


def test_rows_written_in_bulk_read_back_as_written(state_url: str) -> None:
    with StateStore(state_url) as store:
        _write(store)
        with store.snapshot() as view:
            referral = view.referrals([REFERRAL_ID])[REFERRAL_ID]
            slim = view.referrals([REFERRAL_ID], provenance=False)[REFERRAL_ID]
            link = view.links_by_canonical("salesforce", "Lead", [REFERRAL_ID])[REFERRAL_ID]
            due = view.due_writes("salesforce", "leads", limit=10,
                                  now=datetime(2030, 1, 1, tzinfo=UTC))
            full_due = view.due_outbox("salesforce", "leads", limit=10,
                                       now=datetime(2030, 1, 1, tzinfo=UTC))
            # the same rows through SQLAlchemy's own result processing
            core = dict(view.connection.execute(
                select(referral_table).where(referral_table.c.id == REFERRAL_ID)
            ).mappings().one())
        events = store.events_of(REFERRAL_ID)
    assert referral == core
    assert referral["submitted_at"] == datetime(2024, 1, 5, 10, 0, 0, 123456, tzinfo=UTC)
    assert referral["submitted_at"].tzinfo is not None
    assert referral["amount"] == Decimal("1200.50")
    assert referral["custom"] == {"tier": "gold", "tags": ["a", "b"]}
    assert "provenance" not in slim
    assert slim == {k: v for k, v in referral.items() if k != "provenance"}
    assert link["last_read_hash"] == "h1" and link["last_written_hash"] == "w1"
    assert link["remote_modstamp"] == datetime(2024, 1, 5, 10, 0, tzinfo=UTC)
    assert [e["kind"] for e in events] == ["created", "noted"]
    assert events[0]["payload"] == {"note": "é", "n": None}
    assert events[1]["payload"] is None  # JSON null, as SQLAlchemy stores None
    assert due == [{"id": full_due[0]["id"], "referral_id": REFERRAL_ID, "attempts": 0}]
    assert full_due[0]["next_attempt_at"] == datetime(2024, 1, 5, 10, 0, 0, 7, tzinfo=UTC)


def test_sqlite_text_formats_match_sqlalchemy(tmp_path: Path) -> None:
    """Bulk writes store the text SQLAlchemy's own insert would store, byte for byte."""
    fast, core = tmp_path / "fast.db", tmp_path / "core.db"
    with StateStore(f"sqlite:///{fast}") as store:
        _write(store)
    with StateStore(f"sqlite:///{core}") as store, store.transaction() as tx:
        rows = _rows()
        defaults = {"created_at": datetime(2024, 2, 1, tzinfo=UTC),
                    "updated_at": datetime(2024, 2, 1, tzinfo=UTC)}
        tx.connection.execute(referral_table.insert(), [{**defaults, "status": "submitted",
                                                         "version": 1, **rows["referral"][0]}])
        tx.connection.execute(event_table.insert(), [rows["event"][0]])
        tx.connection.execute(outbox_table.insert(), [{**defaults, **rows["outbox"][0]}])
        tx.connection.execute(link_table.insert(), [{
            **rows["link"][0], "last_written_hash": "w1", "updated_at": defaults["updated_at"]}])

    def dump(path: Path, query: str) -> list[tuple[Any, ...]]:
        connection = sqlite3.connect(path)
        try:
            return connection.execute(query).fetchall()
        finally:
            connection.close()

    for query in (
        "SELECT id, amount, submitted_at, custom, provenance FROM referral",
        "SELECT at, payload FROM event WHERE kind = 'created'",
        "SELECT payload, next_attempt_at FROM outbox",
        "SELECT last_read_hash, last_written_hash, remote_modstamp FROM link",
    ):
        assert dump(fast, query) == dump(core, query), query


def test_new_referral_ids_are_uuids_that_sort_by_creation() -> None:
    first = new_referral_id()
    later = [new_referral_id() for _ in range(50)]
    for text in [first, *later]:
        parsed = uuid.UUID(text)
        assert str(parsed) == text
        assert parsed.version == 7 and parsed.variant == uuid.RFC_4122
    assert len({first, *later}) == 51
    # the leading 48 bits are the creation time in milliseconds
    stamp = uuid.UUID(later[-1]).int >> 80
    assert abs(stamp - datetime.now(UTC).timestamp() * 1000) < 60_000
    assert all(uuid.UUID(text).int >> 80 >= uuid.UUID(first).int >> 80 for text in later)


def test_links_of_a_referral_are_found_through_the_canonical_index(tmp_path: Path) -> None:
    """``refsync referrals show`` reads a referral's links by index, not by a scan of all links."""
    from sqlalchemy import event

    with StateStore(f"sqlite:///{tmp_path / 'state.db'}") as store:
        with store.transaction() as tx:
            tx.upsert_links([{"system": "hubspot", "object": "contacts", "external_id": str(n),
                              "canonical_id": f"ref-{n}"} for n in range(3)])
        statements: list[tuple[str, Any]] = []

        def remember(conn: Any, cursor: Any, sql: str, params: Any, *_: Any) -> None:
            if sql.lstrip().upper().startswith("SELECT") and "FROM link" in sql:
                statements.append((sql, params))

        engine = store.engine
        event.listen(engine, "before_cursor_execute", remember)
        try:
            links = store.links_of("ref-1")
        finally:
            event.remove(engine, "before_cursor_execute", remember)
        assert [link["external_id"] for link in links] == ["1"]
        (sql, params), = statements
        connection = sqlite3.connect(tmp_path / "state.db")
        try:
            plan = " ".join(str(row) for row in
                            connection.execute(f"EXPLAIN QUERY PLAN {sql}", params))
        finally:
            connection.close()
        assert "ix_link_canonical" in plan, plan
