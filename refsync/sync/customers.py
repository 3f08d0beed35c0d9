"""Existing customers and open deals, read from the CRM, so that referrals of them are rejected.

Customers are the account records whose type marks a customer. Open deals are opportunities not
yet closed; each names its account in a lookup field (Salesforce) or reaches its accounts through
associations (HubSpot deals and companies), and the referral is matched against that account's
website domain and company name, the same keys as customers.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol, runtime_checkable

from refsync.config import CustomerSourceConfig, OpportunitySourceConfig
from refsync.connectors.base import Connector, ConnectorBase, Page
from refsync.errors import FatalConnectorError
from refsync.sync.keys import company_key, domain_key

__all__ = ["AssociationReader", "CustomerIndex", "OpenDeal", "load_customers"]


class OpenDeal(NamedTuple):
    """An open opportunity on the account a referral matches."""

    how: str
    """Which key matched, e.g. ``company name acme``."""
    account: str
    """The account's name."""
    opportunity: str
    """The opportunity's name."""
    opportunity_id: str
    """The opportunity's record id."""


_DOMAIN_RULES = ("website_domain", "email_domain")


@runtime_checkable
class AssociationReader(Protocol):
    """A connector that links records through associations (HubSpot), not lookup fields."""

    def associated_ids(
        self, from_object: str, to_object: str, ids: Sequence[str]
    ) -> dict[str, list[str]]:
        """The ids of the ``to_object`` records associated with each of ``ids``."""
        ...


@dataclass
class _KeyedIndex:
    """Labels of CRM records by normalised website domain and company name (first one wins)."""

    by_domain: dict[str, tuple[str, ...]] = field(default_factory=dict)
    by_company: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def add(self, name: Any, website: Any, label: tuple[str, ...]) -> None:
        domain = domain_key(website)
        if domain:
            self.by_domain.setdefault(domain, label)
        company = company_key(name)
        if company:
            self.by_company.setdefault(company, label)

    def find(self, keys: Mapping[str, str | None]) -> tuple[str, tuple[str, ...]] | None:
        """``(how it matched, label)``: website or email domain first, then company name."""
        for rule in _DOMAIN_RULES:
            key = keys.get(rule)
            if key and key in self.by_domain:
                return f"{rule.replace('_', ' ')} {key}", self.by_domain[key]
        company = keys.get("company_name")
        if company and company in self.by_company:
            return f"company name {company}", self.by_company[company]
        return None

    def labels(self) -> list[tuple[str, ...]]:
        return [*self.by_domain.values(), *self.by_company.values()]


@dataclass
class CustomerIndex:
    """Customers, and accounts with an open deal, by normalised website domain and company name."""

    customers: _KeyedIndex = field(default_factory=_KeyedIndex)
    open_deals: _KeyedIndex = field(default_factory=_KeyedIndex)

    def add(self, remote_id: str, name: Any, website: Any) -> None:
        """Index one customer record."""
        self.customers.add(name, website, (str(name or remote_id), remote_id))

    def find(self, keys: Mapping[str, str | None]) -> tuple[str, str, str] | None:
        """``(how, customer name, remote id)`` of the customer a referral's keys match, if any."""
        found = self.customers.find(keys)
        if found is None:
            return None
        how, (name, remote_id) = found
        return how, name, remote_id

    def add_open_deal(
        self, account_id: str, account_name: Any, website: Any, opportunity_id: str,
        opportunity_name: Any,
    ) -> None:
        """Index one open opportunity under its account's domain and company name."""
        self.open_deals.add(account_name, website, (
            str(account_name or account_id), str(opportunity_name or opportunity_id),
            opportunity_id))

    def find_open_deal(self, keys: Mapping[str, str | None]) -> OpenDeal | None:
        """The open deal on the account a referral's keys match (same key order as ``find``)."""
        found = self.open_deals.find(keys)
        if found is None:
            return None
        how, (account, opportunity, opportunity_id) = found
        return OpenDeal(how, account, opportunity, opportunity_id)

    def __len__(self) -> int:
        """How many customers are indexed (accounts with open deals are not counted)."""
        return len({label[1] for label in self.customers.labels()})


