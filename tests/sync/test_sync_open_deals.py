"""The open-deal rule: a referral of a prospect the CRM is already selling to is rejected.

End to end through the sandbox emulators with the real clients: open opportunities are read
from Salesforce (``IsClosed`` derived from the stage by the emulator, as Salesforce does), the
referral is rejected with its reason and a ``rejected`` event, nothing reaches the CRMs, and the
partner sees the reason on the PartnerStack lead.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from open_deal_leads import by_email, partner_leads, partnership

from refsync.config import load_config
from refsync.sandbox.config import sandbox_config
from refsync.sandbox.runner import RunningSandbox, start_sandbox
from refsync.state import StateStore
from refsync.sync.engine import RunReport
from refsync.sync.wiring import build_engine

PARTNER = "part_opendeals"

SEED: dict[str, Any] = {
    "partnerstack": {
        "partnerships": [partnership(PARTNER)],
        "leads": partner_leads(PARTNER),
    },
    "salesforce": {
        "Account": [
            {"Id": "001OPEN00000000001", "Name": "Acme Robotics GmbH", "Type": "Prospect",
             "Website": "https://www.acmerobotics.example"},
            {"Id": "001OPEN00000000002", "Name": "Borealis Foods", "Type": "Prospect",
             "Website": "https://borealisfoods.example"},
            {"Id": "001OPEN00000000003", "Name": "Cobalt Energy", "Type": "Customer - Direct",
             "Website": "https://cobaltenergy.example"},
        ],
        "Opportunity": [
            {"AccountId": "001OPEN00000000001", "Name": "Acme Robotics - New Business",
             "StageName": "Qualification", "CloseDate": "2026-06-30"},
            {"AccountId": "001OPEN00000000002", "Name": "Borealis Foods - Pilot",
             "StageName": "Closed Won", "CloseDate": "2025-10-01"},
            {"AccountId": "001OPEN00000000002", "Name": "Borealis Foods - Expansion",
             "StageName": "Closed Lost", "CloseDate": "2025-12-01"},
            {"AccountId": "001OPEN00000000003", "Name": "Cobalt Energy - Upsell",
             "StageName": "Prospecting", "CloseDate": "2026-05-01"},
            {"Name": "Dunmore Labs - Inbound", "StageName": "Prospecting",
             "CloseDate": "2026-05-01"},
        ],
    },
}


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[RunningSandbox]:
    with start_sandbox(seed=SEED, ports=dict.fromkeys(
            ("salesforce", "hubspot", "partnerstack"), 0), workdir=tmp_path / "tls") as running:
        yield running


def sync(sandbox: RunningSandbox, tmp_path: Path, state_url: str,
         **rules: Any) -> tuple[RunReport, StateStore]:
    """One run with the sandbox configuration, its rules changed by ``rules``."""
    text = sandbox_config(sandbox.urls, sandbox.ca_bundle, state_url, comment="open deals test",
                          instance="refsync-test")
    path = tmp_path / "refsync.yaml"
    path.write_text(text)
    loaded = load_config(path)
    assert loaded.config.rules.open_opportunities_from is not None, "the sandbox reads deals"
    if rules:
        config = loaded.config.model_copy(update={
            "rules": loaded.config.rules.model_copy(update=rules)})
        loaded.config = config
    store = StateStore(loaded.config.state.url)
    return build_engine(loaded, store).run(), store



def crm_emails(sandbox: RunningSandbox) -> set[str]:
    """Emails of the referrals refsync wrote to Salesforce Leads and HubSpot contacts."""
    leads = {str(r.get("Email")).lower() for r in sandbox.emulators["salesforce"].records("Lead")
             if r.get("Refsync_Id__c")}
    contacts = {str((r.get("properties") or {}).get("email")).lower()
                for r in sandbox.emulators["hubspot"].records("contacts")}
    return leads | contacts


def partner_view(sandbox: RunningSandbox) -> dict[str, tuple[str, str]]:
    """Each PartnerStack lead's status and the reason refsync wrote for the partner."""
    return {lead["key"]: (lead["status"], (lead.get("fields") or {}).get("refsync_reason") or "")
            for lead in sandbox.emulators["partnerstack"].records("leads")}


