"""PartnerStack resources: their fields, checks, and a keyed store with cursor paging.

Listing order: newest first (``created_at`` descending, ties by key) unless ``order_by`` says
otherwise (``created_at``, ``-created_at``, ``updated_at``, ``-updated_at``). ``starting_after``
and ``ending_before`` take the key of an item and are resolved against that order over the
whole resource, filters applied after, so a page boundary never moves when items are updated.
``min_created``/``max_created``/``min_updated``/``max_updated`` are epoch milliseconds, both
bounds inclusive.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from refsync.sandbox.partnerstack.errors import PartnerStackError

__all__ = [
    "DEFAULT_LIMIT",
    "MAX_LIMIT",
    "RESOURCES",
    "ListQuery",
    "ResourceSpec",
    "ResourceStore",
]

DEFAULT_LIMIT = 10
MAX_LIMIT = 250
_ORDERS = ("-created_at", "created_at", "-updated_at", "updated_at")


@dataclass(frozen=True)
class ResourceSpec:
    """What one resource looks like.

    Attributes:
        name: URL name (``leads``).
        singular: used in messages (``Lead``).
        prefix: prefix of generated keys.
        required: fields a create must carry.
        defaults: values of omitted fields on create.
        writable: fields a create/update may set.
        integers: fields that must be integers (amounts in cents).
        filters: fields usable as equality filters in list query parameters.
        updatable: whether PATCH is allowed.
        unique: a field no two items may share (e.g. ``customer_key``).
    """

    name: str
    singular: str
    prefix: str
    required: tuple[str, ...]
    defaults: dict[str, Any]
    writable: tuple[str, ...]
    integers: tuple[str, ...] = ()
    filters: tuple[str, ...] = ()
    updatable: bool = True
    unique: str | None = None


RESOURCES: dict[str, ResourceSpec] = {spec.name: spec for spec in (
    ResourceSpec(
        "partnerships", "Partnership", "part", required=("email",),
        defaults={"first_name": None, "last_name": None, "approved_status": "approved",
                  "group": {"key": "default", "name": "Default"}, "meta": {}},
        writable=("email", "first_name", "last_name", "approved_status", "group", "meta",
                  "partner_key"),
        filters=("email", "approved_status"), unique="email"),
    ResourceSpec(
        "leads", "Lead", "lead", required=("partner_key", "email"),
        defaults={"name": None, "company": None, "status": "new", "fields": {},
                  "external_key": None, "amount": None, "approved": None},
        writable=("partner_key", "email", "name", "company", "status", "fields",
                  "external_key", "amount", "approved"),
        integers=("amount",), filters=("partner_key", "email", "status", "external_key")),
    ResourceSpec(
        "deals", "Deal", "deal", required=("partner_key", "name"),
        defaults={"stage": "open", "amount": None, "currency": "usd", "close_date": None,
                  "external_key": None, "account_name": None, "lost_reason": None,
                  "fields": {}},
        writable=("partner_key", "name", "stage", "amount", "currency", "close_date",
                  "external_key", "account_name", "lost_reason", "fields"),
        integers=("amount",), filters=("partner_key", "stage", "external_key")),
    ResourceSpec(
        "customers", "Customer", "cust", required=("customer_key", "email"),
        defaults={"partner_key": None, "name": None, "meta": {}},
        writable=("customer_key", "partner_key", "email", "name", "meta"),
        filters=("partner_key", "email", "customer_key"), unique="customer_key"),
    ResourceSpec(
        "transactions", "Transaction", "txn", required=("customer_key", "amount"),
        defaults={"currency": "usd", "product_key": None, "category_key": None},
        writable=("customer_key", "amount", "currency", "product_key", "category_key"),
        integers=("amount",), filters=("customer_key",), updatable=False),
    ResourceSpec(
        "rewards", "Reward", "rwd", required=("partner_key", "amount"),
        defaults={"currency": "usd", "reward_status": "pending", "description": None,
                  "customer_key": None, "transaction_key": None},
        writable=("partner_key", "amount", "currency", "reward_status", "description",
                  "customer_key", "transaction_key"),
        integers=("amount",), filters=("partner_key", "reward_status", "customer_key"),
        updatable=True),
)}


@dataclass
class ListQuery:
    """Parsed list parameters."""

    limit: int = DEFAULT_LIMIT
    starting_after: str | None = None
    ending_before: str | None = None
    order_by: str = "-created_at"
    min_created: int | None = None
    max_created: int | None = None
    min_updated: int | None = None
    max_updated: int | None = None
    equals: dict[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, spec: ResourceSpec, params: dict[str, str]) -> ListQuery:
        """Read and check query parameters.

        Raises:
            PartnerStackError: 400 for a bad limit, order, bound or both cursors at once.
        """
        errors: dict[str, list[str]] = {}
        query = cls()

        def integer(name: str) -> int | None:
            raw = params.get(name)
            if raw is None or raw == "":
                return None
            try:
                return int(raw)
            except ValueError:
                errors[name] = ["Not a valid integer."]
                return None

        limit = integer("limit")
        if limit is not None:
            if not 1 <= limit <= MAX_LIMIT:
                errors["limit"] = [f"Must be between 1 and {MAX_LIMIT}."]
            query.limit = limit
        for bound in ("min_created", "max_created", "min_updated", "max_updated"):
            setattr(query, bound, integer(bound))
        query.starting_after = params.get("starting_after") or None
        query.ending_before = params.get("ending_before") or None
        if query.starting_after and query.ending_before:
            errors["starting_after"] = ["Cannot be combined with ending_before."]
        order = params.get("order_by") or "-created_at"
        if order not in _ORDERS:
            errors["order_by"] = [f"Must be one of: {', '.join(_ORDERS)}."]
        query.order_by = order
        query.equals = {name: params[name] for name in spec.filters if params.get(name)}
        if errors:
            raise PartnerStackError.invalid(errors)
        return query


class ResourceStore:
    """The items of one resource, keyed by ``key``, remembered in creation order.

    Args:
        spec: the resource description.
    """

    def __init__(self, spec: ResourceSpec) -> None:
        self.spec = spec
        self.items: dict[str, dict[str, Any]] = {}
        self.deleted: dict[str, dict[str, Any]] = {}
        self._serial: Iterator[int] = itertools.count(1)
        self._unique: dict[str, str] = {}
        self._members_version = 0
        self._version = 0
        self._orders: dict[str, tuple[int, list[str], dict[str, int]]] = {}

    def clear(self) -> None:
        """Forget every item."""
        self.items.clear()
        self.deleted.clear()
        self._unique.clear()
        self._serial = itertools.count(1)
        self._orders.clear()
        self._members_version += 1
        self._version += 1

    def new_key(self) -> str:
        """A fresh key; keys sort in creation order."""
        return f"{self.spec.prefix}_{next(self._serial):08d}"

    def get(self, key: str) -> dict[str, Any]:
        """The item with this key (or this unique value, e.g. a ``customer_key``).

        Raises:
            PartnerStackError: 404.
        """
        item = self.items.get(key)
        if item is None and self.spec.unique is not None:
            found = self._unique.get(key)
            item = self.items.get(found) if found else None
        if item is None:
            raise PartnerStackError(404, f"{self.spec.singular} not found")
        return item

    def holder_of(self, value: str) -> str | None:
        """Key of the item holding a unique value, if any."""
        return self._unique.get(value)

    def put(self, item: dict[str, Any]) -> None:
        """Insert or replace an item (its ``key`` is set)."""
        unique = self.spec.unique
        old = self.items.get(item["key"])
        if unique is not None:
            if old is not None and old.get(unique):
                self._unique.pop(str(old[unique]), None)
            if item.get(unique):
                self._unique[str(item[unique])] = item["key"]
        if old is None:
            self._members_version += 1
        self._version += 1
        self.items[item["key"]] = item

    def delete(self, key: str) -> None:
        """Remove an item from the API (kept for the control API, flagged deleted)."""
        item = self.get(key)
        self.items.pop(item["key"])
        if self.spec.unique is not None and item.get(self.spec.unique):
            self._unique.pop(str(item[self.spec.unique]), None)
        self.deleted[item["key"]] = item
        self._members_version += 1
        self._version += 1

    def page(self, query: ListQuery) -> tuple[list[dict[str, Any]], bool]:
        """One page of items and whether more follow in the paging direction."""
        keys, positions = self._ordered(query.order_by)
        keep = self._filter(query)
        items = self.items
        page: list[dict[str, Any]] = []
        if query.ending_before:
            position = self._position(positions, query.ending_before, "ending_before")
            for index in range(position - 1, -1, -1):
                item = items[keys[index]]
                if not keep(item):
                    continue
                if len(page) == query.limit:
                    page.reverse()
                    return page, True
                page.append(item)
            page.reverse()
            return page, False
        start = 0
        if query.starting_after:
            start = self._position(positions, query.starting_after, "starting_after") + 1
        for index in range(start, len(keys)):
            item = items[keys[index]]
            if not keep(item):
                continue
            if len(page) == query.limit:
                return page, True
            page.append(item)
        return page, False

    def _ordered(self, order_by: str) -> tuple[list[str], dict[str, int]]:
        """Keys in list order and each key's position, cached until the order can change."""
        by_created = order_by.lstrip("-") == "created_at"
        version = self._members_version if by_created else self._version
        cached = self._orders.get(order_by)
        if cached is not None and cached[0] == version:
            return cached[1], cached[2]
        field_name = order_by.lstrip("-")
        items = sorted(self.items.values(), key=lambda i: (i[field_name], i["key"]),
                       reverse=order_by.startswith("-"))
        keys = [item["key"] for item in items]
        positions = {key: index for index, key in enumerate(keys)}
        self._orders[order_by] = (version, keys, positions)
        return keys, positions

    def _position(self, positions: dict[str, int], key: str, parameter: str) -> int:
        position = positions.get(key)
        if position is None:
            raise PartnerStackError.invalid(
                {parameter: [f"{self.spec.singular} {key} does not exist."]})
        return position

    @staticmethod
    def _filter(query: ListQuery) -> Callable[[dict[str, Any]], bool]:
        checks: list[Callable[[dict[str, Any]], bool]] = []
        if query.min_created is not None:
            low_c = query.min_created
            checks.append(lambda i: i["created_at"] >= low_c)
        if query.max_created is not None:
            high_c = query.max_created
            checks.append(lambda i: i["created_at"] <= high_c)
        if query.min_updated is not None:
            low_u = query.min_updated
            checks.append(lambda i: i["updated_at"] >= low_u)
        if query.max_updated is not None:
            high_u = query.max_updated
            checks.append(lambda i: i["updated_at"] <= high_u)
        for name, value in query.equals.items():
            checks.append(_equals(name, value))
        return lambda item: all(check(item) for check in checks)


def _equals(name: str, value: str) -> Callable[[dict[str, Any]], bool]:
    return lambda item: str(item.get(name)) == value
