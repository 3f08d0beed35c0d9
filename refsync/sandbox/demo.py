"""Deterministic demo data for every sandbox system, with the awkward cases real data has.

``generate_demo()`` returns a seed payload per system (``{"partnerstack": {...}, "salesforce":
{...}, "hubspot": {...}}``), each in that API's own field names, ready for ``POST
/_sandbox/seed``. The same arguments always give the same data. It includes:

- the same prospect referred by two partners (second time with different case and spaces);
- prospects that are already customers (a Salesforce Account of Type ``Customer - Direct``
  with a Contact of the same email, and a HubSpot contact in lifecycle stage ``customer``);
- prospects already in the CRM as Leads, their email differing in case and whitespace;
- non-ASCII names (``Zoë``, ``Łukasz``, ``Müller``, ``Nguyễn``...).
"""

from __future__ import annotations

import random
import unicodedata
from datetime import UTC, datetime, timedelta
from typing import Any

__all__ = ["DEMO_ANCHOR", "generate_demo"]

#: the fixed "now" of the demo data, so every run produces identical records.
DEMO_ANCHOR = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)

_FIRST = ("Anna", "José", "Zoë", "Łukasz", "Søren", "Françoise", "Jürgen", "Ngọc", "Priya",
          "Kenji", "María", "Oliver", "Chloé", "Mateus", "Aylin", "Björn", "Fatima", "Liam",
          "Élodie", "Tomasz")
_LAST = ("Schmidt", "Müller", "García", "Nguyễn", "Ødegaard", "Kowalski", "O'Brien", "Dubois",
         "Nakamura", "Silva", "Yılmaz", "Johansson", "Patel", "Rossi", "Novák", "Smith")
_COMPANY_A = ("Northwind", "Bluefjord", "Acme", "Helios", "Quantix", "Riverbend", "Solenne",
              "Kestrel", "Brightpath", "Lumen", "Tessera", "Orbital", "Cedar", "Marlow")
_COMPANY_B = ("Analytics", "Logistics", "Robotics", "Health", "Foods", "Software", "Energy",
              "Labs", "Capital", "Systems")
_COMPANY_SUFFIX = ("GmbH", "Ltd", "Inc.", "S.A.", "AB", "LLC", "")
_COUNTRIES = ("Germany", "France", "Spain", "United States", "Japan", "Poland", "Sweden",
              "Brazil", "India", "United Kingdom", "Vietnam", "Türkiye")
_TITLES = ("Head of Operations", "CTO", "VP Sales", "IT Manager", "CFO", "Procurement Lead")
_PARTNER_GROUPS = (("grp_referral", "Referral Partners"), ("grp_agency", "Agency Partners"))
_ASCII_FOLD = str.maketrans({"ø": "o", "Ø": "O", "ł": "l", "Ł": "L", "ı": "i", "'": ""})


def _ascii(text: str) -> str:
    folded = unicodedata.normalize("NFKD", text.translate(_ASCII_FOLD))
    return "".join(c for c in folded if c.isascii() and (c.isalnum() or c in ".-"))


def _epoch_ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


class _Prospect:
    """One person at one company, as the generator draws them."""

    def __init__(self, rng: random.Random, index: int) -> None:
        self.first = rng.choice(_FIRST)
        self.last = rng.choice(_LAST)
        suffix = rng.choice(_COMPANY_SUFFIX)
        self.company = " ".join(
            p for p in (rng.choice(_COMPANY_A), rng.choice(_COMPANY_B), suffix) if p)
        domain = _ascii(self.company.split()[0] + self.company.split()[1]).lower()
        self.domain = f"{domain}{index}.example"
        self.email = f"{_ascii(self.first).lower()}.{_ascii(self.last).lower()}@{self.domain}"
        self.country = rng.choice(_COUNTRIES)
        self.title = rng.choice(_TITLES)
        self.phone = f"+1 555 01{index % 100:02d}"

    @property
    def name(self) -> str:
        return f"{self.first} {self.last}"