def test_a_prospect_with_an_open_opportunity_is_rejected_and_the_partner_told(
    sandbox: RunningSandbox, tmp_path: Path, state_url: str
) -> None:
    acme_deal = next(r["Id"] for r in sandbox.emulators["salesforce"].records("Opportunity")
                     if r["Name"] == "Acme Robotics - New Business")
    report, store = sync(sandbox, tmp_path, state_url)
    assert report.status == "succeeded", report
    assert report.counts["created"] == 5 and report.counts["rejected"] == 3, report.counts
    referrals = by_email(store)

    domain = referrals["ana@acmerobotics.example"]
    assert domain["status"] == "rejected"
    assert domain["status_reason"] == (
        f"Acme Robotics GmbH has an open opportunity (Acme Robotics - New Business, CRM record "
        f"{acme_deal}; email domain acmerobotics.example)")
    company = referrals["bo.berg@gmail.com"]
    assert company["status"] == "rejected"
    assert company["status_reason"].endswith(f"{acme_deal}; company name acme robotics)")
    (event,) = [e for e in store.events_of(domain["id"]) if e["kind"] == "rejected"]
    assert event["payload"] == {
        "rule": "open_opportunity", "account": "Acme Robotics GmbH",
        "opportunity": "Acme Robotics - New Business", "opportunity_id": acme_deal,
        "match": "email domain acmerobotics.example", "reason": domain["status_reason"]}

    customer = referrals["di@cobaltenergy.example"]
    assert customer["status"] == "rejected"
    assert "is already a customer" in customer["status_reason"]
    assert [e["payload"]["rule"] for e in store.events_of(customer["id"])
            if e["kind"] == "rejected"] == ["existing_customer"]

    for email in ("cy@borealisfoods.example", "ed@dunmore.example"):
        assert referrals[email]["status"] == "submitted", referrals[email]
        assert referrals[email]["status_reason"] is None

    # rejected referrals reach no CRM; the others reach both
    assert crm_emails(sandbox) == {"cy@borealisfoods.example", "ed@dunmore.example"}
    # the partner sees the decision and why on the PartnerStack lead
    seen = partner_view(sandbox)
    assert seen["lead_domain"] == ("rejected", domain["status_reason"])
    assert seen["lead_company"] == ("rejected", company["status_reason"])
    assert seen["lead_customer"][0] == "rejected"
    assert seen["lead_closed"] == ("new", "")
    store.close()


def test_with_the_rule_off_open_deals_reject_nothing(
    sandbox: RunningSandbox, tmp_path: Path, state_url: str
) -> None:
    report, store = sync(sandbox, tmp_path, state_url, reject_open_opportunities=False)
    assert report.counts["rejected"] == 1, report.counts  # the customer only
    referrals = by_email(store)
    for email in ("ana@acmerobotics.example", "bo.berg@gmail.com"):
        assert referrals[email]["status"] == "submitted", referrals[email]
    assert "is already a customer" in referrals["di@cobaltenergy.example"]["status_reason"]
    assert {"ana@acmerobotics.example", "bo.berg@gmail.com"} <= crm_emails(sandbox)
    assert partner_view(sandbox)["lead_domain"] == ("new", "")
    store.close()


def test_open_deals_are_enforced_without_the_customer_rule(
    sandbox: RunningSandbox, tmp_path: Path, state_url: str
) -> None:
    report, store = sync(sandbox, tmp_path, state_url, reject_existing_customers=False)
    assert report.counts["rejected"] == 3, report.counts
    referrals = by_email(store)
    # the customer's open upsell is now what rejects the referral
    assert referrals["di@cobaltenergy.example"]["status_reason"].startswith(
        "Cobalt Energy has an open opportunity (Cobalt Energy - Upsell, CRM record 006")
    assert referrals["ana@acmerobotics.example"]["status"] == "rejected"
    assert referrals["cy@borealisfoods.example"]["status"] == "submitted"
    store.close()


def test_without_an_opportunity_source_the_rule_is_not_enforced(
    sandbox: RunningSandbox, tmp_path: Path, state_url: str
) -> None:
    report, store = sync(sandbox, tmp_path, state_url, open_opportunities_from=None)
    assert report.counts["rejected"] == 1, report.counts
    assert by_email(store)["ana@acmerobotics.example"]["status"] == "submitted"
    store.close()
