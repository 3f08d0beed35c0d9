"""Floor: the least work a backfill of refsync's design needs, timed with no refsync code in it.

A backfill reads PartnerStack pages, makes a referral of each lead, hashes it, commits each page
(the referral, its link, its two outbox rows and its event, in one transaction), then pushes the
outbox in batches through the two CRMs' client libraries and commits each batch's results (the
outbox rows marked sent, a link and an event per record, the run's counts). This script does
exactly that work, in the same order and with the same rows, but written by hand: fixed field
lists instead of the mapping engine, ``sqlite3`` on refsync's own schema and settings instead of
the state store's code, no matching rules and no HTTP (answers are made up and parsed)::

    python bench/floor.py                 # 100,000 referrals
    python bench/floor.py --n 20000 --json

What it prints is a bound, not a target: no implementation of this design in Python on this
machine can be faster than the floor's parts, because each part is the unavoidable minimum of
its step (SQLite writing the rows and their indexes, the client libraries encoding the
requests). Compare it with ``backfill.py`` at the same ``--n`` to see what refsync's own code
adds.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import shutil
import sqlite3
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))

# the shared harness sits next to this script
from _harness import machine, peak_rss_mb

from refsync.domain.ids import new_referral_id
from refsync.state import StateStore
from refsync.state.engine import create_state_engine

__all__ = ["main", "run_floor"]

PAGE = 250  # PartnerStack leads a page
BATCHES = {"salesforce": 200, "hubspot": 100}  # records a write call
STREAMS = {"salesforce": "leads", "hubspot": "contacts"}
PROVENANCE_FIELDS = ("custom.partnerstack_key", "partner_id", "email", "first_name",
                     "last_name", "company", "submitted_at", "status")
REFERRAL_COLUMNS = ("id", "partner_id", "email", "email_norm", "first_name", "last_name",
                    "company", "company_norm", "status", "submitted_at", "source_system",
                    "custom", "provenance", "version", "created_at", "updated_at")
INSERT_REFERRAL = (f"INSERT INTO referral ({', '.join(REFERRAL_COLUMNS)}) "
                   f"VALUES ({', '.join('?' * len(REFERRAL_COLUMNS))})")
INSERT_LINK = ("INSERT INTO link (system, object, external_id, entity, canonical_id, "
               "last_read_hash, last_written_hash, remote_modstamp, updated_at) "
               "VALUES (?, ?, ?, 'referral', ?, ?, ?, ?, ?)")
INSERT_OUTBOX = ("INSERT INTO outbox (referral_id, system, stream, payload, payload_hash, "
                 "state, attempts, next_attempt_at, created_at, updated_at) "
                 "VALUES (?, ?, ?, '{\"version\":1}', 'v1', 'pending', 0, ?, ?, ?)")
INSERT_EVENT = ("INSERT INTO event (at, run_id, kind, referral_id, system, stream, payload) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)")
DUE_WRITES = ("SELECT id, referral_id FROM outbox WHERE system = ? AND stream = ? "
              "AND state = 'pending' ORDER BY next_attempt_at, id LIMIT ?")
PUSHED_COLUMNS = "id, email, first_name, last_name, company, status, partner_id"


class Stopwatch:
    """Seconds spent in each named part of the work."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def part(self, name: str) -> Iterator[None]:
        """Time the block as part ``name``."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start


def partnerstack_pages(count: int) -> Iterator[bytes]:
    """``count`` leads as PartnerStack list answers, ``PAGE`` a page (the emulator's shape)."""
    for start in range(0, count, PAGE):
        items = [{
            "key": f"lead_{index:08d}", "email": f"prospect{index}@company{index % 997}.example",
            "name": f"Pat{index} Prospect{index}", "partner_key": f"part_{index % 300:08d}",
            "status": "submitted", "created_at": 1_760_000_000_000 + index,
            "updated_at": 1_760_000_000_000 + index,
            "fields": {"company": f"Company {index % 5000} Ltd"},
        } for index in range(start, min(count, start + PAGE))]
        yield orjson.dumps({"data": {"items": items, "has_more": start + PAGE < count}})


def digest(record: dict[str, Any]) -> str:
    """The content hash of a record (SHA-256 over its sorted items)."""
    return hashlib.sha256(orjson.dumps(sorted(record.items()))).hexdigest()


def referral_of(lead: dict[str, Any], now: str) -> tuple[Any, ...]:
    """The referral row of a lead, in ``REFERRAL_COLUMNS`` order."""
    email = lead["email"].strip()
    first, _, last = lead["name"].partition(" ")
    company = lead["fields"]["company"].strip()
    provenance = {name: {"system": "partnerstack", "at": now} for name in PROVENANCE_FIELDS}
    return (new_referral_id(), lead["partner_key"], email, email.lower(), first, last, company,
            company.lower().removesuffix(" ltd"), "submitted", now, "partnerstack",
            orjson.dumps({"partnerstack_key": lead["key"]}), orjson.dumps(provenance), 1, now,
            now)


def payload_of(system: str, row: tuple[Any, ...]) -> dict[str, Any]:
    """What the push writes to ``system`` for a referral row (``PUSHED_COLUMNS``)."""
    if system == "salesforce":
        return {"Refsync_Id__c": row[0], "Email": row[1], "FirstName": row[2],
                "LastName": row[3], "Company": row[4], "Status": "Open - Not Contacted",
                "LeadSource": "Partner Referral", "Partner_Key__c": row[6]}
    return {"refsync_id": row[0], "email": row[1], "firstname": row[2], "lastname": row[3],
            "company": row[4], "hs_lead_status": "NEW", "partner_key": row[6]}


def salesforce_call(payloads: list[dict[str, Any]], first_id: int) -> list[str]:
    """Encode an sObject Collections upsert as requests does, parse a made-up answer."""
    body = {"allOrNone": False,
            "records": [{"attributes": {"type": "Lead"}, **payload} for payload in payloads]}
    json.dumps(body).encode("utf-8")
    answer = json.dumps([{"id": f"00Q{first_id + n:015d}", "success": True, "created": True,
                          "errors": []} for n in range(len(payloads))])
    return [result["id"] for result in json.loads(answer)]


def hubspot_call(client: Any, payloads: list[dict[str, Any]], first_id: int) -> list[str]:
    """Encode a batch upsert as hubspot-api-client does, parse a made-up answer."""
    body = {"inputs": [{"idProperty": "refsync_id", "id": payload["refsync_id"],
                        "objectWriteTraceId": str(n), "properties": payload}
                       for n, payload in enumerate(payloads)]}
    json.dumps(client.sanitize_for_serialization(body)).encode("utf-8")
    answer = orjson.dumps({"status": "COMPLETE", "results": [
        {"id": str(first_id + n), "properties": payload, "new": True,
         "objectWriteTraceId": str(n)} for n, payload in enumerate(payloads)]})
    return [result["id"] for result in orjson.loads(answer)["results"]]


def pull(db: sqlite3.Connection, count: int, run_id: str, watch: Stopwatch) -> None:
    """Read every page and commit its referrals, links, outbox rows, events and cursor."""
    for page in partnerstack_pages(count):
        with watch.part("parse PartnerStack pages"):
            leads = orjson.loads(page)["data"]["items"]
        now = datetime.now(UTC).isoformat(sep=" ")
        with watch.part("canonical records and hashes"):
            referrals = [referral_of(lead, now) for lead in leads]
            hashes = [digest(lead) for lead in leads]
        with watch.part("store: match (2 queries a page)"):
            db.execute("BEGIN IMMEDIATE")
            keys = [lead["key"] for lead in leads]
            db.execute("SELECT id FROM link WHERE system = 'partnerstack' AND object = 'leads' "
                       f"AND external_id IN ({', '.join('?' * len(keys))})", keys).fetchall()
            emails = [row[3] for row in referrals]
            db.execute(f"SELECT id FROM referral WHERE email_norm IN "
                       f"({', '.join('?' * len(emails))})", emails).fetchall()
        with watch.part("store: referral rows"):
            db.executemany(INSERT_REFERRAL, referrals)
        with watch.part("store: link rows"):
            db.executemany(INSERT_LINK, [
                ("partnerstack", "leads", lead["key"], row[0], read_hash, None, now, now)
                for lead, row, read_hash in zip(leads, referrals, hashes, strict=True)])
        with watch.part("store: outbox rows"):
            db.executemany(INSERT_OUTBOX, [(row[0], system, stream, now, now, now)
                                           for row in referrals
                                           for system, stream in STREAMS.items()])
        with watch.part("store: event rows"):
            db.executemany(INSERT_EVENT, [
                (now, run_id, "created", row[0], "partnerstack", "leads",
                 orjson.dumps({"system": "partnerstack", "external_id": lead["key"],
                               "status": "submitted"}))
                for lead, row in zip(leads, referrals, strict=True)])
        with watch.part("store: commit"):
            db.execute("INSERT OR REPLACE INTO cursor (system, stream, value, run_id, "
                       "updated_at) VALUES ('partnerstack', 'leads', ?, ?, ?)",
                       (orjson.dumps({"updated_at": leads[-1]["updated_at"]}), run_id, now))
            db.execute("UPDATE run SET counts = ? WHERE id = ?", (b'{"created":1}', run_id))
            db.execute("COMMIT")


def push(db: sqlite3.Connection, run_id: str, watch: Stopwatch) -> None:
    """Drain the outbox of both CRMs, a batch a transaction."""
    from hubspot.crm.objects import ApiClient

    hubspot_client = ApiClient()
    for system, size in BATCHES.items():
        stream = STREAMS[system]
        while True:
            with watch.part("store: read the outbox and referrals"):
                due = db.execute(DUE_WRITES, (system, stream, size)).fetchall()
                ids = [referral_id for _, referral_id in due]
                rows = {row[0]: row for row in db.execute(
                    f"SELECT {PUSHED_COLUMNS} FROM referral WHERE id IN "
                    f"({', '.join('?' * len(ids))})", ids)}
            if not due:
                break
            with watch.part("CRM payloads and hashes"):
                payloads = [payload_of(system, rows[referral_id]) for referral_id in ids]
                hashes = [digest(payload) for payload in payloads]
            with watch.part(f"client library: {system}"):
                if system == "salesforce":
                    remote_ids = salesforce_call(payloads, due[0][0])
                else:
                    remote_ids = hubspot_call(hubspot_client, payloads, due[0][0])
            now = datetime.now(UTC).isoformat(sep=" ")
            with watch.part("store: outbox rows"):
                db.execute("BEGIN IMMEDIATE")
                db.executemany("UPDATE outbox SET state = 'sent', updated_at = ? WHERE id = ?",
                               [(now, outbox_id) for outbox_id, _ in due])
            with watch.part("store: link rows"):
                db.executemany(INSERT_LINK, [
                    (system, stream, remote_id, referral_id, None, written_hash, None, now)
                    for remote_id, referral_id, written_hash in zip(
                        remote_ids, ids, hashes, strict=True)])
            with watch.part("store: event rows"):
                db.executemany(INSERT_EVENT, [
                    (now, run_id, "written", referral_id, system, stream,
                     orjson.dumps({"remote_id": remote_id, "created": True}))
                    for remote_id, referral_id in zip(remote_ids, ids, strict=True)])
            with watch.part("store: commit"):
                db.execute("UPDATE run SET counts = ? WHERE id = ?", (b'{"written":1}', run_id))
                db.execute("COMMIT")


def run_floor(count: int) -> dict[str, Any]:
    """Run the floor's backfill of ``count`` referrals; its figures, JSON-ready."""
    folder = Path(tempfile.mkdtemp(prefix="refsync-floor-"))
    url = f"sqlite:///{folder / 'state.db'}"
    try:
        StateStore(url).close()  # refsync's schema, made by its migrations
        engine = create_state_engine(url)  # with refsync's SQLite settings
        raw = engine.raw_connection()
        db: sqlite3.Connection = raw.driver_connection  # type: ignore[assignment]
        run_id = "00000000-0000-7000-8000-000000000000"
        db.execute("INSERT INTO run (id, job, trigger, status, instance, started_at, counts) "
                   "VALUES (?, 'sync', 'manual', 'running', 'floor', ?, '{}')",
                   (run_id, datetime.now(UTC).isoformat(sep=" ")))
        watch = Stopwatch()
        gc.freeze()
        start = time.perf_counter()
        pull(db, count, run_id, watch)
        push(db, run_id, watch)
        elapsed = time.perf_counter() - start
        gc.unfreeze()
        rows = {table: db.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
                for table in ("referral", "link", "outbox", "event")}
        rows["outbox pending"] = db.execute(
            "SELECT count(*) FROM outbox WHERE state != 'sent'").fetchone()[0]
        raw.close()
        engine.dispose()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    store = sum(seconds for name, seconds in watch.seconds.items() if name.startswith("store"))
    return {
        "n": count, "seconds": round(elapsed, 2),
        "referrals_per_second": round(count / elapsed),
        "microseconds_per_referral": round(elapsed / count * 1e6, 1),
        "store_seconds": round(store, 2), "rows": rows,
        "parts": {name: round(seconds / count * 1e6, 1)
                  for name, seconds in sorted(watch.seconds.items(), key=lambda kv: -kv[1])},
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Run the floor and print its figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000, help="referrals")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    figures = run_floor(args.n)
    result = {"bench": "floor", **figures, "peak_rss_mb": peak_rss_mb(), "machine": machine()}
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"floor: {args.n:,} referrals, the design's own work only (no refsync code, no HTTP)")
    print(f"  {figures['seconds']:.2f} s, {figures['referrals_per_second']:,} referrals/s, "
          f"{figures['microseconds_per_referral']:.1f} µs a referral "
          f"(state store {figures['store_seconds'] / args.n * 1e6:.1f} µs)")
    for name, micros in figures["parts"].items():
        print(f"  {name:40} {micros:6.1f} µs a referral")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