def generate_demo(
    seed: int = 7, partners: int = 8, referrals: int = 60, *, now: datetime = DEMO_ANCHOR
) -> dict[str, dict[str, Any]]:
    """Generate demo seed payloads for PartnerStack, Salesforce and HubSpot.

    Args:
        seed: seed of the random generator; the same seed gives the same data.
        partners: number of PartnerStack partnerships (at least 2).
        referrals: number of PartnerStack leads (at least 8, to fit every awkward case).
        now: the moment the data is "as of"; creation times fall in the 30 days before it.

    Returns:
        ``{"partnerstack": {"partnerships", "leads"}, "salesforce": {"Account", "Contact",
        "Lead", "Opportunity"}, "hubspot": {"companies", "contacts", "deals"}}``.
    """
    if partners < 2 or referrals < 8:
        raise ValueError("the demo needs at least 2 partners and 8 referrals")
    rng = random.Random(seed)

    def moment(max_days: int = 30) -> datetime:
        return now - timedelta(minutes=rng.randrange(60, max_days * 24 * 60))

    partnerships: list[dict[str, Any]] = []
    for i in range(partners):
        first, last = rng.choice(_FIRST), rng.choice(_LAST)
        group_key, group_name = _PARTNER_GROUPS[i % len(_PARTNER_GROUPS)]
        created = moment(90)
        partnerships.append({
            "key": f"part_demo{i + 1:03d}",
            "email": f"{_ascii(first).lower()}.{_ascii(last).lower()}@partner{i + 1}.example",
            "first_name": first,
            "last_name": last,
            "group": {"key": group_key, "name": group_name},
            "approved_status": "pending" if i == partners - 1 else "approved",
            "created_at": _epoch_ms(created),
            "updated_at": _epoch_ms(created),
        })
    partner_keys = [str(p["key"]) for p in partnerships if p["approved_status"] == "approved"]

    prospects = [_Prospect(rng, i) for i in range(referrals)]
    leads = []
    for i, prospect in enumerate(prospects):
        created = moment()
        status = rng.choices(("new", "qualified", "rejected"), weights=(7, 2, 1))[0]
        leads.append(_prm_lead(f"lead_demo{i + 1:04d}", partner_keys[i % len(partner_keys)],
                               prospect.email, prospect, status, created,
                               created + timedelta(hours=rng.randrange(0, 48))))

    # Awkward case 1: the same prospect referred again by another partner, email re-typed.
    twice = prospects[1]
    second_partner = partner_keys[(1 + 1) % len(partner_keys)]
    later = datetime.fromtimestamp(leads[1]["created_at"] / 1000, UTC) + timedelta(days=2)
    leads.append(_prm_lead(f"lead_demo{referrals + 1:04d}", second_partner,
                           f"  {twice.email.title()} ", twice, "new", later, later))

    # Salesforce: customers (awkward case 2), existing leads (case 3), other accounts.
    accounts: list[dict[str, Any]] = []
    contacts: list[dict[str, Any]] = []
    sf_leads: list[dict[str, Any]] = []
    opportunities: list[dict[str, Any]] = []
    customers = prospects[2:5]
    for n, prospect in enumerate(customers, start=1):
        account_id = f"001DEMO{n:011d}"
        accounts.append({"Id": account_id, "Name": prospect.company, "Type": "Customer - Direct",
                         "Website": f"https://{prospect.domain}",
                         "BillingCountry": prospect.country})
        contacts.append({"AccountId": account_id, "FirstName": prospect.first,
                         "LastName": prospect.last, "Email": prospect.email,
                         "Title": prospect.title, "MailingCountry": prospect.country})
    for prospect in prospects[5:8]:
        sf_leads.append(_sf_lead(prospect, prospect.email.upper(), "Working - Contacted", "Web"))
    others = [_Prospect(rng, 1000 + i) for i in range(max(12, referrals // 4))]
    for n, prospect in enumerate(others[:6], start=len(customers) + 1):
        account_id = f"001DEMO{n:011d}"
        accounts.append({"Id": account_id, "Name": prospect.company, "Type": "Prospect",
                         "Website": f"https://{prospect.domain}",
                         "BillingCountry": prospect.country})
        contacts.append({"AccountId": account_id, "FirstName": prospect.first,
                         "LastName": prospect.last, "Email": prospect.email,
                         "Title": prospect.title})
        opportunities.append({
            "AccountId": account_id, "Name": f"{prospect.company} - New Business",
            "StageName": rng.choice(("Prospecting", "Qualification", "Proposal/Price Quote")),
            "Amount": rng.randrange(5, 80) * 1000,
            "CloseDate": (now + timedelta(days=rng.randrange(20, 90))).date().isoformat(),
            "LeadSource": "Web",
        })
    # Awkward case 4: a referred prospect sales already works an open deal with (channel
    # conflict); fixed values, so the rest of the demo data stays as it was.
    in_play = prospects[8]
    account_id = f"001DEMO{len(accounts) + 1:011d}"
    accounts.append({"Id": account_id, "Name": in_play.company, "Type": "Prospect",
                     "Website": f"https://{in_play.domain}", "BillingCountry": in_play.country})
    opportunities.append({
        "AccountId": account_id, "Name": f"{in_play.company} - New Business",
        "StageName": "Proposal/Price Quote", "Amount": 24000,
        "CloseDate": (now + timedelta(days=30)).date().isoformat(), "LeadSource": "Web",
    })
    for prospect in others[6:]:
        sf_leads.append(_sf_lead(prospect, prospect.email, "Open - Not Contacted",
                                 rng.choice(("Web", "Phone Inquiry", "Purchased List"))))

    # HubSpot: the customers, the existing leads (email case differs) and some others.
    hs_companies = [{"properties": {"name": p.company, "domain": p.domain, "country": p.country}}
                    for p in [*customers, *others[:4]]]
    hs_contacts = []
    for prospect in customers:
        hs_contacts.append({"properties": _hs_contact(prospect, prospect.email, "customer")})
    for prospect in prospects[5:8]:
        hs_contacts.append({"properties": _hs_contact(prospect, prospect.email, "lead")})
    for prospect in others[:8]:
        hs_contacts.append({"properties": _hs_contact(prospect, prospect.email,
                                                      rng.choice(("subscriber", "lead")))})
    hs_deals = [{"properties": {
        "dealname": f"{p.company} - Renewal", "amount": str(rng.randrange(5, 60) * 1000),
        "dealstage": rng.choice(("appointmentscheduled", "qualifiedtobuy", "contractsent")),
        "pipeline": "default",
        "closedate": (now + timedelta(days=rng.randrange(10, 60))).strftime(
            "%Y-%m-%dT%H:%M:%S.000Z"),
    }} for p in others[:4]]

    return {
        "partnerstack": {"partnerships": partnerships, "leads": leads},
        "salesforce": {"Account": accounts, "Contact": contacts, "Lead": sf_leads,
                       "Opportunity": opportunities},
        "hubspot": {"companies": hs_companies, "contacts": hs_contacts, "deals": hs_deals},
    }


def _prm_lead(
    key: str, partner_key: str, email: str, prospect: _Prospect, status: str,
    created: datetime, updated: datetime,
) -> dict[str, Any]:
    return {
        "key": key,
        "partner_key": partner_key,
        "email": email,
        "name": prospect.name,
        "company": prospect.company,
        "status": status,
        "fields": {"first_name": prospect.first, "last_name": prospect.last,
                   "title": prospect.title, "phone": prospect.phone,
                   "country": prospect.country, "website": f"https://{prospect.domain}"},
        "created_at": _epoch_ms(created),
        "updated_at": _epoch_ms(updated),
    }


def _sf_lead(prospect: _Prospect, email: str, status: str, source: str) -> dict[str, Any]:
    return {"FirstName": prospect.first, "LastName": prospect.last, "Company": prospect.company,
            "Email": email, "Title": prospect.title,
            "Country": prospect.country, "Status": status, "LeadSource": source,
            "Website": f"https://{prospect.domain}", "Phone": prospect.phone}


def _hs_contact(prospect: _Prospect, email: str, stage: str) -> dict[str, str]:
    return {"email": email, "firstname": prospect.first, "lastname": prospect.last,
            "company": prospect.company, "jobtitle": prospect.title,
            "country": prospect.country, "lifecyclestage": stage}
