"""The HubSpot CRM emulator: portal data, tokens and rate limits behind the CRM v3 routes."""

from __future__ import annotations

import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from starlette.routing import BaseRoute

from refsync.sandbox.core import Emulator, EmulatorRequestError, FaultRule
from refsync.sandbox.hubspot.auth import OAUTH_CLIENT, TokenBook
from refsync.sandbox.hubspot.clock import WriteClock, iso_ms
from refsync.sandbox.hubspot.errors import (
    HubSpotApiError,
    PropertyProblem,
    error_body,
    property_values_error,
    rate_limit_body,
)
from refsync.sandbox.hubspot.portal import Portal
from refsync.sandbox.hubspot.ratelimit import HubSpotLimits, RateLimiter
from refsync.sandbox.hubspot.routes import hubspot_routes
from refsync.sandbox.hubspot.schema import DEAL_STAGES, PropertyDef
from refsync.sandbox.hubspot.store import HubSpotRecord, ObjectStore

__all__ = ["PARTIAL_FAILURE_MARKER", "HubSpotEmulator"]

#: text that makes a batch input fail under the ``partial_batch_failure`` preset
PARTIAL_FAILURE_MARKER = "sandbox-fail"

_OPEN_STAGES = DEAL_STAGES[:5]
_BATCH_WRITES = r"^/crm/v3/objects/[^/]+/batch/(create|update|upsert)$"


@dataclass(frozen=True)
class _SeedRow:
    """A checked seed record, ready to be written."""

    values: dict[str, str]
    archived: bool
    links: list[dict[str, Any]]


