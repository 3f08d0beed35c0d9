"""Records of one HubSpot object type: validation, unique values, writes and serialization.

Records live in a dict keyed by id (ids only grow, so the dict's order is the id order), with
one index per unique property. Values are stored as HubSpot returns them: strings; numeric and
datetime values are also kept as numbers so that searches compare without re-parsing.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Iterator
from typing import Any

from refsync.sandbox.hubspot.clock import iso_ms, parse_timestamp_ms
from refsync.sandbox.hubspot.errors import HubSpotApiError, PropertyProblem, error_body
from refsync.sandbox.hubspot.schema import NUMERIC_TYPES, ObjectSchema, PropertyDef

__all__ = ["HubSpotRecord", "ObjectStore", "id_sequence"]

_SYSTEM_WRITABLE_ON_SEED = frozenset({"createdate", "hs_lastmodifieddate", "lastmodifieddate"})
_CLOSED_DEAL_STAGES = frozenset({"closedwon", "closedlost"})
"""The default pipeline's closed stages (HubSpot calculates a deal's ``hs_is_closed`` from them)."""


class HubSpotRecord:
    """One CRM record.

    Attributes:
        id: the record id (decimal string, as the API returns it).
        properties: current values, as strings; unset properties are absent.
        numbers: numeric view of number/date/datetime values (datetimes in epoch ms).
        created_ms / updated_ms: creation and last write time (epoch ms).
        archived: whether the record was archived (deleted).
    """

    __slots__ = ("archived", "created_ms", "id", "numbers", "properties", "updated_ms")

    def __init__(self, record_id: str, created_ms: int) -> None:
        self.id = record_id
        self.properties: dict[str, str] = {}
        self.numbers: dict[str, float] = {}
        self.created_ms = created_ms
        self.updated_ms = created_ms
        self.archived = False

    def copy(self) -> HubSpotRecord:
        """A snapshot of the record (used by the lagging search index)."""
        clone = HubSpotRecord(self.id, self.created_ms)
        clone.properties = dict(self.properties)
        clone.numbers = dict(self.numbers)
        clone.updated_ms = self.updated_ms
        clone.archived = self.archived
        return clone


def _as_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


class ObjectStore:
    """The records of one object type and the rules for writing them.

    Args:
        schema: the object type's property definitions.
        ids: shared id sequence (ids are unique across object types, as in a portal).
    """

    def __init__(self, schema: ObjectSchema, ids: Iterator[int]) -> None:
        self.schema = schema
        self._ids = ids
        self.records: dict[str, HubSpotRecord] = {}
        self._unique: dict[str, dict[str, str]] = {}
        self.version = 0
        self.last_modified_name = (
            "lastmodifieddate" if "lastmodifieddate" in schema.properties else None
        )

    # ----------------------------------------------------------------- reading
    def get(self, record_id: str, *, archived: bool = False) -> HubSpotRecord | None:
        """The record with this id, if it exists with the requested archived flag."""
        record = self.records.get(record_id)
        if record is None or record.archived != archived:
            return None
        return record

    def find_unique(self, name: str, value: str) -> HubSpotRecord | None:
        """The live record whose unique property ``name`` equals ``value``."""
        record_id = self._unique.get(name, {}).get(self.unique_key(name, value))
        return self.records.get(record_id) if record_id is not None else None

    def live(self) -> Iterable[HubSpotRecord]:
        """Records that are not archived, in id order."""
        return (r for r in self.records.values() if not r.archived)

    def serialize(
        self, record: HubSpotRecord, names: Iterable[str] | None = None
    ) -> dict[str, Any]:
        """The API form of a record: ``{id, properties, createdAt, updatedAt, archived}``.

        Args:
            names: properties to return; ``None`` returns the type's default set. Unknown names
                are left out, as the real API does; known but unset ones come back as null.
        """
        wanted = self.schema.default_read if names is None else names
        props: dict[str, str | None] = {}
        for name in wanted:
            if name in self.schema.properties:
                props[name] = record.properties.get(name)
        if "hs_object_id" not in props:
            props["hs_object_id"] = record.id
        data: dict[str, Any] = {
            "id": record.id,
            "properties": props,
            "createdAt": iso_ms(record.created_ms),
            "updatedAt": iso_ms(record.updated_ms),
            "archived": record.archived,
        }
        if record.archived:
            data["archivedAt"] = iso_ms(record.updated_ms)
        return data

    # ---------------------------------------------------------------- checking
    def check_values(
        self, values: dict[str, Any], *, trusted: bool = False
    ) -> tuple[dict[str, str], list[PropertyProblem]]:
        """Normalize input values to HubSpot's string form and list every invalid one.

        Args:
            values: property name → value as sent by the client.
            trusted: seed data may set system timestamps (``createdate``...).
        """
        clean: dict[str, str] = {}
        problems: list[PropertyProblem] = []
        for name, raw in values.items():
            definition = self.schema.properties.get(name)
            if definition is None:
                problems.append(PropertyProblem(
                    name, "PROPERTY_DOESNT_EXIST", f'Property "{name}" does not exist'))
                continue
            if definition.read_only and not (trusted and name in _SYSTEM_WRITABLE_ON_SEED):
                problems.append(PropertyProblem(
                    name, "READ_ONLY_VALUE",
                    f'"{name}" is a read only property; its value cannot be set.'))
                continue
            text = _as_text(raw).strip()
            if text == "":
                clean[name] = ""
                continue
            normalized, problem = _normalize(definition, text)
            if problem is not None:
                problems.append(problem)
            else:
                clean[name] = normalized
        return clean, problems

    def conflict(self, values: dict[str, str], exclude_id: str | None) -> tuple[str, str] | None:
        """``(property, existing id)`` if a unique value is already held by another record."""
        for name in self.schema.unique_properties:
            value = values.get(name)
            if not value:
                continue
            holder = self._unique.get(name, {}).get(self.unique_key(name, value))
            if holder is not None and holder != exclude_id:
                return name, holder
        return None

    def conflict_error(self, name: str, existing_id: str, value: str) -> HubSpotApiError:
        """The 409 answer for a unique value that is already taken."""
        if self.schema.name == "contacts" and name == "email":
            message = f"Contact already exists. Existing ID: {existing_id}"
        else:
            message = (f"A {self.schema.singular.lower()} with {name} {value!r} already exists. "
                       f"Existing ID: {existing_id}")
        return HubSpotApiError(409, error_body(message, "CONFLICT"))

    # ----------------------------------------------------------------- writing
    def create(self, values: dict[str, str], stamp_ms: int) -> HubSpotRecord:
        """Create a record from checked values (see :meth:`check_values`)."""
        record_id = str(next(self._ids))
        created = values.get("createdate")
        created_ms = parse_timestamp_ms(created) if created else None
        record = HubSpotRecord(record_id, created_ms if created_ms is not None else stamp_ms)
        self.records[record_id] = record
        self._set(record, {"hs_object_id": record_id, "createdate": iso_ms(record.created_ms)})
        self._apply(record, {k: v for k, v in values.items() if k != "createdate"}, stamp_ms)
        return record

    def update(self, record: HubSpotRecord, values: dict[str, str], stamp_ms: int) -> None:
        """Apply checked values to an existing record."""
        self._apply(record, values, stamp_ms)

    def archive(self, record: HubSpotRecord, stamp_ms: int) -> None:
        """Archive a record; its unique values become free again."""
        for name in self.schema.unique_properties:
            value = record.properties.get(name)
            if value:
                self._unique.get(name, {}).pop(self.unique_key(name, value), None)
        record.archived = True
        record.updated_ms = stamp_ms
        self.version += 1

    def clear(self) -> None:
        """Forget every record."""
        self.records.clear()
        self._unique.clear()
        self.version += 1

    def _apply(self, record: HubSpotRecord, values: dict[str, str], stamp_ms: int) -> None:
        modified = values.get("hs_lastmodifieddate") or values.get("lastmodifieddate")
        modified_ms = parse_timestamp_ms(modified) if modified else None
        stamp = modified_ms if modified_ms is not None else stamp_ms
        changes = {k: v for k, v in values.items() if k not in _SYSTEM_WRITABLE_ON_SEED}
        changes["hs_lastmodifieddate"] = iso_ms(stamp)
        if self.last_modified_name:
            changes[self.last_modified_name] = iso_ms(stamp)
        changes.update(self._calculated({**record.properties, **changes}))
        self._set(record, changes)
        record.updated_ms = stamp
        self.version += 1

    def _calculated(self, values: dict[str, str]) -> dict[str, str]:
        """Properties HubSpot calculates from others: a deal's ``hs_is_closed`` from its stage."""
        if self.schema.name == "deals":
            return {"hs_is_closed": _as_text(values.get("dealstage") in _CLOSED_DEAL_STAGES)}
        return {}

    def _set(self, record: HubSpotRecord, values: dict[str, str]) -> None:
        unique = self.schema.unique_properties
        for name, value in values.items():
            if name in unique:
                index = self._unique.setdefault(name, {})
                old = record.properties.get(name)
                if old:
                    index.pop(self.unique_key(name, old), None)
                if value:
                    index[self.unique_key(name, value)] = record.id
            if value == "":
                record.properties.pop(name, None)
                record.numbers.pop(name, None)
                continue
            record.properties[name] = value
            definition = self.schema.properties[name]
            if definition.type in NUMERIC_TYPES:
                number = _numeric(definition, value)
                if number is None:
                    record.numbers.pop(name, None)
                else:
                    record.numbers[name] = number

    @staticmethod
    def unique_key(name: str, value: str) -> str:
        """How a unique property's value is compared: e-mail addresses ignore case."""
        return value.lower() if name == "email" else value


