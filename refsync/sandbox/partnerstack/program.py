"""One vendor's partner program: partnerships, leads, deals, customers, transactions, rewards.

Plain Python raising :class:`PartnerStackError`; the routes turn calls into HTTP. Writes stamp
``updated_at`` (and ``created_at`` on create) with one strictly increasing epoch-millisecond
tick per call. A transaction for a customer referred by a partner earns that partner a reward
(``commission_rate`` of the amount, ``reward_status: pending``).
"""

from __future__ import annotations

from typing import Any

from refsync.sandbox.hubspot.clock import WriteClock
from refsync.sandbox.partnerstack.errors import PartnerStackError
from refsync.sandbox.partnerstack.resources import RESOURCES, ListQuery, ResourceStore

__all__ = ["SEED_ORDER", "PartnerProgram"]

#: order in which seed data is loaded, so that references resolve
SEED_ORDER = ("partnerships", "customers", "leads", "deals", "transactions", "rewards")

_REFERENCES = {
    "partner_key": "partnerships",
    "customer_key": "customers",
}

#: the last epoch millisecond of the year 9999, the latest instant a date-time can hold
_LAST_EPOCH_MS = 253_402_300_799_999


class PartnerProgram:
    """The program's data.

    Args:
        clock: write clock (inject one with a fake time source in tests).
        commission_rate: share of a transaction's amount paid as the partner's reward.
    """

    def __init__(self, clock: WriteClock | None = None, commission_rate: float = 0.2) -> None:
        self.clock = clock or WriteClock()
        self.commission_rate = commission_rate
        self.stores = {name: ResourceStore(spec) for name, spec in RESOURCES.items()}

    def reset(self) -> None:
        """Forget every item."""
        for store in self.stores.values():
            store.clear()

    def store(self, resource: str) -> ResourceStore:
        """The store of a resource.

        Raises:
            PartnerStackError: 404 for an unknown resource.
        """
        found = self.stores.get(resource)
        if found is None:
            raise PartnerStackError(404, f"Resource {resource} not found")
        return found

    # ----------------------------------------------------------------- reads
    def list(self, resource: str, params: dict[str, str]) -> dict[str, Any]:
        """``GET /api/v2/{resource}``: ``{"items": [...], "has_more": bool}``."""
        store = self.store(resource)
        items, has_more = store.page(ListQuery.parse(store.spec, params))
        return {"items": [dict(item) for item in items], "has_more": has_more}

    def get(self, resource: str, key: str) -> dict[str, Any]:
        """``GET /api/v2/{resource}/{key}``."""
        return dict(self.store(resource).get(key))

    # ---------------------------------------------------------------- writes
    def create(
        self, resource: str, body: Any, *, stamp: int | None = None, trusted: bool = False
    ) -> dict[str, Any]:
        """``POST /api/v2/{resource}``: create an item and return it.

        Args:
            stamp: write time (a fresh tick when omitted).
            trusted: seed data may set ``key`` (text), ``created_at`` and ``updated_at``
                (epoch milliseconds); other values of them are refused like invalid fields.
        """
        store = self.store(resource)
        spec = store.spec
        values = self._checked(store, body, creating=True, trusted=trusted)
        now = stamp if stamp is not None else self.clock.tick()
        item: dict[str, Any] = {"key": store.new_key(), **spec.defaults, **values}
        if trusted and isinstance(body, dict):
            for name in ("key", "created_at", "updated_at"):
                if body.get(name) is not None:
                    item[name] = body[name]
        if item["key"] in store.items:
            raise PartnerStackError(409, f"{spec.singular} {item['key']} already exists")
        item.setdefault("created_at", now)
        item.setdefault("updated_at", item["created_at"])
        if resource == "leads" or resource == "deals":
            item["fields"] = dict(item.get("fields") or {})
        store.put(item)
        if resource == "transactions":
            self._reward_for(item, now)
        return dict(item)

    def update(self, resource: str, key: str, body: Any) -> dict[str, Any]:
        """``PATCH /api/v2/{resource}/{key}``: change the given fields (``fields`` is merged)."""
        store = self.store(resource)
        if not store.spec.updatable:
            raise PartnerStackError(405, f"{store.spec.singular} items cannot be updated")
        current = store.get(key)
        values = self._checked(store, body, creating=False, own_key=current["key"])
        updated = dict(current)
        for name, value in values.items():
            if name == "fields" and isinstance(value, dict):
                merged = dict(updated.get("fields") or {})
                merged.update(value)
                updated["fields"] = merged
            else:
                updated[name] = value
        updated["updated_at"] = self.clock.tick()
        store.put(updated)
        return dict(updated)

    def delete(self, resource: str, key: str) -> None:
        """``DELETE /api/v2/{resource}/{key}``."""
        self.store(resource).delete(key)

    # --------------------------------------------------------------- helpers
    def _checked(
        self,
        store: ResourceStore,
        body: Any,
        *,
        creating: bool,
        trusted: bool = False,
        own_key: str | None = None,
    ) -> dict[str, Any]:
        spec = store.spec
        if not isinstance(body, dict):
            raise PartnerStackError(400, "Request body must be a JSON object")
        errors: dict[str, list[str]] = {}
        ignored = {"key", "created_at", "updated_at"} if trusted else set()
        values: dict[str, Any] = {}
        for name, value in body.items():
            if name in ignored:
                continue
            if name == "group_key" and spec.name == "partnerships":
                values["group"] = {"key": str(value), "name": str(value).title()}
                continue
            if name not in spec.writable:
                errors[name] = ["Unknown field."]
                continue
            values[name] = value
        if creating:
            for name in spec.required:
                if values.get(name) in (None, ""):
                    errors[name] = ["Missing data for required field."]
        for name in spec.integers:
            value = values.get(name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                errors[name] = ["Not a valid integer (amounts are in cents)."]
        if "email" in values and values["email"] is not None and "@" not in str(values["email"]):
            errors["email"] = ["Not a valid email address."]
        if "fields" in values and values["fields"] is not None and not isinstance(
                values["fields"], dict):
            errors["fields"] = ["Must be an object of custom field values."]
        for name, target in _REFERENCES.items():
            value = values.get(name)
            if value and name != spec.unique:
                try:
                    self.stores[target].get(str(value))
                except PartnerStackError:
                    errors[name] = [f"{RESOURCES[target].singular} {value} does not exist."]
        if spec.unique and values.get(spec.unique):
            holder = store.holder_of(str(values[spec.unique]))
            if holder is not None and holder != own_key:
                raise PartnerStackError(
                    409, f"{spec.singular} with {spec.unique} {values[spec.unique]} already "
                    "exists")
        if trusted:
            errors.update(_system_field_problems(body))
        if errors:
            raise PartnerStackError.invalid(errors)
        return values

    def _reward_for(self, transaction: dict[str, Any], stamp: int) -> None:
        customer = self.stores["customers"].get(str(transaction["customer_key"]))
        partner_key = customer.get("partner_key")
        if not partner_key:
            return
        rewards = self.stores["rewards"]
        amount = round(int(transaction["amount"]) * self.commission_rate)
        rewards.put({
            "key": rewards.new_key(),
            **RESOURCES["rewards"].defaults,
            "partner_key": partner_key,
            "customer_key": customer["customer_key"],
            "transaction_key": transaction["key"],
            "amount": amount,
            "currency": transaction.get("currency", "usd"),
            "description": f"Commission on {transaction['key']}",
            "created_at": stamp,
            "updated_at": stamp,
        })


def _system_field_problems(body: dict[str, Any]) -> dict[str, list[str]]:
    """Problems of the system fields seed data may set (``key``, ``created_at``, ``updated_at``).

    They are stored as given and every listing sorts on them: one of another type would make
    each listing of the resource fail, so it is refused with the rest of the item's problems.
    """
    problems: dict[str, list[str]] = {}
    key = body.get("key")
    if key is not None and (not isinstance(key, str) or not key):
        problems["key"] = [f"Not a valid key: expected a non-empty string, got {key!r}."]
    for name in ("created_at", "updated_at"):
        value = body.get(name)
        if value is None:
            continue
        if (isinstance(value, bool) or not isinstance(value, int)
                or not 0 <= value <= _LAST_EPOCH_MS):
            problems[name] = [
                "Not a valid timestamp: expected epoch milliseconds (an integer from 0 to "
                f"{_LAST_EPOCH_MS}), got {value!r}."]
    return problems