def _read_current(connector: Connector, object_name: str, fields: list[str]) -> Iterator[Page]:
    """Every record as it is now: without the settle lag when the connector offers it
    (:meth:`~refsync.connectors.base.ConnectorBase.read_current`), else a full read."""
    if isinstance(connector, ConnectorBase):
        return connector.read_current(object_name, fields)
    return iter(connector.read(object_name, fields, None))


def load_customers(
    connector: Connector,
    source: CustomerSourceConfig,
    customer_types: Iterable[str],
    opportunities: OpportunitySourceConfig | None = None,
) -> CustomerIndex:
    """Read the customer object in full and index the records whose type marks a customer.

    With ``opportunities``, the opportunity object is then read in full too, and every account
    with at least one opportunity not closed is indexed as having an open deal. Pass no
    ``customer_types`` to index open deals only. With ``opportunities.account_association``,
    an open deal's accounts are its associated records of that type, read in batches after the
    deals, and the deal is indexed under each of them that the customer object holds.

    Raises:
        FatalConnectorError: ``account_association`` is set but the connector has no
            associations.
    """
    wanted = set(customer_types)
    index = CustomerIndex()
    accounts: dict[str, tuple[Any, Any]] = {}
    fields = [source.name_field, source.website_field, source.type_field]
    for page in _read_current(connector, source.object, fields):
        for record in page.records:
            if record.deleted:
                continue
            name, website = (record.data.get(source.name_field),
                             record.data.get(source.website_field))
            if opportunities is not None:
                accounts[record.id] = (name, website)
            if record.data.get(source.type_field) in wanted:
                index.add(record.id, name, website)
    if opportunities is None:
        return index
    for deal_id, (deal_name, deal_accounts) in _open_deals(connector, opportunities).items():
        for account in deal_accounts:
            if account in accounts:
                name, website = accounts[account]
                index.add_open_deal(account, name, website, deal_id, deal_name)
    return index


def _open_deals(
    connector: Connector, opportunities: OpportunitySourceConfig
) -> dict[str, tuple[Any, list[str]]]:
    """Every deal not closed: its name and the ids of its accounts, named in the deal's lookup
    field or, with ``account_association``, found through associations (read in batches)."""
    association = opportunities.account_association
    if association is not None and not isinstance(connector, AssociationReader):
        raise FatalConnectorError(
            f"rules.open_opportunities_from reads {opportunities.object} through associations "
            f"to {association}, but system '{opportunities.system}' has no associations: "
            "remove account_association and name the account lookup in account_field",
            system=opportunities.system,
        )
    fields = [opportunities.closed_field, opportunities.name_field]
    if association is None:
        fields.insert(0, opportunities.account_field)
    deals: dict[str, tuple[Any, list[str]]] = {}
    for page in _read_current(connector, opportunities.object, fields):
        for record in page.records:
            if record.deleted or _is_true(record.data.get(opportunities.closed_field)):
                continue
            account = record.data.get(opportunities.account_field) if association is None \
                else None
            deals[record.id] = (record.data.get(opportunities.name_field),
                                [str(account)] if account else [])
    if association is not None and deals:
        assert isinstance(connector, AssociationReader)
        linked = connector.associated_ids(opportunities.object, association, list(deals))
        deals = {deal_id: (name, linked.get(deal_id, [])) for deal_id, (name, _) in deals.items()}
    return deals


def _is_true(value: Any) -> bool:
    """A closed flag as a connector returns it: a boolean, or its text (``"true"``, ``"1"``)."""
    if isinstance(value, str):
        return value.strip().lower() in {"true", "1", "yes"}
    return bool(value)
