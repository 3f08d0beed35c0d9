"""Batch endpoints under ``/crm/v3/objects/{type}/batch/``: read, create, update, upsert, archive.

Rules reproduced from the real API:
- at most 100 inputs a call; every record written by one call gets the same timestamp;
- a failed input is reported in ``errors[]`` of a 207 answer, the others succeed; for
  ``create`` only when every input carries an ``objectWriteTraceId`` (echoed in the error's
  ``context``), otherwise the whole call fails;
- ``upsert`` matches on ``idProperty`` (a property with ``hasUniqueValue``), creates what is
  missing and flags each result ``new: true|false``; duplicate ids in one call are refused.

Record-level fault rules (``match_record``) fail the inputs whose JSON contains their text.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from refsync.sandbox.faults import RecordFaults
from refsync.sandbox.hubspot.clock import iso_ms
from refsync.sandbox.hubspot.errors import (
    HubSpotApiError,
    PropertyProblem,
    batch_error,
    error_body,
    property_values_error,
)
from refsync.sandbox.hubspot.portal import Portal
from refsync.sandbox.hubspot.store import HubSpotRecord, ObjectStore

__all__ = [
    "MAX_BATCH_INPUTS",
    "batch_archive",
    "batch_create",
    "batch_read",
    "batch_update",
    "batch_upsert",
]

MAX_BATCH_INPUTS = 100


@dataclass
class _Collector:
    """Results and errors of one batch call."""

    started_ms: int
    results: list[dict[str, Any]] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)

    def answer(self, ok_status: int, portal: Portal) -> tuple[int, dict[str, Any]]:
        body: dict[str, Any] = {
            "status": "COMPLETE",
            "results": self.results,
            "startedAt": iso_ms(self.started_ms),
            "completedAt": iso_ms(max(portal.clock.now_ms(), self.started_ms)),
        }
        if not self.errors:
            return ok_status, body
        body["numErrors"] = len(self.errors)
        body["errors"] = self.errors
        return 207, body


def _inputs(body: Any) -> list[dict[str, Any]]:
    inputs = body.get("inputs") if isinstance(body, dict) else None
    if not isinstance(inputs, list) or not all(isinstance(i, dict) for i in inputs):
        raise HubSpotApiError.validation("Invalid input JSON: 'inputs' must be a list of objects")
    if len(inputs) > MAX_BATCH_INPUTS:
        raise HubSpotApiError.validation(
            f"Too many inputs: {len(inputs)}. The maximum batch size is {MAX_BATCH_INPUTS}.")
    return inputs


def _context(item: dict[str, Any], ids: list[str] | None = None) -> dict[str, list[str]]:
    context: dict[str, list[str]] = {}
    trace = item.get("objectWriteTraceId")
    if trace is not None:
        context["objectWriteTraceId"] = [str(trace)]
    if ids:
        context["ids"] = ids
    return context


def _fault_error(
    faults: RecordFaults | None, item: dict[str, Any], ids: list[str] | None
) -> dict[str, Any] | None:
    """The injected error for this input, if a record-level fault rule picks it."""
    if faults is None:
        return None
    injected = faults.error_for(json.dumps(item, sort_keys=True, default=str))
    if injected is None:
        return None
    template: dict[str, Any] = (
        injected if isinstance(injected, dict) else {"message": str(injected)})
    error = batch_error(
        str(template.get("message", "Sandbox fault")),
        str(template.get("category", "VALIDATION_ERROR")),
        context=_context(item, ids),
        errors=list(template.get("errors", [])),
        sub_category=template.get("subCategory"),
    )
    return error


def _problems_error(
    problems: list[PropertyProblem], item: dict[str, Any], ids: list[str] | None
) -> dict[str, Any]:
    body = property_values_error(problems)
    return batch_error(body["message"], "VALIDATION_ERROR", context=_context(item, ids),
                       errors=body["errors"])


def _read_names(store: ObjectStore, written: dict[str, str]) -> list[str]:
    return list(dict.fromkeys([*store.schema.default_read, *written]))


class _Claims:
    """Unique values claimed by earlier inputs of the same batch."""

    def __init__(self, store: ObjectStore) -> None:
        self._store = store
        self._taken: dict[tuple[str, str], str] = {}

    def clash(self, values: dict[str, str], own_id: str | None) -> tuple[str, str] | None:
        found = self._store.conflict(values, own_id)
        if found is not None:
            return found
        for name in self._store.schema.unique_properties:
            value = values.get(name)
            holder = self._taken.get((name, value.lower())) if value else None
            if holder is not None and holder != own_id:
                return name, holder
        return None

    def claim(self, values: dict[str, str], owner: str) -> None:
        for name in self._store.schema.unique_properties:
            value = values.get(name)
            if value:
                self._taken[(name, value.lower())] = owner


def _conflict_error(
    store: ObjectStore, clash: tuple[str, str], values: dict[str, str], item: dict[str, Any],
    ids: list[str] | None,
) -> dict[str, Any]:
    error = store.conflict_error(clash[0], clash[1], values.get(clash[0], ""))
    return batch_error(error.body["message"], "CONFLICT", context=_context(item, ids))


def batch_read(portal: Portal, object_type: str, body: Any) -> tuple[int, dict[str, Any]]:
    """``POST .../batch/read``: records by id or by ``idProperty``; missing ids → 207."""
    store = portal.store(object_type)
    inputs = _inputs(body)
    names = body.get("properties") or None
    id_property = body.get("idProperty")
    archived = bool(body.get("archived", False))
    out = _Collector(portal.clock.now_ms())
    missing: list[str] = []
    for item in inputs:
        record_id = str(item.get("id", ""))
        try:
            record = portal.find(store, record_id, id_property, archived)
        except HubSpotApiError as exc:
            if exc.status != 404:
                raise
            missing.append(record_id)
            continue
        out.results.append(store.serialize(record, names))
    if missing:
        out.errors.append(batch_error(
            f"Could not get some {store.schema.singular} objects, they may be deleted or not "
            "exist. Check that ids are valid.",
            "OBJECT_NOT_FOUND", context={"ids": missing}))
    return out.answer(200, portal)


def batch_create(
    portal: Portal, object_type: str, body: Any, faults: RecordFaults | None
) -> tuple[int, dict[str, Any]]:
    """``POST .../batch/create`` (201, or 207 when every input has an objectWriteTraceId)."""
    store = portal.store(object_type)
    inputs = _inputs(body)
    traced = bool(inputs) and all(i.get("objectWriteTraceId") is not None for i in inputs)
    stamp = portal.clock.tick()
    out = _Collector(stamp)
    claims = _Claims(store)
    accepted: list[tuple[dict[str, str], list[tuple[str, str, list[tuple[str, int]]]]]] = []
    whole_call_status = 0
    for position, item in enumerate(inputs):
        error = _fault_error(faults, item, None)
        status = 400
        clean: dict[str, str] = {}
        if error is None:
            raw = item.get("properties") or {}
            clean, problems = store.check_values(raw if isinstance(raw, dict) else {})
            if problems:
                error = _problems_error(problems, item, None)
        if error is None:
            clash = claims.clash(clean, None)
            if clash is not None:
                error, status = _conflict_error(store, clash, clean, item, None), 409
        if error is None:
            links = portal.association_inputs(store, item.get("associations"))
            claims.claim(clean, f"new-{position}")
            accepted.append((clean, links))
            continue
        whole_call_status = whole_call_status or status
        out.errors.append(error)
    if out.errors and not traced:
        # Without trace ids HubSpot cannot say which input failed: the whole call fails.
        first = out.errors[0]
        raise HubSpotApiError(whole_call_status, error_body(
            first["message"], first["category"], errors=first["errors"] or None))
    created: list[HubSpotRecord] = []
    for clean, links in accepted:
        record = portal.create_record(store, clean, stamp)
        for to_type, to_id, types in links:
            portal.associations.add(store.schema.name, record.id, to_type, to_id, types)
        created.append(record)
        out.results.append(store.serialize(record, _read_names(store, clean)))
    portal.search_index.written(store.schema.name, created)
    return out.answer(201, portal)


def batch_update(
    portal: Portal, object_type: str, body: Any, faults: RecordFaults | None
) -> tuple[int, dict[str, Any]]:
    """``POST .../batch/update``: by id (or ``idProperty``); failed inputs → 207."""
    store = portal.store(object_type)
    inputs = _inputs(body)
    stamp = portal.clock.tick()
    out = _Collector(stamp)
    claims = _Claims(store)
    written: list[HubSpotRecord] = []
    missing: list[str] = []
    for item in inputs:
        record_id = str(item.get("id", ""))
        error = _fault_error(faults, item, [record_id])
        if error is not None:
            out.errors.append(error)
            continue
        try:
            record = portal.find(store, record_id, item.get("idProperty") or body.get("idProperty"))
        except HubSpotApiError as exc:
            if exc.status != 404:
                raise
            missing.append(record_id)
            continue
        raw = item.get("properties") or {}
        clean, problems = store.check_values(raw if isinstance(raw, dict) else {})
        if problems:
            out.errors.append(_problems_error(problems, item, [record_id]))
            continue
        clash = claims.clash(clean, record.id)
        if clash is not None:
            out.errors.append(_conflict_error(store, clash, clean, item, [record_id]))
            continue
        claims.claim(clean, record.id)
        store.update(record, clean, stamp)
        written.append(record)
        out.results.append(store.serialize(record, _read_names(store, clean)))
    if missing:
        out.errors.append(batch_error(
            f"Could not get some {store.schema.singular} objects, they may be deleted or not "
            "exist. Check that ids are valid.", "OBJECT_NOT_FOUND", context={"ids": missing}))
    portal.search_index.written(store.schema.name, written)
    return out.answer(200, portal)


def batch_upsert(
    portal: Portal, object_type: str, body: Any, faults: RecordFaults | None
) -> tuple[int, dict[str, Any]]:
    """``POST .../batch/upsert``: create or update by ``idProperty``; results carry ``new``."""
    store = portal.store(object_type)
    inputs = _inputs(body)
    seen: set[str] = set()
    duplicates: list[str] = []
    for item in inputs:
        key = str(item.get("id", ""))
        if key in seen:
            duplicates.append(key)
        seen.add(key)
        id_property = item.get("idProperty")
        if id_property:
            definition = store.schema.properties.get(id_property)
            if definition is None or not definition.has_unique_value:
                raise HubSpotApiError.validation(
                    f"Property \"{id_property}\" cannot be used as idProperty: it does not exist "
                    f"on {store.schema.name} or does not have hasUniqueValue=true")
    if duplicates:
        raise HubSpotApiError.validation(
            f"Duplicate IDs found in batch input: {sorted(set(duplicates))}. IDs must be unique")
    stamp = portal.clock.tick()
    out = _Collector(stamp)
    claims = _Claims(store)
    written: list[HubSpotRecord] = []
    for item in inputs:
        key = str(item.get("id", ""))
        id_property = item.get("idProperty") or "hs_object_id"
        error = _fault_error(faults, item, [key])
        if error is not None:
            out.errors.append(error)
            continue
        raw = item.get("properties") or {}
        clean, problems = store.check_values(raw if isinstance(raw, dict) else {})
        if problems:
            out.errors.append(_problems_error(problems, item, [key]))
            continue
        if id_property == "hs_object_id":
            existing = store.get(key)
            if existing is None:
                out.errors.append(batch_error(
                    f"Could not get some {store.schema.singular} objects, they may be deleted "
                    "or not exist. Check that ids are valid.", "OBJECT_NOT_FOUND",
                    context=_context(item, [key])))
                continue
        else:
            existing = store.find_unique(id_property, key)
            clean[id_property] = key
        clash = claims.clash(clean, existing.id if existing else None)
        if clash is not None:
            out.errors.append(_conflict_error(store, clash, clean, item, [key]))
            continue
        if existing is None:
            record = portal.create_record(store, clean, stamp)
            is_new = True
        else:
            store.update(existing, clean, stamp)
            record, is_new = existing, False
        claims.claim(clean, record.id)
        written.append(record)
        result = store.serialize(record, _read_names(store, clean))
        result["new"] = is_new
        out.results.append(result)
    portal.search_index.written(store.schema.name, written)
    return out.answer(200, portal)


def batch_archive(portal: Portal, object_type: str, body: Any) -> None:
    """``POST .../batch/archive`` (204); ids that do not exist are ignored."""
    store = portal.store(object_type)
    inputs = _inputs(body)
    stamp = portal.clock.tick()
    archived: list[HubSpotRecord] = []
    for item in inputs:
        record = store.get(str(item.get("id", "")))
        if record is not None:
            store.archive(record, stamp)
            archived.append(record)
    portal.search_index.written(store.schema.name, archived)
