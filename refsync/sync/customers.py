"""Existing customers, read from a CRM object, so that referrals of them are rejected."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from refsync.config import CustomerSourceConfig
from refsync.connectors.base import Connector
from refsync.sync.keys import company_key, domain_key

__all__ = ["CustomerIndex", "load_customers"]


@dataclass
class CustomerIndex:
    """Customers by normalised website domain and company name."""

    by_domain: dict[str, tuple[str, str]] = field(default_factory=dict)
    by_company: dict[str, tuple[str, str]] = field(default_factory=dict)

    def add(self, remote_id: str, name: Any, website: Any) -> None:
        """Index one customer record."""
        label = (str(name or remote_id), remote_id)
        domain = domain_key(website)
        if domain:
            self.by_domain.setdefault(domain, label)
        company = company_key(name)
        if company:
            self.by_company.setdefault(company, label)

    def find(self, keys: Mapping[str, str | None]) -> tuple[str, str, str] | None:
        """``(how, customer name, remote id)`` of the customer a referral's keys match, if any."""
        for rule in ("website_domain", "email_domain"):
            key = keys.get(rule)
            if key and key in self.by_domain:
                name, remote_id = self.by_domain[key]
                return f"{rule.replace('_', ' ')} {key}", name, remote_id
        company = keys.get("company_name")
        if company and company in self.by_company:
            name, remote_id = self.by_company[company]
            return f"company name {company}", name, remote_id
        return None

    def __len__(self) -> int:
        return len({remote_id for _, remote_id in
                    [*self.by_domain.values(), *self.by_company.values()]})


def load_customers(
    connector: Connector, source: CustomerSourceConfig, customer_types: Iterable[str]
) -> CustomerIndex:
    """Read the customer object in full and index the records whose type marks a customer."""
    wanted = set(customer_types)
    index = CustomerIndex()
    fields = [source.name_field, source.website_field, source.type_field]
    for page in connector.read(source.object, fields, None):
        for record in page.records:
            if record.deleted or record.data.get(source.type_field) not in wanted:
                continue
            index.add(record.id, record.data.get(source.name_field),
                      record.data.get(source.website_field))
    return index