def _numeric(definition: PropertyDef, value: str) -> float | None:
    if definition.type == "number":
        try:
            return float(value)
        except ValueError:
            return None
    parsed = parse_timestamp_ms(value)
    return float(parsed) if parsed is not None else None


def _normalize(definition: PropertyDef, text: str) -> tuple[str, PropertyProblem | None]:
    name = definition.name
    kind = definition.type
    if kind == "enumeration":
        if text not in definition.options:
            allowed = ", ".join(definition.options)
            return text, PropertyProblem(
                name, "INVALID_OPTION",
                f"{text} was not one of the allowed options: [{allowed}]")
        return text, None
    if kind == "number":
        try:
            number = float(text)
        except ValueError:
            number = math.nan
        if math.isnan(number) or math.isinf(number):
            return text, PropertyProblem(name, "INVALID_DECIMAL", f"{text} is not a valid number")
        return text, None
    if kind in ("datetime", "date"):
        parsed = parse_timestamp_ms(text)
        if parsed is None:
            return text, PropertyProblem(
                name, "INVALID_DATE", f"{text} is not a valid date or datetime")
        if kind == "date":
            if parsed % 86_400_000:
                return text, PropertyProblem(
                    name, "INVALID_DATE",
                    f"{text} is at {iso_ms(parsed)[11:23]} UTC, not midnight!")
            return iso_ms(parsed)[:10], None
        return iso_ms(parsed), None
    if kind == "bool":
        lowered = text.lower()
        if lowered not in ("true", "false"):
            return text, PropertyProblem(name, "INVALID_BOOLEAN", f"{text} is not a valid boolean")
        return lowered, None
    if name == "email":
        local, _, domain = text.partition("@")
        if not local or "." not in domain or " " in text:
            return text, PropertyProblem(name, "INVALID_EMAIL", f"Email address {text} is invalid")
        return text.lower(), None
    return text, None


def id_sequence(start: int = 100_001) -> Iterator[int]:
    """A fresh id sequence for a portal."""
    return itertools.count(start)
