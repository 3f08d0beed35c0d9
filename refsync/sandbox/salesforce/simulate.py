"""Deterministic 'sales activity' for demos: work leads, convert them, close opportunities.

Given a seed and a fraction, the same store always changes the same way: a ``fraction`` of the
open leads (picked in Id order with the seeded generator) moves one step — ``Open - Not
Contacted`` → ``Working - Contacted`` → converted (Account, Contact and Opportunity created,
``Refsync_Id__c``/``Partner_Key__c`` carried over as a lead field mapping would) — and the same
fraction of open opportunities moves one stage, the last step closing them won or lost with an
amount. Every change of one call shares one modstamp.
"""

from __future__ import annotations

import random
from datetime import timedelta
from typing import Any

from refsync.sandbox.salesforce.schema import OPPORTUNITY_STAGES
from refsync.sandbox.salesforce.soql import format_datetime
from refsync.sandbox.salesforce.store import RecordStore

__all__ = ["simulate_sales_activity"]

_OPEN_STAGES = OPPORTUNITY_STAGES[:4]


def simulate_sales_activity(store: RecordStore, *, seed: int, fraction: float) -> dict[str, Any]:
    """Apply one round of activity; return what changed (ids per kind of change)."""
    rng = random.Random(seed)
    moment = store.now()
    stamp = format_datetime(moment)
    today = moment.date()
    objects = store.objects
    worked: list[str] = []
    converted: list[str] = []
    advanced: list[str] = []
    won: list[str] = []
    lost: list[str] = []

    open_opportunities = sorted(
        (r for r in store.records["Opportunity"].values()
         if not r["IsDeleted"] and r["StageName"] in _OPEN_STAGES),
        key=lambda r: r["Id"])
    for opportunity in open_opportunities:
        if rng.random() >= fraction:
            continue
        stage_index = _OPEN_STAGES.index(opportunity["StageName"])
        changes: dict[str, Any] = {}
        if stage_index < len(_OPEN_STAGES) - 1 and rng.random() < 0.6:
            changes["StageName"] = _OPEN_STAGES[stage_index + 1]
            advanced.append(opportunity["Id"])
        elif rng.random() < 0.55:
            changes.update(StageName="Closed Won", CloseDate=today.isoformat(),
                           Amount=opportunity.get("Amount") or rng.randrange(5, 120) * 1000)
            won.append(opportunity["Id"])
        else:
            changes.update(StageName="Closed Lost", CloseDate=today.isoformat())
            lost.append(opportunity["Id"])
        store.update(objects["Opportunity"], opportunity, changes, stamp)

    open_leads = sorted(
        (r for r in store.records["Lead"].values()
         if not r["IsDeleted"] and not r["IsConverted"]
         and r["Status"] in ("Open - Not Contacted", "Working - Contacted")),
        key=lambda r: r["Id"])
    for lead in open_leads:
        if rng.random() >= fraction:
            continue
        if lead["Status"] == "Open - Not Contacted":
            store.update(objects["Lead"], lead, {"Status": "Working - Contacted"}, stamp)
            worked.append(lead["Id"])
            continue
        account = store.insert(objects["Account"], {
            "Name": lead["Company"], "Website": lead.get("Website"), "Type": "Prospect",
            "BillingCountry": lead.get("Country")}, stamp)
        contact = store.insert(objects["Contact"], {
            "AccountId": account["Id"], "FirstName": lead.get("FirstName"),
            "LastName": lead["LastName"], "Email": lead.get("Email"), "Title": lead.get("Title"),
            "LeadSource": lead.get("LeadSource")}, stamp)
        opportunity = store.insert(objects["Opportunity"], {
            "AccountId": account["Id"], "Name": f"{lead['Company']} - New Business",
            "StageName": "Prospecting", "CloseDate": (today + timedelta(days=30)).isoformat(),
            "Amount": rng.randrange(5, 120) * 1000, "LeadSource": lead.get("LeadSource"),
            "Refsync_Id__c": lead.get("Refsync_Id__c"),
            "Partner_Key__c": lead.get("Partner_Key__c")}, stamp)
        store.update(objects["Lead"], lead, {
            "Status": "Closed - Converted", "IsConverted": True,
            "ConvertedDate": today.isoformat(), "ConvertedAccountId": account["Id"],
            "ConvertedContactId": contact["Id"], "ConvertedOpportunityId": opportunity["Id"],
        }, stamp)
        converted.append(lead["Id"])

    return {
        "stamp": stamp,
        "leads_worked": worked,
        "leads_converted": converted,
        "opportunities_advanced": advanced,
        "opportunities_won": won,
        "opportunities_lost": lost,
    }
