"""The PartnerStack vendor API v2 emulator."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, ClassVar

from starlette.routing import BaseRoute

from refsync.sandbox.core import SANDBOX_CREDENTIALS, Emulator, EmulatorRequestError, FaultRule
from refsync.sandbox.hubspot.clock import WriteClock
from refsync.sandbox.partnerstack.errors import PartnerStackError, error_envelope
from refsync.sandbox.partnerstack.program import SEED_ORDER, PartnerProgram
from refsync.sandbox.partnerstack.routes import partnerstack_routes

__all__ = ["PartnerStackEmulator"]


class PartnerStackEmulator(Emulator):
    """Emulates the PartnerStack vendor API v2 (``/api/v2``, HTTP Basic auth).

    Args:
        now: epoch seconds used for ``created_at``/``updated_at`` (inject a fake in tests).
    """

    name: ClassVar[str] = "partnerstack"

    def __init__(self, *, now: Callable[[], float] = time.time) -> None:
        super().__init__()
        creds = SANDBOX_CREDENTIALS["partnerstack"]
        self.keys = (creds["public_key"], creds["secret_key"])
        self.program = PartnerProgram(WriteClock(now))
        self._routes = partnerstack_routes(self)

    def reset(self) -> None:
        """Empty program, no faults, no call counts."""
        super().reset()
        self.program.reset()

    def api_routes(self) -> list[BaseRoute]:
        """The ``/api/v2`` routes."""
        return list(self._routes)

    def seed(self, payload: dict[str, Any]) -> dict[str, int]:
        """Add items given as ``{"<resource>": [items in API field names]}``.

        Items may carry ``key``, ``created_at`` and ``updated_at`` (epoch ms); references
        (``partner_key``, ``customer_key``) must point at existing or seeded items. Resources
        load partnerships first, so references resolve whatever the payload's order.

        Raises:
            EmulatorRequestError: unknown resource or invalid item.
        """
        unknown = sorted(set(payload) - set(SEED_ORDER))
        if unknown:
            raise EmulatorRequestError(
                f"PartnerStack has no resource {unknown[0]!r}; known: {', '.join(SEED_ORDER)}")
        stamp = self.program.clock.tick()
        counts: dict[str, int] = {}
        for resource in SEED_ORDER:
            rows = payload.get(resource)
            if rows is None:
                continue
            if not isinstance(rows, list):
                raise EmulatorRequestError(f"seed for {resource!r} must be a list of items")
            for position, row in enumerate(rows):
                try:
                    self.program.create(resource, row, stamp=stamp, trusted=True)
                except PartnerStackError as exc:
                    raise EmulatorRequestError(
                        f"{resource}[{position}]: {exc.message}") from None
            counts[resource] = len(rows)
        return counts

    def records(self, object_name: str) -> list[dict[str, Any]]:
        """Every item of a resource, deleted ones flagged ``"deleted": true``."""
        store = self.program.stores.get(object_name)
        if store is None:
            raise KeyError(object_name)
        live = [{**item, "deleted": False} for item in store.items.values()]
        gone = [{**item, "deleted": True} for item in store.deleted.values()]
        return sorted(live + gone, key=lambda i: (i["created_at"], i["key"]))

    def simulate(self, payload: dict[str, Any]) -> dict[str, Any]:
        """Deterministic partner activity: approved partners submit new leads in turn.

        Args:
            payload: ``new_leads`` (default 1): how many leads to submit, one write each;
                ``status`` (default ``new``): the status they are submitted with.

        Raises:
            EmulatorRequestError: there is no approved partnership to submit them.
        """
        count = int(payload.get("new_leads", 1))
        status = str(payload.get("status") or "new")
        partners = sorted(
            key for key, item in self.program.stores["partnerships"].items.items()
            if item.get("approved_status") == "approved")
        if count > 0 and not partners:
            raise EmulatorRequestError("no approved partnership to submit leads")
        leads = self.program.stores["leads"]
        created = []
        for turn in range(max(0, count)):
            serial = len(leads.items) + len(leads.deleted) + 1
            item = self.program.create("leads", {
                "partner_key": partners[turn % len(partners)],
                "email": f"prospect{serial:05d}@sim-prospect.example",
                "name": f"Simulated Prospect {serial}",
                "company": f"Sim Prospect {serial} Ltd",
                "status": status,
            })
            created.append(item["key"])
        return {"new_leads": created}

    def fault_presets(self) -> dict[str, list[FaultRule]]:
        """PartnerStack's flavour: ``unauthorized`` (the next call gets 401)."""
        return {
            "unauthorized": [FaultRule(
                path=r"^/api/v2/", status=401, times=1, preset="unauthorized",
                body=error_envelope(401, "Unauthorized: check your public and secret key"))],
        }

    def fault_body(self, status: int) -> Any:
        """PartnerStack's envelope for an injected status."""
        return error_envelope(status, f"Sandbox fault: HTTP {status}")

    def not_found_body(self, path: str) -> Any:
        """PartnerStack's 404 envelope."""
        return error_envelope(404, f"Resource not found: {path}")
