"""StateStore behaviour on both backends: schema, round trips, transactions, leases."""

from __future__ import annotations

import multiprocessing
import os
import stat
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import inspect

from refsync.errors import LeaseLostError, StateError, StoreLockedError
from refsync.state import StateStore

TABLES = {"referral", "partner", "link", "cursor", "event", "outbox", "quarantine", "run", "lease",
          "mapping_layout"}
T0 = datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)


def test_migrations_create_every_table_from_empty(state_url: str) -> None:
    store = StateStore(state_url, migrate=False)
    assert store.schema_revision() is None
    applied = store.migrate()
    assert applied == ["0001", "0002", "0003", "0004"]
    assert store.schema_revision() == "0004"
    assert set(inspect(store.engine).get_table_names()) >= TABLES
    assert store.migrate() == []  # idempotent
    store.close()


def test_round_trip_of_every_table(state_url: str) -> None:
    with StateStore(state_url) as store:
        run_id = store.start_run(trigger="manual", instance="test-1")
        with store.transaction() as tx:
            tx.upsert_referrals([{
                "id": "r-1", "partner_id": "p-1", "email": "Alice@Acme.com",
                "email_norm": "alice@acme.com", "first_name": "Zoë", "status": "accepted",
                "amount": Decimal("1234.50"), "currency": "EUR", "submitted_at": T0,
                "custom": {"industry": "retail"}, "provenance": {"email": {"system": "ps"}},
            }])
            tx.upsert_partners([{"id": "p-1", "name": "Partner One", "notify_on": ["won"]}])
            tx.upsert_links([{
                "system": "salesforce", "object": "Lead", "external_id": "00Q1",
                "canonical_id": "r-1", "last_written_hash": "abc", "remote_modstamp": T0,
            }])
            tx.set_cursor("salesforce", "leads", {"modstamp": T0.isoformat(), "ids": ["00Q1"]},
                          run_id)
            tx.append_events([{"kind": "created", "referral_id": "r-1", "run_id": run_id,
                               "payload": {"why": "new"}}])
            tx.enqueue([{"referral_id": "r-1", "system": "salesforce", "stream": "leads",
                         "payload": {"Email": "alice@acme.com"}, "payload_hash": "h1"}])
            tx.quarantine([{"system": "salesforce", "stream": "leads", "direction": "out",
                            "referral_id": "r-1", "payload": {"Email": "x"},
                            "error_code": "INVALID_EMAIL_ADDRESS", "message": "bad email",
                            "run_id": run_id}])
        store.finish_run(run_id, status="succeeded", counts={"read": 1})
        lease = store.acquire_lease("job:sync", "test-1", timedelta(seconds=30), now=T0)

        referral = store.get_referral("r-1")
        assert referral is not None
        assert referral["first_name"] == "Zoë"
        assert referral["amount"] == Decimal("1234.50")
        assert referral["submitted_at"] == T0
        assert referral["custom"] == {"industry": "retail"}
        link = store.find_links("salesforce", "Lead", ["00Q1"])["00Q1"]
        assert link["canonical_id"] == "r-1"
        assert link["remote_modstamp"] == T0
        assert store.get_cursor("salesforce", "leads") == {"modstamp": T0.isoformat(),
                                                          "ids": ["00Q1"]}
        assert [e["kind"] for e in store.events_of("r-1")] == ["created"]
        due = store.due_outbox("salesforce", "leads", limit=10)
        assert [row["payload"] for row in due] == [{"Email": "alice@acme.com"}]
        quarantined = store.list_quarantine(run_id=run_id[:8])
        assert quarantined[0]["error_code"] == "INVALID_EMAIL_ADDRESS"
        run = store.get_run(run_id[:8])
        assert run is not None and run["status"] == "succeeded" and run["counts"] == {"read": 1}
        assert lease is not None and lease.epoch == 1
        assert store.counts()["partners"] == 1


def test_a_rolled_back_page_writes_nothing(state_url: str) -> None:
    with StateStore(state_url) as store:
        with pytest.raises(RuntimeError), store.transaction() as tx:
            tx.upsert_referrals([{"id": "r-1"}])
            tx.set_cursor("ps", "leads", {"after": "k1"})
            raise RuntimeError("crash mid-page")
        assert store.get_referral("r-1") is None
        assert store.get_cursor("ps", "leads") is None


def test_enqueue_coalesces_writes_of_one_referral(state_url: str) -> None:
    with StateStore(state_url) as store:
        for version in range(3):
            with store.transaction() as tx:
                tx.enqueue([{"referral_id": "r-1", "system": "hubspot", "stream": "contacts",
                             "payload": {"v": version}, "payload_hash": f"h{version}"}])
        due = store.due_outbox("hubspot", "contacts", limit=10)
        assert len(due) == 1 and due[0]["payload"] == {"v": 2}
        with store.transaction() as tx:
            tx.finish_outbox([due[0]["id"]])
        assert store.due_outbox("hubspot", "contacts", limit=10) == []


def test_lease_take_over_after_expiry_fences_the_old_holder(state_url: str) -> None:
    ttl = timedelta(seconds=10)
    with StateStore(state_url) as store:
        first = store.acquire_lease("job:sync", "daemon-a", ttl, now=T0)
        assert first is not None
        later = T0 + timedelta(seconds=5)
        assert store.acquire_lease("job:sync", "daemon-b", ttl, now=later) is None
        renewed = store.acquire_lease("job:sync", "daemon-a", ttl, now=T0 + timedelta(seconds=6))
        assert renewed is not None and renewed.epoch == first.epoch
        second = store.acquire_lease("job:sync", "daemon-b", ttl, now=T0 + timedelta(seconds=30))
        assert second is not None and second.epoch == first.epoch + 1
        with pytest.raises(LeaseLostError), store.transaction(lease=first) as tx:
            tx.set_cursor("ps", "leads", {"after": "stale"})
        assert store.get_cursor("ps", "leads") is None
        with pytest.raises(LeaseLostError):
            store.renew_lease(first, ttl)
        with store.transaction(lease=second) as tx:
            tx.set_cursor("ps", "leads", {"after": "fresh"})
        assert store.get_cursor("ps", "leads") == {"after": "fresh"}
        store.release_lease(second)
        third = store.acquire_lease("job:sync", "daemon-a", ttl, now=T0 + timedelta(seconds=31))
        assert third is not None and third.epoch == second.epoch + 1


