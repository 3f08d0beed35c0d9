"""The sync engine end to end between two file systems (a PRM and a CRM), on both backends."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from refsync.cli import cli
from refsync.state import StateStore
from tests.sync.file_workspace import (
    CONFIG,
    customers_in_crm,
    engine_for,
    read_jsonl,
    with_crm_settings,
    write_jsonl,
)

INITECH = {"Id": "001A", "SystemModstamp": "2026-01-01T10:00:00Z", "Name": "Initech LLC",
           "Website": "https://initech.example", "Type": "Customer - Direct"}
"""An existing customer in the CRM."""


def test_referrals_flow_prm_to_crm_and_status_flows_back(workspace: Path) -> None:
    engine, store = engine_for(workspace)
    report = engine.run()
    assert report.status == "succeeded", report
    counts = report.counts
    assert counts["created"] == 3 and counts["duplicates"] == 1
    crm = read_jsonl(workspace / "crm" / "Lead.jsonl")
    assert sorted(row["Email"] for row in crm) == ["alice@acme.com", "bob@globex.com"]
    assert all(row["Refsync_Id"] for row in crm)
    prm = {row["id"]: row for row in read_jsonl(workspace / "prm" / "leads.jsonl")}
    assert len(prm) == 3, "write-back must update the partner's lead, not add one"
    assert prm["L3"]["status"] == "dup"
    assert "already referred by partner p-ana" in prm["L3"]["reason"]
    assert {prm[k]["refsync_id"] for k in prm} == {r["Refsync_Id"] for r in crm} | {
        prm["L3"]["refsync_id"]}

    # nothing changed: a second run writes nothing
    again = engine.run()
    assert again.counts["written"] == 0 and again.counts["created"] == 0, again.counts

    # sales works the lead in the CRM: the status flows back to the partner
    alice = next(row for row in crm if row["Email"] == "alice@acme.com")
    alice["Status"] = "Working"
    alice["SystemModstamp"] = datetime.now(UTC).isoformat()
    write_jsonl(workspace / "crm" / "Lead.jsonl", crm)
    third = engine.run()
    assert third.counts["updated"] == 1 and third.counts["written"] == 1, third.counts
    prm = {row["id"]: row for row in read_jsonl(workspace / "prm" / "leads.jsonl")}
    assert prm["L1"]["status"] == "working"
    events = [e["kind"] for e in store.events_of(alice["Refsync_Id"])]
    assert "status_changed" in events and "created" in events
    store.close()


def _synced_with_a_refused_crm_write(workspace: Path) -> tuple[Any, StateStore, str]:
    """The engine and store after a first sync, with the first CRM lead's referral as if the
    CRM had refused its last write (quarantined, not written), and that referral's id."""
    from sqlalchemy import update

    from refsync.state.store import link_table

    engine, store = engine_for(workspace)
    assert engine.run().status == "succeeded"
    referral_id = read_jsonl(workspace / "crm" / "Lead.jsonl")[0]["Refsync_Id"]
    with store.transaction() as tx:
        tx.connection.execute(update(link_table).where(
            link_table.c.canonical_id == referral_id, link_table.c.system == "crm",
        ).values(last_written_hash=None))
        tx.quarantine([{"run_id": "earlier", "system": "crm", "stream": "leads",
                        "direction": "out", "referral_id": referral_id,
                        "payload": {"data": {}}, "error_code": "TEST",
                        "message": "refused earlier"}])
    return engine, store, referral_id


def test_a_retry_that_fails_is_recorded_failed_not_left_running(workspace: Path) -> None:
    from refsync.errors import FatalConnectorError

    engine, store, referral_id = _synced_with_a_refused_crm_write(workspace)
    crm = next(b for b in engine.bindings if b.system == "crm")

    def refuse(*_args: Any, **_kwargs: Any) -> Any:
        raise FatalConnectorError("the CRM refused the credentials", system="crm")

    crm.connector.write = refuse  # type: ignore[method-assign]
    report = engine.retry(None)
    assert report.status == "failed" and "refused the credentials" in (report.error or "")
    run = store.list_runs(job="retry")[0]
    assert run["status"] == "failed" and run["counts"]["replayed"] == 1, run
    # the write went back to the outbox: the next sync makes it
    with store.snapshot() as view:
        assert [row["referral_id"] for row in view.pending_outbox("crm", "leads")] == \
            [referral_id]
    store.close()


