"""What a connector's ``discover()`` reports about a remote object: its fields and their limits.

Connectors translate their system's metadata (Salesforce ``describe``, HubSpot properties, ...)
into these plain dataclasses so mappings can be checked against them without knowing the system.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["FieldSchema", "ObjectSchema"]


@dataclass(frozen=True, slots=True)
class FieldSchema:
    """One remote field.

    Attributes:
        name: the field's API name; nested fields use a dotted path (``fields.refsync_id``).
        type: the system's own type name, lower-case (``string``, ``picklist``, ``currency``,
            ``number``, ``enumeration``, ``datetime``, ``boolean``, ...).
        required: a value must be given when creating a record.
        writable: the field can be set on create or update (Salesforce createable/updateable,
            HubSpot not read-only).
        unique: values are unique across records.
        external_id: the field can be used as an upsert key.
        picklist_values: the allowed values for picklist/enumeration fields, else ``None``.
        length: the maximum text length, when the system has one.
    """

    name: str
    type: str
    required: bool = False
    writable: bool = True
    unique: bool = False
    external_id: bool = False
    picklist_values: list[str] | None = None
    length: int | None = None


@dataclass(frozen=True, slots=True)
class ObjectSchema:
    """A remote object (``Lead``, ``contacts``) and its fields, keyed by field name."""

    name: str
    fields: dict[str, FieldSchema] = field(default_factory=dict)
