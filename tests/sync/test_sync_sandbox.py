"""The engine against the sandbox emulators with the real client libraries, on both backends."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from refsync.config import load_config
from refsync.sandbox.config import sandbox_config
from refsync.sandbox.runner import RunningSandbox, start_sandbox
from refsync.state import StateStore
from refsync.sync.engine import SyncEngine
from refsync.sync.wiring import build_engine


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[RunningSandbox]:
    with start_sandbox(seed="demo", ports=dict.fromkeys(
            ("salesforce", "hubspot", "partnerstack"), 0), workdir=tmp_path / "tls") as running:
        yield running


def engine_for(sandbox: RunningSandbox, tmp_path: Path, state_url: str,
               salesforce_mapping: str | None = None) -> tuple[SyncEngine, StateStore]:
    streams = {}
    if salesforce_mapping is not None:
        (tmp_path / "lead.yaml").write_text(salesforce_mapping)
        streams = {"salesforce.leads": {"mapping": "lead.yaml"}}
    text = sandbox_config(sandbox.urls, sandbox.ca_bundle, state_url, comment="engine test",
                          instance="refsync-test", streams=streams)
    path = tmp_path / "refsync.yaml"
    path.write_text(text)
    loaded = load_config(path)
    store = StateStore(loaded.config.state.url)
    return build_engine(loaded, store), store


def calls(sandbox: RunningSandbox) -> dict[str, Counter[str]]:
    return {system: Counter(emulator.calls.snapshot()["by_route"])
            for system, emulator in sandbox.emulators.items()}


def test_referrals_land_once_and_an_idle_sync_only_reads(
    sandbox: RunningSandbox, tmp_path: Path, state_url: str
) -> None:
    engine, store = engine_for(sandbox, tmp_path, state_url)
    first = engine.run()
    assert first.counts["created"] > 0
    engine.run()  # our own writes come back as echoes
    before = calls(sandbox)
    idle = engine.run()
    after = calls(sandbox)
    assert idle.counts["written"] == 0 and idle.counts["created"] == 0, idle.counts
    # one read call per stream, plus (Salesforce) one for the customer Accounts and one for
    # the open Opportunities; no write
    expected = {"salesforce": 3, "hubspot": 1, "partnerstack": 1}
    for system, reads in expected.items():
        made = after[system] - before[system]
        assert sum(made.values()) == reads, (system, made)
        (route,) = made
        assert "upsert" not in route and not route.startswith(("PATCH", "PUT")), route
    # every referral that went to Salesforce is there exactly once, with its refsync id
    leads = [r for r in sandbox.emulators["salesforce"].records("Lead") if r.get("Refsync_Id__c")]
    ids = [r["Refsync_Id__c"] for r in leads]
    assert len(ids) == len(set(ids)) == store.link_counts()["salesforce"]
    store.close()


def _partner_key(sandbox: RunningSandbox) -> str:
    return str(sandbox.emulators["partnerstack"].records("partnerships")[0]["key"])


def test_a_record_refused_by_salesforce_is_quarantined_and_retried_after_a_fix(
    sandbox: RunningSandbox, tmp_path: Path, state_url: str
) -> None:
    url = sandbox.urls["partnerstack"] + "/api/v2/leads"
    created = requests.post(url, auth=("pk_sandbox_refsync", "sk_sandbox_refsync"), json={
        "partner_key": _partner_key(sandbox), "email": "nocompany@example.org",
        "name": "Nora Nocompany", "status": "new"}, timeout=10)
    assert created.status_code < 300, created.text
    from refsync.mapping import default_mapping_path

    shipped = default_mapping_path("salesforce-lead").read_text()
    broken = shipped.replace('company:     {remote: Company, default: "(unknown)",',
                             "company:     {remote: Company,")
    assert broken != shipped
    engine, store = engine_for(sandbox, tmp_path, state_url, salesforce_mapping=broken)
    report = engine.run()
    assert report.status == "partial"
    quarantined = [q for q in store.list_quarantine() if q["system"] == "salesforce"]
    assert [q["error_code"] for q in quarantined] == ["REQUIRED_FIELD_MISSING"]
    written = report.counts["streams"]["salesforce.leads"]["written"]
    assert written > 0, "the rest of the batch is written"

    fixed, store2 = engine_for(sandbox, tmp_path, state_url, salesforce_mapping=shipped)
    retried = fixed.retry([q["id"] for q in quarantined])
    assert retried.counts["written"] == 1 and retried.status == "succeeded", retried.counts
    leads = [r for r in sandbox.emulators["salesforce"].records("Lead")
             if r.get("Email") == "nocompany@example.org"]
    assert len(leads) == 1 and leads[0]["Company"] == "(unknown)"
    assert [q for q in store2.list_quarantine() if q["system"] == "salesforce"] == []
    store.close()
    store2.close()




def test_plan_on_a_changed_mapping_lists_field_changes_and_writes_nothing(
    sandbox: RunningSandbox, tmp_path: Path, state_url: str
) -> None:
    from refsync.mapping import default_mapping_path

    shipped = default_mapping_path("salesforce-lead").read_text()
    engine, store = engine_for(sandbox, tmp_path, state_url, salesforce_mapping=shipped)
    engine.run()
    engine.run()
    store.close()
    changed = shipped.replace(
        'company:     {remote: Company, default: "(unknown)", transform: [strip, {truncate: 255}]}',
        'company:     {remote: Company, rule: remote_wins, transform: [strip, upper]}')
    assert changed != shipped
    planner, store = engine_for(sandbox, tmp_path, state_url, salesforce_mapping=changed)
    referrals_before = store.list_referrals(limit=10_000)
    counts_before = store.counts()
    before = calls(sandbox)
    plan = planner.plan(full=True)
    after = calls(sandbox)
    company_changes = [c for c in plan.changes if c.field == "company"]
    assert company_changes, plan.changes
    assert all(c.new == str(c.old).strip().upper() for c in company_changes)
    assert all("remote_wins" in c.reason for c in company_changes)
    assert any(w.system in ("partnerstack", "hubspot") for w in plan.writes)
    for system in after:
        made = after[system] - before[system]
        writes = [route for route in made if route.startswith(("PATCH", "PUT", "DELETE"))
                  or (route.startswith("POST") and not any(
                      read in route for read in ("search", "token", "batch/read")))]
        assert writes == [], made
    assert store.counts() == counts_before
    assert store.list_referrals(limit=10_000) == referrals_before
    store.close()


def test_duplicates_and_existing_customers_are_decided_and_told_to_partners(
    sandbox: RunningSandbox, tmp_path: Path, state_url: str
) -> None:
    engine, store = engine_for(sandbox, tmp_path, state_url)
    report = engine.run()
    assert report.counts["duplicates"] >= 1 and report.counts["rejected"] >= 1
    leads = sandbox.emulators["partnerstack"].records("leads")
    reasons = {lead["status"]: [] for lead in leads}
    for lead in leads:
        reasons[lead["status"]].append((lead.get("fields") or {}).get("refsync_reason") or "")
    assert any("already referred by partner" in r for r in reasons["duplicate"])
    assert any("is already a customer" in r for r in reasons["rejected"])
    customers = {a["Name"] for a in sandbox.emulators["salesforce"].records("Account")
                 if a.get("Type") == "Customer - Direct"}
    rejected = store.list_referrals(status="rejected")
    assert {r["company"] for r in rejected if "already a customer" in (r["status_reason"] or "")} \
        <= customers
    # neither duplicates nor rejected customers become CRM leads
    emails = {str(r.get("Email") or "").lower()
              for r in sandbox.emulators["salesforce"].records("Lead") if r.get("Refsync_Id__c")}
    customer_emails = {r["email"] for r in rejected
                       if "already a customer" in (r["status_reason"] or "")}
    assert customer_emails and not customer_emails & emails
    store.close()