def test_a_retry_whose_lease_was_taken_over_writes_nothing(workspace: Path) -> None:
    from datetime import timedelta

    engine, store, _ = _synced_with_a_refused_crm_write(workspace)
    stale = store.acquire_lease("sync", "retrying-process", timedelta(seconds=30))
    assert stale is not None
    # another process took the lease over (this one was paused past its expiry)
    assert store.acquire_lease("sync", "daemon", timedelta(seconds=30), force=True)
    report = engine.retry(None, lease=stale)
    assert report.status == "interrupted" and "no longer held" in (report.error or "")
    assert "the page or batch in progress was not written (what was committed before it " \
        "stays)" in (report.error or "")
    # the replay was rolled back: the record is still quarantined, to be retried
    assert len(store.list_quarantine()) == 1
    store.close()


def test_a_re_read_referral_meets_the_same_rules_as_in_a_sync(
    workspace: Path, state_url: str
) -> None:
    customers_in_crm(workspace, CONFIG.format(url=state_url), INITECH)
    engine, store = engine_for(workspace)
    assert engine.run().status == "succeeded"
    # a lead that could not be read earlier (say, a mapping since fixed) is replayed
    with store.transaction() as tx:
        tx.quarantine([{"run_id": "earlier", "system": "prm", "stream": "leads",
                        "direction": "in", "external_id": "L9",
                        "payload": {"id": "L9", "modstamp": "2026-01-03T10:00:00+00:00",
                                    "data": {"id": "L9", "partner": "p-ana",
                                             "email": "peter@initech.example",
                                             "company": "Initech", "status": "new"}},
                        "error_code": "TEST", "message": "could not map earlier"}])
    report = engine.retry(None)
    assert report.counts["rejected"] == 1, report.counts
    (rejected,) = store.list_referrals(status="rejected")
    assert "Initech LLC is already a customer" in rejected["status_reason"]
    assert all(row["Email"] != "peter@initech.example"
               for row in read_jsonl(workspace / "crm" / "Lead.jsonl"))
    store.close()


