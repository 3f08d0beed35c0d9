"""The emulated HubSpot portal: object types, records, associations and single-record calls.

Everything here is plain Python and raises :class:`HubSpotApiError` for error answers; the
routes turn calls and answers into HTTP. Batch calls live in :mod:`.batch`.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from refsync.sandbox.hubspot.associations import AssociationStore, default_type_id
from refsync.sandbox.hubspot.clock import WriteClock, iso_ms
from refsync.sandbox.hubspot.errors import (
    HubSpotApiError,
    batch_error,
    error_body,
    property_values_error,
)
from refsync.sandbox.hubspot.schema import (
    DEFAULT_ASSOCIATION_TYPES,
    ObjectSchema,
    PropertyDef,
    default_schemas,
)
from refsync.sandbox.hubspot.search import SearchIndex, run_search
from refsync.sandbox.hubspot.store import HubSpotRecord, ObjectStore, id_sequence

__all__ = ["ASSOCIATIONS_PER_RESULT", "MAX_LIST_LIMIT", "Portal", "SchemaSnapshot"]

ASSOCIATIONS_PER_RESULT = 500
"""Associations of one record a batch read returns at a time (the rest by ``paging.next``)."""

MAX_LIST_LIMIT = 100

_SINGULAR_ALIASES = {"contact": "contacts", "company": "companies", "deal": "deals"}


@dataclass(frozen=True)
class SchemaSnapshot:
    """The portal's object types and their properties at one moment."""

    stores: dict[str, ObjectStore]
    properties: dict[str, dict[str, PropertyDef]]
    next_custom: int