class HubSpotEmulator(Emulator):
    """Emulates the HubSpot CRM v3 API (objects, search, batch, properties, associations v4).

    Args:
        limits: rate-limit settings; enforced with HubSpot Pro's numbers by default.
        now: epoch seconds, used for write timestamps and OAuth token expiry.
        monotonic: monotonic seconds, used for the rate-limit windows.
    """

    name: ClassVar[str] = "hubspot"

    def __init__(
        self,
        *,
        limits: HubSpotLimits | None = None,
        now: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self.portal = Portal(WriteClock(now))
        self.tokens = TokenBook(now)
        self.limiter = RateLimiter(limits, monotonic)
        self._routes = hubspot_routes(self)

    # ------------------------------------------------------------- lifecycle
    def reset(self) -> None:
        """Empty portal, no tokens, fresh rate-limit windows, no faults, no call counts."""
        super().reset()
        self.portal.reset()
        self.tokens.reset()
        self.limiter.reset()

    def api_routes(self) -> list[BaseRoute]:
        """The CRM v3/v4 and OAuth routes."""
        return list(self._routes)

    def credentials(self) -> dict[str, str]:
        """The private-app token plus the sandbox OAuth app (for the refresh flow)."""
        creds = super().credentials()
        creds.update(OAUTH_CLIENT)
        return creds

    # ------------------------------------------------------------------ seed
    def seed(self, payload: dict[str, Any]) -> dict[str, int]:
        """Add records: ``{"contacts": [{"properties": {...}} | {flat properties}], ...}``.

        Unknown object names become custom object types. Two optional keys extend the portal:
        ``"$properties": {"<type>": [{"name", "type", "options", "hasUniqueValue"}]}`` adds
        properties, and a record's ``"associations": [{"to": "<type>", "id": "<id>",
        "idProperty": "<unique property>"}]`` links it to an existing record, or through a
        unique property to one seeded in the same payload. Seed data may set ``createdate`` and
        ``hs_lastmodifieddate``.

        All or nothing: the whole payload is checked before anything is written, and a payload
        with one bad record or link leaves the portal as it was (no records, no types, no
        properties added).

        Raises:
            EmulatorRequestError: invalid values, duplicate unique values or an association
                whose target cannot be found.
        """
        portal = self.portal
        before = portal.schema_snapshot()
        try:
            plan = self._seed_plan(payload)
        except Exception:
            portal.restore_schema(before)
            raise
        return self._write_seed(plan)

    def _seed_plan(self, payload: dict[str, Any]) -> list[tuple[ObjectStore, list[_SeedRow]]]:
        """Check every record and link of a seed, defining the types and properties it needs.

        Raises:
            EmulatorRequestError: the first problem found; no record has been written.
        """
        extra_properties = payload.get("$properties") or {}
        if not isinstance(extra_properties, dict) or not all(
                isinstance(items, list)
                and all(isinstance(item, dict) and "name" in item for item in items)
                for items in extra_properties.values()):
            raise EmulatorRequestError(
                '$properties must be {"<type>": [{"name": ..., "type": ...}]}')
        for type_name, definitions in extra_properties.items():
            store = self._store_or_new(type_name)
            for item in definitions:
                store.schema.add(_property_from_api(item))
        plan: list[tuple[ObjectStore, list[_SeedRow]]] = []
        # (type, unique property, value) → the seed record holding it, e.g. contacts[3]
        seeded: dict[tuple[str, str, str], str] = {}
        for type_name, rows in payload.items():
            if type_name.startswith("$"):
                continue
            if not isinstance(rows, list) or not all(isinstance(row, dict) for row in rows):
                raise EmulatorRequestError(f"seed for {type_name!r} must be a list of records")
            store = self._store_or_new(type_name, rows)
            planned = [self._seed_row(store, type_name, position, row, seeded)
                       for position, row in enumerate(rows)]
            plan.append((store, planned))
        for _, planned in plan:
            for row in planned:
                for link in row.links:
                    self._seed_target(link, seeded)
        return plan

    def _seed_row(
        self, store: ObjectStore, type_name: str, position: int, row: dict[str, Any],
        seeded: dict[tuple[str, str, str], str],
    ) -> _SeedRow:
        """One checked seed record; its live unique values are claimed in ``seeded``."""
        where = f"{type_name}[{position}]"
        properties = row.get("properties")
        values: dict[str, Any] = properties if isinstance(properties, dict) else {
            k: v for k, v in row.items() if k not in ("id", "archived", "associations")}
        clean, problems = store.check_values(values, trusted=True)
        if problems:
            raise EmulatorRequestError(f"{where}: " + "; ".join(
                f"{problem.name}: {problem.message} ({problem.code})" for problem in problems))
        taken = store.conflict(clean, None)
        if taken is not None:
            raise EmulatorRequestError(
                f"{where}: {taken[0]} {clean[taken[0]]!r} is already used by record {taken[1]}")
        archived = bool(row.get("archived"))
        for name in store.schema.unique_properties:
            if not clean.get(name):
                continue
            claim = (store.schema.name, name, store.unique_key(name, clean[name]))
            if claim in seeded:
                raise EmulatorRequestError(
                    f"{where}: {name} {clean[name]!r} is already used by {seeded[claim]}")
            if not archived:  # archiving frees a record's unique values
                seeded[claim] = where
        links = row.get("associations") or []
        if not isinstance(links, list) or not all(isinstance(link, dict) for link in links):
            raise EmulatorRequestError(
                f'{where}: associations must be a list of {{"to", "id", "idProperty"}}')
        return _SeedRow(clean, archived, links)

    def _write_seed(self, plan: list[tuple[ObjectStore, list[_SeedRow]]]) -> dict[str, int]:
        """Create the checked records of a seed, then link them."""
        portal = self.portal
        stamp = portal.clock.tick()
        counts: dict[str, int] = {}
        pending_links: list[tuple[str, HubSpotRecord, list[dict[str, Any]]]] = []
        for store, rows in plan:
            written: list[HubSpotRecord] = []
            for row in rows:
                record = portal.create_record(store, row.values, stamp)
                if row.archived:
                    store.archive(record, stamp)
                if row.links:
                    pending_links.append((store.schema.name, record, row.links))
                written.append(record)
            portal.search_index.written(store.schema.name, written)
            counts[store.schema.name] = counts.get(store.schema.name, 0) + len(rows)
        for from_type, record, links in pending_links:
            for link in links:
                to_type, to_id = self._seed_target(link)
                portal.associations.add(from_type, record.id, to_type, to_id)
        return counts

    def _store_or_new(self, type_name: str, rows: list[Any] | None = None) -> ObjectStore:
        try:
            return self.portal.store(type_name)
        except HubSpotApiError:
            store = self.portal.define_object(type_name)
        for row in rows or []:
            values = row.get("properties") if isinstance(row.get("properties"), dict) else row
            for name in values:
                if name not in store.schema.properties and name not in (
                        "id", "archived", "associations"):
                    store.schema.add(PropertyDef(name, "string", group_name="custom",
                                                 has_unique_value=name == "refsync_id"))
        return store

    def _seed_target(
        self, link: dict[str, Any], seeded: dict[tuple[str, str, str], str] | None = None
    ) -> tuple[str, str]:
        """The ``(type, id)`` a seed association points to.

        With ``seeded`` (while checking a seed), a target found through a unique property may
        also be a record of the same seed, not written yet; its id is then ``""``.

        Raises:
            EmulatorRequestError: no such type or record, or ``idProperty`` is not unique.
        """
        try:
            store = self.portal.store(str(link.get("to", "")))
            record_id, id_property = str(link.get("id", "")), link.get("idProperty")
            if seeded is not None and id_property and (
                    store.schema.name, id_property,
                    store.unique_key(id_property, record_id)) in seeded:
                return store.schema.name, ""
            record = self.portal.find(store, record_id, id_property)
        except HubSpotApiError as exc:
            raise EmulatorRequestError(f"seed association {link}: {exc.body['message']}") from None
        return store.schema.name, record.id

    def records(self, object_name: str) -> list[dict[str, Any]]:
        """Every record of a type with all its properties, archived ones flagged."""
        try:
            store = self.portal.store(object_name)
        except HubSpotApiError:
            raise KeyError(object_name) from None
        names = list(store.schema.properties)
        return [store.serialize(r, names) for r in store.records.values()]

    # -------------------------------------------------------------- settings
    def configure(self, settings: dict[str, Any]) -> dict[str, Any]:
        """Change knobs; return them all.

        Settings: ``enforce_rate_limits`` (bool), ``ten_secondly_max``, ``daily_max``,
        ``search_per_second``, ``daily_used`` (spend today's allowance), ``search_lag_ms``,
        ``oauth_token_lifetime_s``.
        """
        limit_names = {"ten_secondly_max", "daily_max", "search_per_second"}
        for key, value in settings.items():
            if key == "enforce_rate_limits":
                self.limiter.configure(enforce=bool(value))
            elif key in limit_names:
                self.limiter.configure(**{key: int(value)})
            elif key == "daily_used":
                self.limiter.spend_daily(int(value))
            elif key == "search_lag_ms":
                self.portal.search_index.set_lag(int(value), self.portal.stores)
            elif key == "oauth_token_lifetime_s":
                self.tokens.oauth_token_lifetime_s = int(value)
            else:
                raise EmulatorRequestError(f"unknown HubSpot setting {key!r}")
        limits = self.limiter.limits
        return {
            "enforce_rate_limits": limits.enforce,
            "ten_secondly_max": limits.ten_secondly_max,
            "daily_max": limits.daily_max,
            "search_per_second": limits.search_per_second,
            "daily_used": self.limiter.daily_used,
            "search_lag_ms": self.portal.search_index.lag_ms,
            "oauth_token_lifetime_s": self.tokens.oauth_token_lifetime_s,
        }

    # ---------------------------------------------------------------- faults
    def fault_presets(self) -> dict[str, list[FaultRule]]:
        """HubSpot's flavour of the faults refsync must survive.

        - ``daily_limit``: every CRM call gets the DAILY 429 until the faults are cleared;
        - ``rate_limit_burst``: the next 3 calls get the TEN_SECONDLY_ROLLING 429 (no
          Retry-After, as HubSpot often sends none);
        - ``expired_token``: the next call gets 401 EXPIRED_AUTHENTICATION;
        - ``partial_batch_failure``: batch create/update/upsert inputs whose JSON contains
          ``sandbox-fail`` (override with ``match_record``) fail with INVALID_OPTION, the rest
          succeed (207).
        """
        exhausted = {
            "X-HubSpot-RateLimit-Daily": str(self.limiter.limits.daily_max),
            "X-HubSpot-RateLimit-Daily-Remaining": "0",
        }
        invalid = PropertyProblem(
            "refsync_status", "INVALID_OPTION",
            f"{PARTIAL_FAILURE_MARKER} was not one of the allowed options")
        record_error = property_values_error([invalid])
        return {
            "daily_limit": [FaultRule(
                path=r"^/crm/", status=429, headers=exhausted, preset="daily_limit",
                body=rate_limit_body("DAILY", "You have reached your daily limit.",
                                     "publicapi-private-app"))],
            "rate_limit_burst": [FaultRule(
                path=r"^/crm/", status=429, times=3, preset="rate_limit_burst",
                body=rate_limit_body("TEN_SECONDLY_ROLLING",
                                     "You have reached your ten_secondly_rolling limit.",
                                     "publicapi-private-app"))],
            "expired_token": [FaultRule(
                path=r"^/crm/", status=401, times=1, preset="expired_token",
                body=TokenBook.expired_error(1).body)],
            "partial_batch_failure": [FaultRule(
                method="POST", path=_BATCH_WRITES, match_record=PARTIAL_FAILURE_MARKER,
                preset="partial_batch_failure",
                body={"message": record_error["message"], "category": "VALIDATION_ERROR",
                      "errors": record_error["errors"]})],
        }

    def fault_body(self, status: int) -> Any:
        """HubSpot's body for an injected status."""
        if status == 429:
            return rate_limit_body("TEN_SECONDLY_ROLLING",
                                   "You have reached your ten_secondly_rolling limit.",
                                   "publicapi-private-app")
        if status == 401:
            return TokenBook.expired_error(0).body
        category = "INTERNAL_ERROR" if status >= 500 else "VALIDATION_ERROR"
        return error_body(f"Sandbox fault: HTTP {status}", category)

    def response_headers(self) -> dict[str, str]:
        """Usage headers for injected answers too."""
        return self.limiter.headers(daily_headers=True)

    def not_found_body(self, path: str) -> Any:
        """HubSpot's 404 for an unknown path."""
        return error_body(f"Unable to route request to {path}", "OBJECT_NOT_FOUND")

    # -------------------------------------------------------------- simulate
    def simulate(self, payload: dict[str, Any]) -> dict[str, Any]:
        """Deterministic sales activity on deals: each step moves every open deal one stage on.

        A deal in ``contractsent`` closes: won (about two in three, decided by its id) with an
        amount and a close date, or lost. Contacts associated with a won deal become customers.

        Args:
            payload: ``steps`` (default 1), ``limit`` (deals touched per step, default all),
                ``ids`` (only these deal ids).
        """
        steps = int(payload.get("steps", 1))
        limit = payload.get("limit")
        only = {str(i) for i in payload.get("ids") or []}
        deals = self.portal.store("deals")
        contacts = self.portal.store("contacts")
        advanced = 0
        won: list[str] = []
        lost: list[str] = []
        for _ in range(max(0, steps)):
            stamp = self.portal.clock.tick()
            touched: list[HubSpotRecord] = []
            for record in list(deals.live()):
                if limit is not None and len(touched) >= int(limit):
                    break
                if only and record.id not in only:
                    continue
                stage = record.properties.get("dealstage", _OPEN_STAGES[0])
                if stage not in _OPEN_STAGES:
                    continue
                changes = self._next_stage(record, stage, stamp)
                deals.update(record, changes, stamp)
                touched.append(record)
                if changes["dealstage"] == "closedwon":
                    won.append(record.id)
                    self._mark_customers(record.id, contacts, stamp)
                elif changes["dealstage"] == "closedlost":
                    lost.append(record.id)
                else:
                    advanced += 1
            self.portal.search_index.written("deals", touched)
        return {"advanced": advanced, "won": won, "lost": lost}

    @staticmethod
    def _next_stage(record: HubSpotRecord, stage: str, stamp: int) -> dict[str, str]:
        if stage != _OPEN_STAGES[-1]:
            return {"dealstage": _OPEN_STAGES[_OPEN_STAGES.index(stage) + 1]}
        fingerprint = zlib.crc32(record.id.encode())
        if fingerprint % 3 == 0:
            return {"dealstage": "closedlost", "closedate": iso_ms(stamp)}
        changes = {"dealstage": "closedwon", "closedate": iso_ms(stamp)}
        if "amount" not in record.properties:
            changes["amount"] = str(1000 + (fingerprint % 50) * 500)
        return changes

    def _mark_customers(self, deal_id: str, contacts: ObjectStore, stamp: int) -> None:
        changed = []
        for link in self.portal.associations.of("deals", deal_id, "contacts"):
            contact = contacts.get(str(link["toObjectId"]))
            if contact is not None:
                contacts.update(contact, {"lifecyclestage": "customer"}, stamp)
                changed.append(contact)
        self.portal.search_index.written("contacts", changed)


def _property_from_api(item: dict[str, Any]) -> PropertyDef:
    """A property definition from its API form (``name``, ``type``, ``options``...)."""
    options = tuple(o["value"] if isinstance(o, dict) else str(o)
                    for o in item.get("options") or [])
    return PropertyDef(
        name=str(item["name"]),
        type=str(item.get("type", "enumeration" if options else "string")),
        label=str(item.get("label", "")),
        options=options,
        has_unique_value=bool(item.get("hasUniqueValue", False)),
        field_type=str(item.get("fieldType", "")),
        group_name=str(item.get("groupName", "custom")),
    )