def test_concurrent_writers_queue_instead_of_failing(state_url: str) -> None:
    with StateStore(state_url) as store:
        failures: list[BaseException] = []

        def writer(worker: int) -> None:
            try:
                for index in range(40):
                    with store.transaction() as tx:
                        tx.upsert_referrals([{"id": f"w{worker}-{index}"}])
                        tx.append_events([{"kind": "created", "referral_id": f"w{worker}-{index}"}])
                        tx.set_cursor("ps", f"stream-{worker}", {"n": index})
            except BaseException as exc:
                failures.append(exc)

        threads = [threading.Thread(target=writer, args=(n,)) for n in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert failures == []
        assert store.counts()["referrals"] == 240


def _process_writer(url: str, worker: int) -> None:
    with StateStore(url, migrate=False) as store:
        for index in range(25):
            with store.transaction() as tx:
                tx.upsert_referrals([{"id": f"p{worker}-{index}"}])


def test_concurrent_writer_processes_on_sqlite(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'state.db'}"
    StateStore(url).close()
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_process_writer, args=(url, n)) for n in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    assert [worker.exitcode for worker in workers] == [0, 0, 0, 0]
    with StateStore(url) as store:
        assert store.counts()["referrals"] == 100


def test_sqlite_database_is_private_to_its_owner(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "state.db"
    StateStore(f"sqlite:///{path}").close()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_second_daemon_on_one_sqlite_file_is_refused(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'state.db'}"
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time\n"
         "from refsync.state import StateStore\n"
         f"s = StateStore({url!r}); s.acquire_daemon_lock(); print('locked', flush=True)\n"
         "time.sleep(60)\n"],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        with StateStore(url) as store, pytest.raises(StoreLockedError) as refused:
            store.acquire_daemon_lock()
        assert f"pid {holder.pid}" in refused.value.message
        assert "PostgreSQL" in refused.value.message
    finally:
        holder.kill()
        holder.wait()
    with StateStore(url) as store:
        store.acquire_daemon_lock()  # the kernel released the dead holder's lock


def test_a_file_that_is_not_a_database_is_one_error_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    path.write_text("notes, not a database\n")
    with pytest.raises(StateError) as refused:
        StateStore(f"sqlite:///{path}")
    assert refused.value.message.startswith(f"{path} is not a SQLite database"), refused.value
    assert "point state.url at refsync's state database" in refused.value.message
    assert path.read_text() == "notes, not a database\n"  # left as it was


def test_a_second_daemon_reaching_the_sqlite_file_through_a_link_is_refused(
    tmp_path: Path,
) -> None:
    (tmp_path / "real").mkdir()
    database = tmp_path / "real" / "state.db"
    linked = tmp_path / "linked.db"
    linked.symlink_to(database)
    with StateStore(f"sqlite:///{database}") as first:
        first.acquire_daemon_lock()
        with StateStore(f"sqlite:///{linked}") as second, \
                pytest.raises(StoreLockedError) as refused:
            second.acquire_daemon_lock()
    assert f"pid {os.getpid()}" in refused.value.message
    assert str(database) in refused.value.message


@pytest.mark.postgres
def test_several_daemons_may_share_postgresql(postgres_server: object) -> None:
    from postgres_server import PostgresServer

    assert isinstance(postgres_server, PostgresServer)
    url = postgres_server.create_database()
    with StateStore(url) as first, StateStore(url) as second:
        first.acquire_daemon_lock()
        second.acquire_daemon_lock()
        assert first.acquire_lease("job", "a", timedelta(seconds=30)) is not None
        assert second.acquire_lease("job", "b", timedelta(seconds=30)) is None


def test_partners_are_counted_from_the_referrals_they_submitted(state_url: str) -> None:
    with StateStore(state_url) as store:
        with store.transaction() as tx:
            tx.upsert_referrals([
                {"id": "r-1", "partner_id": "p-1", "status": "submitted"},
                {"id": "r-2", "partner_id": "p-1", "status": "submitted"},
                {"id": "r-3", "partner_id": "p-2", "status": "submitted"},
                {"id": "r-4", "partner_id": None, "status": "submitted"},
            ])
        counts = store.counts()
    assert counts["referrals"] == 4
    assert counts["partners"] == 2


def test_a_mapping_layout_is_kept_once_per_fingerprint(state_url: str) -> None:
    with StateStore(state_url) as store:
        written = [["Email", "text"], ["Refsync_Id__c", "text"], ["Status", "status"]]
        read_only = [["AnnualRevenue", "decimal"]]
        with store.transaction() as tx:
            tx.remember_layout("salesforce", "Lead", "0badcafe", written, read_only)
            tx.remember_layout("salesforce", "Lead", "0badcafe", [["other", ""]], [])  # kept
        with store.snapshot() as view:
            assert view.layout("salesforce", "Lead", "0badcafe") == (written, read_only)
            assert view.layout("salesforce", "Lead", "5eed1e55") is None
            assert view.layout("hubspot", "contacts", "0badcafe") is None
