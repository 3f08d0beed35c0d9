"""The referrals both open-deal tests (Salesforce and HubSpot sources) send, and their outcome."""

from __future__ import annotations

from typing import Any

from refsync.state import StateStore

__all__ = ["by_email", "partner_leads", "partnership"]


def partnership(partner: str) -> dict[str, Any]:
    """The PartnerStack partnership that refers every lead."""
    return {"key": partner, "email": "pat@partner.example", "first_name": "Pat",
            "last_name": "Partner"}


def partner_leads(partner: str) -> list[dict[str, Any]]:
    """One lead per case the CRM's accounts and deals are seeded for."""
    return [
        # the email's domain is the website of an account with an open deal
        {"key": "lead_domain", "partner_key": partner, "email": "ana@acmerobotics.example",
         "name": "Ana Alves", "company": "Acme Robo", "status": "new"},
        # a free mailbox: only the company name can match the same account
        {"key": "lead_company", "partner_key": partner, "email": "bo.berg@gmail.com",
         "name": "Bo Berg", "company": "ACME Robotics, Inc.", "status": "new"},
        # the account's deals are all closed (won and lost): nothing to protect
        {"key": "lead_closed", "partner_key": partner, "email": "cy@borealisfoods.example",
         "name": "Cy Cole", "company": "Borealis Foods", "status": "new"},
        # a customer who also has an open deal: reported as a customer
        {"key": "lead_customer", "partner_key": partner, "email": "di@cobaltenergy.example",
         "name": "Di Dunn", "company": "Cobalt Energy", "status": "new"},
        # a deal without an account protects nobody
        {"key": "lead_orphan", "partner_key": partner, "email": "ed@dunmore.example",
         "name": "Ed Eck", "company": "Dunmore Labs", "status": "new"},
    ]


def by_email(store: StateStore) -> dict[str, dict[str, Any]]:
    """The hub's referrals by email."""
    return {r["email"]: r for r in store.list_referrals(limit=1000)}