class Portal:
    """One HubSpot account's CRM data.

    Args:
        clock: write clock shared by every object type.
    """

    def __init__(self, clock: WriteClock | None = None) -> None:
        self.clock = clock or WriteClock()
        self.search_index = SearchIndex(self.clock.now_ms)
        self.associations = AssociationStore()
        self.stores: dict[str, ObjectStore] = {}
        self._order: dict[str, list[int]] = {}
        self.reset()

    # ------------------------------------------------------------------ setup
    def reset(self) -> None:
        """Back to a fresh portal: default types and properties, no records."""
        self._ids = id_sequence()
        self._next_custom = 1
        self.stores = {name: ObjectStore(s, self._ids) for name, s in default_schemas().items()}
        self._order = {name: [] for name in self.stores}
        self.associations.clear()
        self.search_index.reset()
        self.search_index.set_lag(self.search_index.lag_ms, self.stores)

    def schema_snapshot(self) -> SchemaSnapshot:
        """The object types and their properties as they are now (see :meth:`restore_schema`)."""
        return SchemaSnapshot(
            stores=dict(self.stores),
            properties={name: dict(store.schema.properties)
                        for name, store in self.stores.items()},
            next_custom=self._next_custom,
        )

    def restore_schema(self, snapshot: SchemaSnapshot) -> None:
        """Undo the object types and properties defined since ``snapshot`` was taken.

        Only for types that gained no records since: a type defined since is dropped whole.
        """
        for name in [name for name in self.stores if name not in snapshot.stores]:
            del self.stores[name]
            self._order.pop(name, None)
        for name, properties in snapshot.properties.items():
            schema = self.stores[name].schema
            schema.properties.clear()
            schema.add(*properties.values())
        self._next_custom = snapshot.next_custom

    def define_object(self, name: str) -> ObjectStore:
        """Create a custom object type (``2-<n>``) with the system properties."""
        schema = ObjectSchema(name, f"2-{self._next_custom}", name.rstrip("s").upper(),
                              default_read=("createdate", "hs_lastmodifieddate", "hs_object_id"))
        self._next_custom += 1
        schema.add(
            PropertyDef("hs_object_id", "number", "Record ID", read_only=True, group_name="system"),
            PropertyDef("createdate", "datetime", "Create date", read_only=True,
                        group_name="system"),
            PropertyDef("hs_lastmodifieddate", "datetime", "Last modified date", read_only=True,
                        calculated=True, group_name="system"),
        )
        store = ObjectStore(schema, self._ids)
        self.stores[name] = store
        self._order[name] = []
        return store

    def store(self, object_type: str) -> ObjectStore:
        """The store for an object type given by plural/singular name or type id.

        Raises:
            HubSpotApiError: 400 for an unknown object type.
        """
        name = _SINGULAR_ALIASES.get(object_type.lower(), object_type.lower())
        found = self.stores.get(name)
        if found is not None:
            return found
        for store in self.stores.values():
            if object_type in (store.schema.type_id, store.schema.singular.lower()):
                return store
        raise HubSpotApiError.validation(f"Unable to infer object type from: {object_type}")

    # ---------------------------------------------------------------- writing
    def create_record(
        self, store: ObjectStore, values: dict[str, str], stamp_ms: int
    ) -> HubSpotRecord:
        """Create a record from checked values and index it (no validation here)."""
        record = store.create(values, stamp_ms)
        self._order[store.schema.name].append(int(record.id))
        return record

    def checked(self, store: ObjectStore, values: Any) -> dict[str, str]:
        """Validate input properties; raise the 400 HubSpot answers with when one is bad."""
        if values is None:
            values = {}
        if not isinstance(values, dict):
            raise HubSpotApiError.validation("properties must be an object")
        clean, problems = store.check_values(values)
        if problems:
            raise HubSpotApiError(400, property_values_error(problems))
        return clean

    def create(self, object_type: str, body: dict[str, Any]) -> dict[str, Any]:
        """``POST /crm/v3/objects/{type}``: create one record (201)."""
        store = self.store(object_type)
        clean = self.checked(store, body.get("properties"))
        taken = store.conflict(clean, None)
        if taken is not None:
            raise store.conflict_error(taken[0], taken[1], clean[taken[0]])
        links = self.association_inputs(store, body.get("associations"))
        record = self.create_record(store, clean, self.clock.tick())
        for to_type, to_id, types in links:
            self.associations.add(store.schema.name, record.id, to_type, to_id, types)
        self.search_index.written(store.schema.name, [record])
        return store.serialize(record, list(clean) + list(store.schema.default_read))

    def update(
        self, object_type: str, record_id: str, body: dict[str, Any], id_property: str | None
    ) -> dict[str, Any]:
        """``PATCH /crm/v3/objects/{type}/{id}``: update one record."""
        store = self.store(object_type)
        record = self.find(store, record_id, id_property)
        clean = self.checked(store, body.get("properties"))
        taken = store.conflict(clean, record.id)
        if taken is not None:
            raise store.conflict_error(taken[0], taken[1], clean[taken[0]])
        store.update(record, clean, self.clock.tick())
        self.search_index.written(store.schema.name, [record])
        return store.serialize(record, list(clean) + list(store.schema.default_read))

    def archive(self, object_type: str, record_id: str) -> None:
        """``DELETE /crm/v3/objects/{type}/{id}``: archive one record (204, even if absent)."""
        store = self.store(object_type)
        record = store.get(record_id)
        if record is not None:
            store.archive(record, self.clock.tick())
            self.search_index.written(store.schema.name, [record])

    # ---------------------------------------------------------------- reading
    def find(
        self, store: ObjectStore, record_id: str, id_property: str | None, archived: bool = False
    ) -> HubSpotRecord:
        """A record by id or by a unique property (``idProperty``).

        Raises:
            HubSpotApiError: 404 when there is no such record.
        """
        record: HubSpotRecord | None
        if id_property and id_property != "hs_object_id":
            definition = store.schema.properties.get(id_property)
            if definition is None or not definition.has_unique_value:
                raise HubSpotApiError.validation(
                    f"Property \"{id_property}\" is not a unique identifier for "
                    f"{store.schema.name}; use a property with hasUniqueValue=true")
            record = store.find_unique(id_property, record_id)
            if record is not None and record.archived != archived:
                record = None
        else:
            record = store.get(record_id, archived=archived)
        if record is None:
            raise HubSpotApiError(404, error_body("resource not found", "OBJECT_NOT_FOUND"))
        return record

    def get(
        self,
        object_type: str,
        record_id: str,
        *,
        properties: list[str] | None,
        id_property: str | None,
        archived: bool,
    ) -> dict[str, Any]:
        """``GET /crm/v3/objects/{type}/{id}``."""
        store = self.store(object_type)
        record = self.find(store, record_id, id_property, archived)
        return store.serialize(record, properties)

    def list_page(
        self,
        object_type: str,
        *,
        limit: int,
        after: str | None,
        properties: list[str] | None,
        archived: bool,
    ) -> dict[str, Any]:
        """``GET /crm/v3/objects/{type}``: one page in id order; ``after`` is the next id."""
        store = self.store(object_type)
        if limit < 1 or limit > MAX_LIST_LIMIT:
            raise HubSpotApiError.validation(
                f"limit must be between 1 and {MAX_LIST_LIMIT}; got {limit}")
        order = self._order[store.schema.name]
        start = 0
        if after:
            try:
                start = bisect.bisect_left(order, int(after))
            except ValueError:
                raise HubSpotApiError.validation(f"Invalid paging cursor: {after}") from None
        page: list[HubSpotRecord] = []
        next_id: str | None = None
        for position in range(start, len(order)):
            record = store.records.get(str(order[position]))
            if record is None or record.archived != archived:
                continue
            if len(page) == limit:
                next_id = record.id
                break
            page.append(record)
        body: dict[str, Any] = {"results": [store.serialize(r, properties) for r in page]}
        if next_id is not None:
            body["paging"] = {"next": {
                "after": next_id,
                "link": f"/crm/v3/objects/{store.schema.name}?after={next_id}",
            }}
        return body

    def search(self, object_type: str, body: dict[str, Any]) -> dict[str, Any]:
        """``POST /crm/v3/objects/{type}/search``."""
        return run_search(self.store(object_type), self.search_index, body)

    # ------------------------------------------------------------- properties
    def properties(self, object_type: str) -> dict[str, Any]:
        """``GET /crm/v3/properties/{type}``."""
        store = self.store(object_type)
        return {"results": [p.to_api() for p in store.schema.properties.values()]}

    def property(self, object_type: str, name: str) -> dict[str, Any]:
        """``GET /crm/v3/properties/{type}/{name}``."""
        store = self.store(object_type)
        definition = store.schema.properties.get(name)
        if definition is None:
            raise HubSpotApiError(404, error_body(
                f"Unable to find property with name {name} for object type "
                f"{store.schema.type_id}", "OBJECT_NOT_FOUND"))
        return definition.to_api()

    # ----------------------------------------------------------- associations
    def association_inputs(
        self, store: ObjectStore, inputs: Any
    ) -> list[tuple[str, str, list[tuple[str, int]]]]:
        """Resolve the ``associations`` of a create input to (type, id, types) triples."""
        links: list[tuple[str, str, list[tuple[str, int]]]] = []
        for item in inputs or []:
            to_id = str((item.get("to") or {}).get("id", ""))
            types = [(t.get("associationCategory", "HUBSPOT_DEFINED"),
                      int(t.get("associationTypeId", 0))) for t in item.get("types") or []]
            to_type = self._target_type(store.schema.name, types)
            if to_type is None or self.stores[to_type].get(to_id) is None:
                raise HubSpotApiError.validation(
                    f"Association target {to_id} was not found or the association type is "
                    f"not valid from {store.schema.name}")
            links.append((to_type, to_id, types))
        return links

    @staticmethod
    def _target_type(from_type: str, types: list[tuple[str, int]]) -> str | None:
        for (source, target), type_id in DEFAULT_ASSOCIATION_TYPES.items():
            if source == from_type and any(t == type_id for _, t in types):
                return target
        return None

    def associate_default(
        self, from_type: str, from_id: str, to_type: str, to_id: str
    ) -> dict[str, Any]:
        """``PUT /crm/v4/objects/{from}/{id}/associations/default/{to}/{toId}``."""
        source, target = self.store(from_type), self.store(to_type)
        self._require(source, from_id)
        self._require(target, to_id)
        self.associations.add(source.schema.name, from_id, target.schema.name, to_id)
        stamp = iso_ms(self.clock.now_ms())
        type_id = default_type_id(source.schema.name, target.schema.name)
        return {
            "status": "COMPLETE",
            "results": [{
                "from": {"id": from_id},
                "to": {"id": to_id},
                "associationSpec": {"associationCategory": "HUBSPOT_DEFINED",
                                    "associationTypeId": type_id},
            }],
            "startedAt": stamp,
            "completedAt": stamp,
        }

    def associated(
        self, from_type: str, from_id: str, to_type: str, limit: int = 500
    ) -> dict[str, Any]:
        """``GET /crm/v4/objects/{from}/{id}/associations/{to}``."""
        source, target = self.store(from_type), self.store(to_type)
        return {"results": self.associations.of(
            source.schema.name, from_id, target.schema.name)[:limit]}

    def batch_associate(
        self, from_type: str, to_type: str, body: Any, *, default_only: bool
    ) -> tuple[int, dict[str, Any]]:
        """``POST /crm/v4/associations/{from}/{to}/batch/create`` (or ``associate/default``)."""
        source, target = self.store(from_type), self.store(to_type)
        inputs = body.get("inputs") if isinstance(body, dict) else None
        if not isinstance(inputs, list):
            raise HubSpotApiError.validation("Invalid input JSON: 'inputs' must be a list")
        if len(inputs) > 2000:
            raise HubSpotApiError.validation("Too many inputs; the maximum is 2000")
        started = iso_ms(self.clock.now_ms())
        results: list[dict[str, Any]] = []
        errors: list[dict[str, Any]] = []
        for item in inputs:
            from_id = str((item.get("from") or {}).get("id", ""))
            to_id = str((item.get("to") or {}).get("id", ""))
            if source.get(from_id) is None or target.get(to_id) is None:
                errors.append(batch_error(
                    f"No {source.schema.singular.lower()} with id {from_id} or "
                    f"{target.schema.singular.lower()} with id {to_id} exists",
                    "OBJECT_NOT_FOUND", context={"fromObjectId": [from_id],
                                                 "toObjectId": [to_id]}))
                continue
            types = None if default_only else [
                (t.get("associationCategory", "HUBSPOT_DEFINED"),
                 int(t.get("associationTypeId", 0)))
                for t in item.get("types") or []]
            self.associations.add(source.schema.name, from_id, target.schema.name, to_id, types)
            if default_only:
                results.append({
                    "from": {"id": from_id}, "to": {"id": to_id},
                    "associationSpec": {
                        "associationCategory": "HUBSPOT_DEFINED",
                        "associationTypeId": default_type_id(source.schema.name,
                                                             target.schema.name)},
                })
            else:
                results.append({
                    "fromObjectTypeId": source.schema.type_id, "fromObjectId": int(from_id),
                    "toObjectTypeId": target.schema.type_id, "toObjectId": int(to_id),
                    "labels": [],
                })
        body_out: dict[str, Any] = {"status": "COMPLETE", "results": results,
                                    "startedAt": started,
                                    "completedAt": iso_ms(self.clock.now_ms())}
        if errors:
            body_out.update(numErrors=len(errors), errors=errors)
            return 207, body_out
        return (200 if default_only else 201), body_out

    def batch_read_associations(
        self, from_type: str, to_type: str, body: Any
    ) -> tuple[int, dict[str, Any]]:
        """``POST /crm/v4/associations/{from}/{to}/batch/read`` (at most 1,000 ids, as HubSpot).

        A record's associations come :data:`ASSOCIATIONS_PER_RESULT` at a time; when it has
        more, its result carries ``paging.next.after``, which the next call sends back with the
        id (``{"id": ..., "after": ...}``). HubSpot's tokens are opaque; the emulator's are
        offsets.
        """
        source, target = self.store(from_type), self.store(to_type)
        inputs = body.get("inputs") if isinstance(body, dict) else None
        if not isinstance(inputs, list):
            raise HubSpotApiError.validation("Invalid input JSON: 'inputs' must be a list")
        if len(inputs) > 1000:
            raise HubSpotApiError.validation("Too many inputs; the maximum is 1000")
        started = iso_ms(self.clock.now_ms())
        results = []
        for item in inputs:
            from_id = str(item.get("id", ""))
            links = self.associations.of(source.schema.name, from_id, target.schema.name)
            start = int(item["after"]) if str(item.get("after") or "").isdigit() else 0
            page = links[start:start + ASSOCIATIONS_PER_RESULT]
            if not page:
                continue
            result: dict[str, Any] = {"from": {"id": from_id}, "to": page}
            if start + ASSOCIATIONS_PER_RESULT < len(links):
                result["paging"] = {"next": {"after": str(start + ASSOCIATIONS_PER_RESULT)}}
            results.append(result)
        return 200, {"status": "COMPLETE", "results": results, "startedAt": started,
                     "completedAt": iso_ms(self.clock.now_ms())}

    def _require(self, store: ObjectStore, record_id: str) -> None:
        if store.get(record_id) is None:
            raise HubSpotApiError(404, error_body(
                f"No {store.schema.singular.lower()} with id {record_id} exists",
                "OBJECT_NOT_FOUND"))

    def all_records(self, object_type: str) -> Iterable[HubSpotRecord]:
        """Every record of a type, archived ones included (for the control API)."""
        return self.store(object_type).records.values()
