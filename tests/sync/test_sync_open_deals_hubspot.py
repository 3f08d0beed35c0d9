"""The open-deal rule with HubSpot as the CRM: deals reach their companies through associations.

End to end through the sandbox emulators with the real clients: customers are HubSpot companies
whose lifecycle stage is ``customer``, open deals are deals whose ``hs_is_closed`` is not true
(calculated from the stage by the emulator, as HubSpot does), and each open deal's companies are
read with one associations batch read. A referral matching such a company is rejected with its
reason; one matching a company whose deals are all closed is not.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from open_deal_leads import by_email, partner_leads, partnership

from refsync.config import OpportunitySourceConfig, load_config
from refsync.connectors.base import ConnectorContext
from refsync.connectors.hubspot import HubSpotConnector, HubSpotSettings
from refsync.connectors.usage import ApiCallCounter
from refsync.errors import RecordError
from refsync.sandbox.config import sandbox_config
from refsync.sandbox.hubspot.portal import ASSOCIATIONS_PER_RESULT
from refsync.sandbox.runner import RunningSandbox, start_sandbox
from refsync.state import StateStore
from refsync.sync.engine import RunReport
from refsync.sync.wiring import build_engine
from refsync.testing import ManualClock

PARTNER = "part_hsdeals"
ASSOCIATION_READ = "POST /crm/v4/associations/{from_type}/{to_type}/batch/read"

SEED: dict[str, Any] = {
    "partnerstack": {
        "partnerships": [partnership(PARTNER)],
        "leads": [
            *partner_leads(PARTNER),
            # the second of two companies one open deal is associated with
            {"key": "lead_joint", "partner_key": PARTNER, "email": "fe@fjordfreight.example",
             "name": "Fe Falk", "company": "Fjord Freight", "status": "new"},
        ],
    },
    "hubspot": {
        "companies": [
            {"name": "Acme Robotics GmbH", "domain": "acmerobotics.example",
             "lifecyclestage": "opportunity"},
            {"name": "Borealis Foods", "domain": "borealisfoods.example",
             "lifecyclestage": "opportunity"},
            {"name": "Cobalt Energy", "domain": "cobaltenergy.example",
             "lifecyclestage": "customer"},
            {"name": "Eastwind Shipping", "domain": "eastwind.example",
             "lifecyclestage": "lead"},
            {"name": "Fjord Freight", "domain": "fjordfreight.example",
             "lifecyclestage": "lead"},
        ],
    },
}

# deals name their companies, whose ids the emulator assigns when it seeds them
DEALS: list[tuple[str, str, list[str]]] = [
    ("Acme Robotics - New Business", "qualifiedtobuy", ["Acme Robotics GmbH"]),
    ("Borealis Foods - Pilot", "closedwon", ["Borealis Foods"]),
    ("Borealis Foods - Expansion", "closedlost", ["Borealis Foods"]),
    ("Cobalt Energy - Upsell", "appointmentscheduled", ["Cobalt Energy"]),
    ("Dunmore Labs - Inbound", "appointmentscheduled", []),
    ("Eastwind & Fjord - Joint bid", "contractsent", ["Eastwind Shipping", "Fjord Freight"]),
]

RULES: dict[str, Any] = {
    "protection_window_days": 90,
    "customer_account_types": ["customer"],
    "customers_from": {"system": "hubspot", "object": "companies", "name_field": "name",
                       "website_field": "domain", "type_field": "lifecyclestage"},
    "open_opportunities_from": {"system": "hubspot", "object": "deals",
                                "account_association": "companies",
                                "closed_field": "hs_is_closed", "name_field": "dealname"},
}


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[RunningSandbox]:
    with start_sandbox(seed=SEED, ports=dict.fromkeys(
            ("salesforce", "hubspot", "partnerstack"), 0), workdir=tmp_path / "tls") as running:
        hubspot = running.emulators["hubspot"]
        with hubspot.lock:
            companies = {r["properties"]["name"]: r["id"] for r in hubspot.records("companies")}
            hubspot.seed({"deals": [
                {"dealname": name, "dealstage": stage,
                 "associations": [{"to": "companies", "id": companies[c]} for c in linked]}
                for name, stage, linked in DEALS]})
            hubspot.calls.reset()
        yield running


def sync(sandbox: RunningSandbox, tmp_path: Path, state_url: str, *,
         base: Mapping[str, Any] = RULES, **rules: Any) -> tuple[RunReport, StateStore]:
    """One run with HubSpot as the source of customers and open deals (``rules`` override
    ``base``)."""
    text = sandbox_config(sandbox.urls, sandbox.ca_bundle, state_url,
                          comment="hubspot open deals test", instance="refsync-test",
                          top={"rules": {**base, **rules}})
    path = tmp_path / "refsync.yaml"
    path.write_text(text)
    loaded = load_config(path)
    store = StateStore(loaded.config.state.url)
    return build_engine(loaded, store).run(), store



def deal_id(sandbox: RunningSandbox, name: str) -> str:
    return next(r["id"] for r in sandbox.emulators["hubspot"].records("deals")
                if r["properties"]["dealname"] == name)


def test_the_emulator_calculates_whether_a_deal_is_closed(sandbox: RunningSandbox) -> None:
    closed = {r["properties"]["dealname"]: r["properties"]["hs_is_closed"]
              for r in sandbox.emulators["hubspot"].records("deals")}
    assert closed == {name: "true" if stage.startswith("closed") else "false"
                      for name, stage, _ in DEALS}


def test_a_company_with_an_open_deal_is_protected_through_associations(
    sandbox: RunningSandbox, tmp_path: Path, state_url: str
) -> None:
    acme_deal = deal_id(sandbox, "Acme Robotics - New Business")
    joint_deal = deal_id(sandbox, "Eastwind & Fjord - Joint bid")
    report, store = sync(sandbox, tmp_path, state_url)
    assert report.status == "succeeded", report
    assert report.counts["created"] == 6 and report.counts["rejected"] == 4, report.counts
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
    assert event["payload"]["rule"] == "open_opportunity"
    assert event["payload"]["opportunity_id"] == acme_deal

    # a deal associated with two companies protects both
    assert referrals["fe@fjordfreight.example"]["status_reason"] == (
        f"Fjord Freight has an open opportunity (Eastwind & Fjord - Joint bid, CRM record "
        f"{joint_deal}; email domain fjordfreight.example)")

    customer = referrals["di@cobaltenergy.example"]
    assert customer["status"] == "rejected"
    assert "is already a customer" in customer["status_reason"]

    for email in ("cy@borealisfoods.example", "ed@dunmore.example"):
        assert referrals[email]["status"] == "submitted", referrals[email]
        assert referrals[email]["status_reason"] is None
    contacts = {str(r["properties"].get("email"))
                for r in sandbox.emulators["hubspot"].records("contacts")}
    assert contacts == {"cy@borealisfoods.example", "ed@dunmore.example"}
    partner = {lead["key"]: lead["status"]
               for lead in sandbox.emulators["partnerstack"].records("leads")}
    assert partner["lead_joint"] == "rejected" and partner["lead_closed"] == "new"

    # the four open deals' companies came back in one associations batch read
    assert sandbox.emulators["hubspot"].calls.get(ASSOCIATION_READ) == 1
    store.close()


def test_open_deals_are_enforced_without_the_customer_rule(
    sandbox: RunningSandbox, tmp_path: Path, state_url: str
) -> None:
    report, store = sync(sandbox, tmp_path, state_url, reject_existing_customers=False)
    assert report.counts["rejected"] == 4, report.counts
    referrals = by_email(store)
    assert referrals["di@cobaltenergy.example"]["status_reason"].startswith(
        "Cobalt Energy has an open opportunity (Cobalt Energy - Upsell, CRM record ")
    assert referrals["cy@borealisfoods.example"]["status"] == "submitted"
    store.close()


def test_hubspot_customers_are_companies_in_the_customer_stage_by_default(
    sandbox: RunningSandbox, tmp_path: Path, state_url: str
) -> None:
    # the configuration does not name the customer types: HubSpot's lifecycle stage decides
    unset = {name: value for name, value in RULES.items() if name != "customer_account_types"}
    report, store = sync(sandbox, tmp_path, state_url, base=unset,
                         reject_open_opportunities=False)
    assert report.counts["rejected"] == 1, report.counts
    cobalt = next(r["id"] for r in sandbox.emulators["hubspot"].records("companies")
                  if r["properties"]["name"] == "Cobalt Energy")
    assert by_email(store)["di@cobaltenergy.example"]["status_reason"] == (
        f"Cobalt Energy is already a customer (email domain cobaltenergy.example; CRM record "
        f"{cobalt})")
    store.close()


def test_with_the_rule_off_no_associations_are_read(
    sandbox: RunningSandbox, tmp_path: Path, state_url: str
) -> None:
    report, store = sync(sandbox, tmp_path, state_url, reject_open_opportunities=False)
    assert report.counts["rejected"] == 1, report.counts  # the customer only
    assert by_email(store)["ana@acmerobotics.example"]["status"] == "submitted"
    assert sandbox.emulators["hubspot"].calls.get(ASSOCIATION_READ) == 0
    store.close()


def test_a_connector_without_associations_fails_the_run_with_the_fix(
    sandbox: RunningSandbox, tmp_path: Path, state_url: str
) -> None:
    # refsync check refuses this configuration; built in code, the run itself must refuse it
    text = sandbox_config(sandbox.urls, sandbox.ca_bundle, state_url, comment="no associations",
                          instance="refsync-test")
    path = tmp_path / "refsync.yaml"
    path.write_text(text)
    loaded = load_config(path)
    source = OpportunitySourceConfig(system="salesforce", account_association="Account")
    loaded.config = loaded.config.model_copy(update={
        "rules": loaded.config.rules.model_copy(update={"open_opportunities_from": source})})
    store = StateStore(loaded.config.state.url)
    report = build_engine(loaded, store).run()
    assert report.status == "failed", report
    assert "system 'salesforce' has no associations" in str(report.error), report.error
    assert by_email(store) == {}
    store.close()


def test_association_reads_go_a_thousand_ids_a_call(sandbox: RunningSandbox) -> None:
    hubspot = sandbox.emulators["hubspot"]
    with hubspot.lock:
        eastwind = next(r["id"] for r in hubspot.records("companies")
                        if r["properties"]["name"] == "Eastwind Shipping")
        hubspot.seed({"deals": [
            {"dealname": f"Bulk {n}", "dealstage": "qualifiedtobuy",
             "associations": [{"to": "companies", "id": eastwind}]} for n in range(1_000)]})
    bulk = [r["id"] for r in hubspot.records("deals")
            if r["properties"]["dealname"].startswith("Bulk ")]
    joint = deal_id(sandbox, "Eastwind & Fjord - Joint bid")
    orphan = deal_id(sandbox, "Dunmore Labs - Inbound")
    counter = ApiCallCounter()
    connector = HubSpotConnector(
        HubSpotSettings(base_url=sandbox.urls["hubspot"], settle_lag_seconds=0,
                        access_token=sandbox.credentials["hubspot"]["access_token"]),
        ConnectorContext(system="hubspot", clock=ManualClock(), api_calls=counter))
    linked = connector.associated_ids("deals", "companies", [*bulk, joint, orphan])
    assert len(bulk) == 1_000 and len(linked) == 1_002
    assert all(linked[deal] == [eastwind] for deal in bulk)
    assert sorted(linked[joint], key=int) == sorted(
        (r["id"] for r in hubspot.records("companies")
         if r["properties"]["name"] in ("Eastwind Shipping", "Fjord Freight")), key=int)
    assert linked[orphan] == []
    assert hubspot.calls.get(ASSOCIATION_READ) == 2
    assert counter.count("hubspot") == 2
    # the emulator refuses a larger batch, as HubSpot does
    with pytest.raises(RecordError, match="maximum is 1000"):
        connector.transport.call(
            "associations_read", connector.transport.associations_batch_api.get_page,
            "deals", "companies", batch_input_public_fetch_associations_batch_request={
                "inputs": [{"id": deal} for deal in [*bulk, joint]]})


def test_a_deal_with_more_companies_than_one_answer_holds_is_read_to_the_end(
    sandbox: RunningSandbox,
) -> None:
    hubspot = sandbox.emulators["hubspot"]
    per_answer = ASSOCIATIONS_PER_RESULT
    with hubspot.lock:
        hubspot.seed({"companies": [{"name": f"Consortium member {n}"}
                                    for n in range(2 * per_answer + 1)]})
        members = [r["id"] for r in hubspot.records("companies")
                   if r["properties"]["name"].startswith("Consortium member ")]
        hubspot.seed({"deals": [{"dealname": "Consortium bid", "dealstage": "qualifiedtobuy",
                                 "associations": [{"to": "companies", "id": member}
                                                  for member in members]}]})
    consortium = deal_id(sandbox, "Consortium bid")
    orphan = deal_id(sandbox, "Dunmore Labs - Inbound")
    connector = HubSpotConnector(
        HubSpotSettings(base_url=sandbox.urls["hubspot"], settle_lag_seconds=0,
                        access_token=sandbox.credentials["hubspot"]["access_token"]),
        ConnectorContext(system="hubspot", clock=ManualClock(), api_calls=ApiCallCounter()))
    hubspot.calls.reset()
    linked = connector.associated_ids("deals", "companies", [consortium, orphan])
    # 1,001 companies, 500 an answer: the first call and two more for the rest
    assert sorted(linked[consortium], key=int) == sorted(members, key=int)
    assert linked[orphan] == []
    assert hubspot.calls.get(ASSOCIATION_READ) == 3