def test_a_plan_pages_through_the_outbox_backlog(
    workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import refsync.sync.engine as engine_module

    engine, store = engine_for(workspace)
    whole = engine.plan()
    monkeypatch.setattr(engine_module, "PLAN_PAGE", 1)
    paged = engine.plan()
    def summary(report: Any) -> list[tuple[str, str, str]]:
        # each plan makes its own referral ids (and rolls them back): compare what is written
        return sorted((w.system, w.action, str(w.payload.get("Email", w.payload.get("email"))))
                      for w in report.writes)

    planned = summary(whole)
    assert len(planned) == 5, planned  # 2 referrals to the CRM, 3 leads written back
    assert summary(paged) == planned
    store.close()


def test_two_leads_of_one_partner_at_one_company_stay_two_referrals(
    workspace: Path, state_url: str
) -> None:
    """Company keys match a partner's second contact at a company to the first one's referral;
    it is a second submission, not the same record: merging would write one lead over the
    other and lose the second prospect."""
    (workspace / "refsync.yaml").write_text(CONFIG.format(url=state_url).replace(
        "matching: {keys: [email]}", "matching: {keys: [email, company_name]}"))
    write_jsonl(workspace / "prm" / "leads.jsonl", [
        {"id": "K1", "updated_at": "2026-01-01T10:00:00Z", "partner": "p-ana",
         "email": "francoise@kestrel.example", "company": "Kestrel Energy Ltd", "status": "new"},
        {"id": "K2", "updated_at": "2026-01-01T11:00:00Z", "partner": "p-ana",
         "email": "chloe@kestrel-energy.example", "company": "Kestrel Energy GmbH",
         "status": "new"},
        # the partner submits Françoise again: the same person, a duplicate
        {"id": "K3", "updated_at": "2026-01-01T12:00:00Z", "partner": "p-ana",
         "email": "Francoise@Kestrel.example", "company": "Kestrel Energy", "status": "new"},
    ])
    engine, store = engine_for(workspace)
    report = engine.run()
    assert report.counts["created"] == 3 and report.counts["matched"] == 0, report.counts
    prm = {row["id"]: row for row in read_jsonl(workspace / "prm" / "leads.jsonl")}
    # each lead keeps its own prospect and its own referral
    assert prm["K1"]["email"] == "francoise@kestrel.example"
    assert prm["K2"]["email"] == "chloe@kestrel-energy.example"
    assert len({prm[k]["refsync_id"] for k in prm}) == 3
    assert prm["K3"]["status"] == "dup"
    assert "email francoise@kestrel.example equals referral" in prm["K3"]["reason"]
    crm = read_jsonl(workspace / "crm" / "Lead.jsonl")
    assert sorted(row["Email"] for row in crm) == [
        "chloe@kestrel-energy.example", "francoise@kestrel.example"]
    store.close()


def test_a_spent_quota_while_reading_customers_holds_back_partner_leads_only(
    workspace: Path, state_url: str
) -> None:
    from refsync.errors import QuotaExhaustedError

    customers_in_crm(workspace, CONFIG.format(url=state_url), INITECH)
    engine, store = engine_for(workspace)
    crm = next(b for b in engine.bindings if b.system == "crm")
    reads = crm.connector.read

    def spent(object_name: str, *args: Any, **kwargs: Any) -> Any:
        if object_name == "Account":
            raise QuotaExhaustedError("daily API allowance spent", system="crm")
        return reads(object_name, *args, **kwargs)

    crm.connector.read = spent  # type: ignore[method-assign]
    report = engine.run()
    # partner leads cannot be judged against customers: none is created, and the run says why
    assert report.status == "partial" and report.counts["created"] == 0, report
    assert "existing customers could not be read" in (report.error or "")
    assert "prm.leads waits for the next run" in (report.error or "")
    assert report.stopped_streams == ["prm.leads"]
    assert store.list_runs(limit=1)[0]["error"] == report.error
    # once the allowance is back, the next run takes them
    crm.connector.read = reads  # type: ignore[method-assign]
    assert engine.run().counts["created"] == 3
    store.close()


def test_a_partial_run_records_why(workspace: Path) -> None:
    from refsync.errors import RetryableError

    engine, store = engine_for(workspace)
    crm = next(b for b in engine.bindings if b.system == "crm")

    def unavailable(*_args: Any, **_kwargs: Any) -> Any:
        raise RetryableError("503 service unavailable", system="crm")

    crm.connector.write = unavailable  # type: ignore[method-assign]
    report = engine.run()
    assert report.status == "partial" and report.counts["deferred"] == 2, report.counts
    assert "2 write(s) deferred after remote failures" in (report.error or "")
    (run,) = store.list_runs()
    assert run["status"] == "partial" and run["error"] == report.error
    # nothing is quarantined, but `refsync errors` does not pretend all is well
    listed = CliRunner().invoke(cli, ["errors", "-c", str(workspace / "refsync.yaml")])
    assert "2 write(s) wait in the outbox" in listed.output, listed.output
    store.close()


def test_a_run_error_is_stored_without_secrets_and_every_line_names_the_run(
    workspace: Path,
) -> None:
    from structlog.contextvars import merge_contextvars
    from structlog.testing import capture_logs

    from refsync.errors import FatalConnectorError
    from refsync.logging import get_logger, register_secret

    register_secret("tok-9f8e7d6c5b4a")
    engine, store = engine_for(workspace)
    crm = next(b for b in engine.bindings if b.system == "crm")

    def refuse(*_args: Any, **_kwargs: Any) -> Any:
        # a connector's own line, and a vendor answer that echoes the credential
        get_logger("refsync.connectors").info("calling the CRM")
        raise FatalConnectorError("token tok-9f8e7d6c5b4a lacks a scope", system="crm")

    crm.connector.write = refuse  # type: ignore[method-assign]
    with capture_logs(processors=[merge_contextvars]) as logs:
        report = engine.run()
    assert report.status == "failed"
    assert "tok-9f8e7d6c5b4a" not in (report.error or "") and "lacks a scope" in report.error
    assert "tok-9f8e7d6c5b4a" not in str(store.list_runs(limit=1)[0]["error"])
    (line,) = [entry for entry in logs if entry["event"] == "calling the CRM"]
    assert line["run_id"] == report.run_id
    store.close()


def test_an_account_made_a_customer_a_moment_ago_already_rejects_its_leads(
    workspace: Path, state_url: str
) -> None:
    """The settle lag keeps incremental reads from passing changes indexed late; the customer
    lookup keeps no cursor, so it reads every account as it is now."""
    customers_in_crm(workspace, with_crm_settings(CONFIG.format(url=state_url),
                                                  "settle_lag_seconds: 600"), {
        "Id": "001A", "SystemModstamp": datetime.now(UTC).isoformat(), "Name": "Globex Corp",
        "Website": "https://globex.com", "Type": "Customer - Direct"})
    engine, store = engine_for(workspace)
    report = engine.run()
    assert report.counts["rejected"] == 1, report.counts
    (rejected,) = store.list_referrals(status="rejected")
    assert rejected["email"] == "bob@globex.com"
    store.close()


def test_an_interrupted_run_records_why_it_stopped(workspace: Path) -> None:
    engine, store = engine_for(workspace)
    engine.should_stop = lambda: "the daemon is shutting down (SIGTERM or Ctrl-C)"
    report = engine.run()
    assert report.status == "interrupted"
    assert "stopped: the daemon is shutting down" in (report.error or "")
    assert store.list_runs(limit=1)[0]["error"] == report.error
    store.close()


def test_sync_says_why_a_run_is_partial(workspace: Path, state_url: str) -> None:
    (workspace / "refsync.yaml").write_text(
        with_crm_settings(CONFIG.format(url=state_url), "required_fields: [Company]"))
    leads = read_jsonl(workspace / "prm" / "leads.jsonl")
    leads[1]["company"] = ""
    write_jsonl(workspace / "prm" / "leads.jsonl", leads)
    result = CliRunner().invoke(cli, ["sync", "-c", str(workspace / "refsync.yaml")])
    assert result.exit_code == 4, result.output
    assert "why: 1 record(s) quarantined" in result.output
    assert "error:" not in result.output


def test_with_json_log_lines_every_line_on_stderr_is_json(workspace: Path,
                                                          state_url: str) -> None:
    # a log collector reading standard error gets the CLI's own messages as events too
    (workspace / "refsync.yaml").write_text(
        with_crm_settings(CONFIG.format(url=state_url), "required_fields: [Company]"))
    leads = read_jsonl(workspace / "prm" / "leads.jsonl")
    leads[1]["company"] = ""
    write_jsonl(workspace / "prm" / "leads.jsonl", leads)
    config = str(workspace / "refsync.yaml")

    def refsync(*args: str) -> tuple[int, list[dict[str, Any]]]:
        done = subprocess.run([sys.executable, "-m", "refsync", "--log-format", "json", *args],
                              capture_output=True, text=True, check=False, timeout=120)
        return done.returncode, [json.loads(line) for line in done.stderr.splitlines()]

    code, lines = refsync("sync", "-c", config)
    assert code == 4
    why = [line for line in lines if line["event"] == "run partial"]
    assert why and why[0]["why"].startswith("1 record(s) quarantined")
    assert why[0]["level"] == "warning" and why[0]["run_id"]
    code, lines = refsync("errors", "--run", "ffffffff", "-c", config)
    assert code == 2
    assert lines[-1]["event"] == "command failed"
    assert lines[-1]["error"].startswith("no run matches 'ffffffff'")
    # a config that cannot be loaded (how a daemon fails to start) is reported in JSON too
    (workspace / "refsync.yaml").write_text(
        CONFIG.format(url=state_url).replace("directory: prm", "directory: '${PRM_DIR_UNSET}'"))
    code, lines = refsync("sync", "-c", config)
    assert code == 2
    (problem,) = [line for line in lines if line["event"] == "config problem"]
    assert problem["message"].startswith("environment variable PRM_DIR_UNSET is not set")
    assert problem["file"].endswith("refsync.yaml") and problem["line"] == 7 and problem["fix"]
    assert lines[-1]["event"] == "command failed"
    assert lines[-1]["error"] == "1 problem found; nothing was changed."


def test_a_run_counts_only_the_pages_it_committed(
    workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A page whose transaction fails is rolled back, and so are its counts: the run's
    record says what is in the state store, not what was attempted."""
    from sqlalchemy.exc import OperationalError

    from refsync.state import StateTransaction

    engine, store = engine_for(workspace)

    def disk_full(*_args: Any, **_kwargs: Any) -> None:
        raise OperationalError("UPDATE cursor", {}, Exception("database or disk is full"))

    monkeypatch.setattr(StateTransaction, "set_cursor", disk_full)
    with pytest.raises(OperationalError):
        engine.run()
    (run,) = store.list_runs()
    assert run["status"] == "failed"
    assert store.counts()["referrals"] == 0
    assert run["counts"]["read"] == 0 and run["counts"]["created"] == 0, run["counts"]
    store.close()


def test_a_running_run_shows_the_counts_of_its_committed_pages(workspace: Path) -> None:
    """`refsync runs` shows a run's progress while it goes on (and a killed run keeps it)."""
    engine, store = engine_for(workspace)
    seen: list[dict[str, Any]] = []
    engine.progress = lambda label, read: seen.append(store.list_runs()[0])
    report = engine.run()
    assert report.status == "succeeded"
    assert seen and seen[0]["status"] == "running"
    assert seen[0]["counts"]["read"] == report.counts["read"] > 0
    assert seen[0]["counts"]["created"] == report.counts["created"]
    store.close()


def test_a_run_sets_the_older_heap_aside_from_the_garbage_collector(workspace: Path) -> None:
    """Objects older than the run are frozen while it goes on (the collector then skips them)
    and unfrozen when it ends, so they are collected as usual afterwards."""
    import gc

    engine, store = engine_for(workspace)
    frozen_during: list[int] = []
    engine.progress = lambda label, read: frozen_during.append(gc.get_freeze_count())
    gc.unfreeze()
    assert engine.run().status == "succeeded"
    assert frozen_during and min(frozen_during) > 0
    assert gc.get_freeze_count() == 0
    # objects frozen by someone else stay frozen: the run leaves the freezing to them
    gc.freeze()
    held = gc.get_freeze_count()
    try:
        assert engine.run().status == "succeeded"
        assert gc.get_freeze_count() > held // 2  # still frozen (a few may have died)
    finally:
        gc.unfreeze()
    store.close()


def test_a_retry_records_how_many_records_it_replayed_with_its_replay(workspace: Path) -> None:
    """A retry killed while it pushes (after its replay committed) still says it replayed."""
    engine, store, _ = _synced_with_a_refused_crm_write(workspace)
    crm = next(b for b in engine.bindings if b.system == "crm")
    write = crm.connector.write
    seen_while_pushing: list[dict[str, Any]] = []

    def watched(*args: Any, **kwargs: Any) -> Any:
        seen_while_pushing.append(store.list_runs(job="retry")[0])
        return write(*args, **kwargs)

    crm.connector.write = watched  # type: ignore[method-assign]
    report = engine.retry(None)
    assert report.status == "succeeded" and report.counts["replayed"] == 1
    (during,) = seen_while_pushing
    assert during["status"] == "running" and during["counts"]["replayed"] == 1, during
    store.close()
