"""In-memory Salesforce records: ids, validation, writes, upserts by external id, deletes.

Records are plain dicts keyed by the canonical field names, every field present (``None`` when
empty). Every write call takes one timestamp from the clock, so all records written by one call
share ``SystemModstamp``/``LastModifiedDate`` (ties are normal, as in Salesforce).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from refsync.sandbox.salesforce.errors import ApiError, record_error
from refsync.sandbox.salesforce.schema import (
    NUMBER_TYPES,
    STRING_TYPES,
    ObjectDef,
    standard_objects,
)
from refsync.sandbox.salesforce.soql import format_datetime, parse_datetime

__all__ = ["Clock", "RecordStore", "WriteOutcome", "salesforce_id"]

Record = dict[str, Any]
Clock = Callable[[], datetime]

_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_SUFFIX = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"
_SYSTEM_FIELDS = ("Id", "IsDeleted", "CreatedDate", "LastModifiedDate", "SystemModstamp")


def salesforce_id(prefix: str, number: int) -> str:
    """Return the 18-character id for ``prefix`` (3 chars) and a sequence number."""
    digits = ""
    for _ in range(10):
        number, rest = divmod(number, 62)
        digits = _BASE62[rest] + digits
    base = f"{prefix}5g{digits}"[:15]
    suffix = ""
    for chunk in range(3):
        bits = sum(1 << i for i, c in enumerate(base[chunk * 5:chunk * 5 + 5]) if c.isupper())
        suffix += _SUFFIX[bits]
    return base + suffix


@dataclass
class WriteOutcome:
    """Result of writing one record: the id, whether it was created, or the errors."""

    id: str | None = None
    created: bool = False
    errors: list[dict[str, Any]] | None = None

    @property
    def success(self) -> bool:
        """True when the record was written."""
        return not self.errors


class RecordStore:
    """Every object's records plus the schema, ids and the modstamp clock.

    Args:
        clock: returns the current time (aware); defaults to real UTC now. The store makes the
            values it hands out strictly increasing at millisecond precision.
    """

    def __init__(self, clock: Clock | None = None) -> None:
        self._clock = clock or (lambda: datetime.now(UTC))
        self._last_stamp: datetime | None = None
        self.objects: dict[str, ObjectDef] = {}
        self.records: dict[str, dict[str, Record]] = {}
        self.deleted_at: dict[str, dict[str, str]] = {}
        self.indexes: dict[str, dict[str, dict[Any, set[str]]]] = {}
        self._sequence = itertools.count(1)
        self.reset()

    def reset(self) -> None:
        """Drop every record and custom field; keep the clock's monotonic guard."""
        self.objects = standard_objects()
        self.records = {name: {} for name in self.objects}
        self.deleted_at = {name: {} for name in self.objects}
        self.indexes = {name: {} for name in self.objects}
        for obj in self.objects.values():
            self.rebuild_indexes(obj)
        self._sequence = itertools.count(1)

    def rebuild_indexes(self, obj: ObjectDef) -> None:
        """(Re)build the lookup indexes of ``obj``'s external-id and unique fields."""
        indexes: dict[str, dict[Any, set[str]]] = {
            name: {} for name, d in obj.fields.items() if d.external_id or d.unique
        }
        for record in self.records[obj.name].values():
            if not record["IsDeleted"]:
                for name, index in indexes.items():
                    _index_add(index, record.get(name), record["Id"])
        self.indexes[obj.name] = indexes

    def _reindex(self, object_name: str, record: Record, old: dict[str, Any]) -> None:
        for name, index in self.indexes[object_name].items():
            if name in old:
                _index_remove(index, old[name], record["Id"])
            if not record["IsDeleted"]:
                _index_add(index, record.get(name), record["Id"])

    # -- time -------------------------------------------------------------------------------
    def now(self) -> datetime:
        """Return the clock's time, truncated to ms and strictly after the previous value."""
        current = self._clock().astimezone(UTC)
        current = current.replace(microsecond=current.microsecond // 1000 * 1000)
        if self._last_stamp is not None and current <= self._last_stamp:
            current = self._last_stamp + timedelta(milliseconds=1)
        self._last_stamp = current
        return current

    def peek_now(self) -> datetime:
        """Return the clock's time without consuming a modstamp."""
        return self._clock().astimezone(UTC)

    # -- lookups ----------------------------------------------------------------------------
    def object_def(self, name: str) -> ObjectDef:
        """Return the object called ``name`` in any letter case.

        Raises:
            ApiError: 404 NOT_FOUND as Salesforce answers for an unknown sObject.
        """
        for object_name, definition in self.objects.items():
            if object_name.lower() == name.lower():
                return definition
        raise ApiError(404, "NOT_FOUND", f"The requested resource does not exist: {name}")

    def get(self, object_name: str, record_id: str) -> Record | None:
        """Return a record by id (15- or 18-character), deleted or not."""
        table = self.records[object_name]
        found = table.get(record_id)
        if found is None and len(record_id) == 15:
            found = next((r for k, r in table.items() if k[:15] == record_id), None)
        return found

    def find_by(self, object_name: str, field_name: str, value: Any) -> list[Record]:
        """Return the live records whose ``field_name`` equals ``value`` (text: any case)."""
        index = self.indexes[object_name].get(field_name)
        if index is not None:
            table = self.records[object_name]
            return [table[i] for i in sorted(index.get(_index_key(value), ()))]
        return [
            r for r in self.records[object_name].values()
            if not r["IsDeleted"] and r.get(field_name) == value
        ]

    # -- validation --------------------------------------------------------------------------
    def clean(
        self,
        obj: ObjectDef,
        values: dict[str, Any],
        *,
        creating: bool,
        system: bool = False,
        existing: Record | None = None,
    ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """Validate and normalise field values for a write.

        Returns:
            The values keyed by canonical field names, and the record-level errors (empty when
            the values can be written). ``system`` allows read-only fields (used by seeding).
        """
        cleaned: dict[str, Any] = {}
        errors: list[dict[str, Any]] = []
        read_only: list[str] = []
        rejected: set[str] = set()
        for key, value in values.items():
            if key == "attributes":
                continue
            definition = obj.get(key)
            if definition is None:
                errors.append(record_error(
                    "INVALID_FIELD", f"No such column '{key}' on sobject of type {obj.name}"))
                continue
            name = definition.name
            if not system and not (definition.createable if creating else definition.updateable):
                read_only.append(name)
                continue
            problem, converted = _convert(definition.type, name, value, definition.length)
            if problem is not None:
                errors.append(problem)
                rejected.add(name)
                continue
            if (definition.restricted and converted is not None
                    and converted not in definition.picklist):
                errors.append(record_error(
                    "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
                    f"{definition.display_label}: bad value for restricted picklist field: "
                    f"{converted}",
                    [name]))
                rejected.add(name)
                continue
            cleaned[name] = converted
        if read_only:
            errors.append(record_error(
                "INVALID_FIELD_FOR_INSERT_UPDATE",
                f"Unable to create/update fields: {', '.join(read_only)}. Please check the "
                "security settings of this field and verify that it is read/write for your "
                "profile or permission set.", read_only))
        missing = []
        for definition in obj.fields.values():
            if not definition.required or definition.name in rejected:
                continue
            if definition.name in cleaned:
                present = cleaned[definition.name] not in (None, "")
            elif creating:
                present = definition.default is not None
            else:
                present = existing is not None and existing.get(definition.name) is not None
            if not present:
                missing.append(definition.name)
        if missing:
            errors.append(record_error(
                "REQUIRED_FIELD_MISSING", f"Required fields are missing: [{', '.join(missing)}]",
                missing))
        if not errors:
            errors.extend(self._unique_conflicts(obj, cleaned, existing))
        return cleaned, errors

    def _unique_conflicts(
        self, obj: ObjectDef, cleaned: dict[str, Any], existing: Record | None
    ) -> list[dict[str, Any]]:
        errors = []
        for name, value in cleaned.items():
            definition = obj.fields[name]
            if not definition.unique or value is None:
                continue
            for other in self.find_by(obj.name, name, value):
                if existing is None or other["Id"] != existing["Id"]:
                    errors.append(record_error(
                        "DUPLICATE_VALUE",
                        f"duplicate value found: {name} duplicates value on record with id: "
                        f"{other['Id']}", [name]))
                    break
        return errors

    # -- writes -----------------------------------------------------------------------------
    def insert(self, obj: ObjectDef, cleaned: dict[str, Any], stamp: str) -> Record:
        """Create a record from validated values (ids and dates assigned unless given)."""
        record: Record = {name: definition.default for name, definition in obj.fields.items()}
        record.update(cleaned)
        if not record.get("Id"):
            record["Id"] = salesforce_id(obj.key_prefix, next(self._sequence))
        record["CreatedDate"] = record.get("CreatedDate") or stamp
        record["LastModifiedDate"] = cleaned.get("LastModifiedDate") or stamp
        record["SystemModstamp"] = cleaned.get("SystemModstamp") or stamp
        record["IsDeleted"] = bool(record.get("IsDeleted"))
        _derive(obj.name, record)
        self.records[obj.name][record["Id"]] = record
        self._reindex(obj.name, record, {})
        if record["IsDeleted"]:
            self.deleted_at[obj.name][record["Id"]] = record["SystemModstamp"]
        return record

    def update(self, obj: ObjectDef, record: Record, cleaned: dict[str, Any], stamp: str) -> None:
        """Apply validated values to a record and move its modstamps."""
        old = {name: record.get(name) for name in self.indexes[obj.name]}
        record.update(cleaned)
        record["LastModifiedDate"] = stamp
        record["SystemModstamp"] = stamp
        _derive(obj.name, record)
        self._reindex(obj.name, record, old)

    def delete(self, obj: ObjectDef, record: Record, stamp: str) -> None:
        """Soft-delete a record (it stays visible to ``queryAll`` and ``deleted/``)."""
        old = {name: record.get(name) for name in self.indexes[obj.name]}
        record["IsDeleted"] = True
        self._reindex(obj.name, record, old)
        record["LastModifiedDate"] = stamp
        record["SystemModstamp"] = stamp
        self.deleted_at[obj.name][record["Id"]] = stamp

    def upsert(
        self, obj: ObjectDef, ext_field: str, ext_value: Any, values: dict[str, Any], stamp: str,
        *, apply: bool = True,
    ) -> WriteOutcome:
        """Create or update the record whose ``ext_field`` equals ``ext_value``.

        With ``apply=False`` only validates (used for allOrNone batches).

        Raises:
            ApiError: 300 when several records carry the value.
        """
        matches = self.find_by(obj.name, ext_field, ext_value)
        if len(matches) > 1:
            raise ApiError(300, "MULTIPLE_CHOICES",
                           f"More than one record found for external id field {ext_field}: "
                           f"{ext_value}")
        existing = matches[0] if matches else None
        payload = {k: v for k, v in values.items() if k != "attributes"}
        if existing is None:
            payload.setdefault(ext_field, ext_value)
        cleaned, errors = self.clean(obj, payload, creating=existing is None, existing=existing)
        if errors:
            return WriteOutcome(existing["Id"] if existing else None, False, errors)
        if not apply:
            return WriteOutcome(existing["Id"] if existing else None, existing is None)
        if existing is None:
            return WriteOutcome(self.insert(obj, cleaned, stamp)["Id"], True)
        self.update(obj, existing, cleaned, stamp)
        return WriteOutcome(existing["Id"], False)

    def seed_record(self, obj: ObjectDef, values: dict[str, Any], stamp: str) -> Record:
        """Insert a seed record; read-only fields allowed, defaults and ids filled in.

        Raises:
            ValueError: the values fail validation (the message lists every error).
        """
        cleaned, errors = self.clean(obj, values, creating=True, system=True)
        if "Id" in cleaned and cleaned["Id"] in self.records[obj.name]:
            errors.append(record_error("DUPLICATE_VALUE", f"duplicate Id {cleaned['Id']}"))
        if errors:
            details = "; ".join(f"{e['statusCode']}: {e['message']}" for e in errors)
            raise ValueError(f"{obj.name} seed record {values!r} is invalid: {details}")
        return self.insert(obj, cleaned, stamp)


def _index_key(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value


def _index_add(index: dict[Any, set[str]], value: Any, record_id: str) -> None:
    if value is not None:
        index.setdefault(_index_key(value), set()).add(record_id)


def _index_remove(index: dict[Any, set[str]], value: Any, record_id: str) -> None:
    ids = index.get(_index_key(value))
    if ids is not None:
        ids.discard(record_id)
        if not ids:
            del index[_index_key(value)]


def _derive(object_name: str, record: Record) -> None:
    """Keep fields Salesforce computes in step with the ones they derive from."""
    if object_name == "Opportunity":
        stage = record.get("StageName")
        record["IsClosed"] = stage in ("Closed Won", "Closed Lost")
        record["IsWon"] = stage == "Closed Won"


def _convert(
    field_type: str, name: str, value: Any, length: int
) -> tuple[dict[str, Any] | None, Any]:
    """Check one value against its field type; return (error, normalised value)."""
    if value is None:
        return None, None
    if field_type in STRING_TYPES:
        if not isinstance(value, str):
            if isinstance(value, bool) or not isinstance(value, int | float):
                return _bad_type(name, value), None
            value = str(value)
        if length and len(value) > length:
            return record_error(
                "STRING_TOO_LONG",
                f"{name}: data value too large: {value[:40]}... (max length={length})"
                if len(value) > 40 else f"{name}: data value too large: {value} "
                f"(max length={length})", [name]), None
        return None, value
    if field_type in NUMBER_TYPES:
        if isinstance(value, bool):
            return _bad_type(name, value), None
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                return _bad_type(name, value), None
        if not isinstance(value, int | float):
            return _bad_type(name, value), None
        if field_type == "int":
            if float(value) != int(value):
                return _bad_type(name, value), None
            return None, int(value)
        return None, value
    if field_type == "boolean":
        if isinstance(value, bool):
            return None, value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return None, value.lower() == "true"
        return _bad_type(name, value), None
    if field_type == "datetime":
        try:
            return None, format_datetime(parse_datetime(str(value)))
        except ValueError:
            return _bad_type(name, value), None
    if field_type == "date":
        try:
            return None, datetime.strptime(str(value)[:10], "%Y-%m-%d").date().isoformat()
        except ValueError:
            return _bad_type(name, value), None
    return None, value


def _bad_type(name: str, value: Any) -> dict[str, Any]:
    return record_error(
        "INVALID_TYPE_ON_FIELD_IN_RECORD", f"{name}: value not of required type: {value}", [name])

