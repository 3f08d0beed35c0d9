"""Check a mapping against what a connector's ``discover()`` says about the remote object.

Offline validation (:func:`refsync.mapping.load_mapping`) knows only refsync's side; this adds
the remote side: field names exist, types fit, written fields are writable, value maps use real
picklist values, required fields are written, truncation fits the field length and the key field
can be used for upserts.
"""

from __future__ import annotations

from typing import Any

from refsync.connectors.schema import FieldSchema, ObjectSchema
from refsync.domain import ReferralStatus
from refsync.errors import Problem
from refsync.mapping.checks import split_value_map
from refsync.mapping.compiled import CompiledField, CompiledMapping
from refsync.yamlsource import did_you_mean

__all__ = ["remote_type_family", "validate_against"]

_FAMILIES: dict[str, frozenset[str]] = {
    "text": frozenset({"string", "text", "textarea", "email", "phone", "url", "id", "reference",
                       "encryptedstring", "combobox", "html", "phone_number", "str"}),
    "picklist": frozenset({"picklist", "multipicklist", "enumeration", "select", "radio", "enum"}),
    "number": frozenset({"currency", "double", "percent", "int", "integer", "long", "number",
                         "decimal", "float"}),
    "bool": frozenset({"boolean", "bool", "booleancheckbox", "checkbox"}),
    "date": frozenset({"date"}),
    "datetime": frozenset({"datetime", "date_time", "timestamp"}),
    "object": frozenset({"object", "dict", "map", "json"}),
}
_FAMILY_OF = {name: family for family, names in _FAMILIES.items() for name in names}

# which remote type families accept the values a field writes, by the field's value kind
_ACCEPTS: dict[str, frozenset[str]] = {
    "text": frozenset({"text", "picklist"}),
    "status": frozenset({"text", "picklist"}),
    "mapped": frozenset({"text", "picklist", "bool", "number"}),
    "decimal": frozenset({"number", "text"}),
    "int": frozenset({"number", "text"}),
    "bool": frozenset({"bool", "text", "picklist"}),
    "date": frozenset({"date", "datetime", "text", "number"}),
    "datetime": frozenset({"datetime", "date", "text", "number"}),
}
_CONVERSION_FOR = {"number": "to_decimal or to_int", "bool": "to_bool", "date": "date",
                   "datetime": "datetime"}


def remote_type_family(type_name: str) -> str | None:
    """The family (text, picklist, number, bool, date, datetime, object) of a remote type name."""
    return _FAMILY_OF.get(type_name.lower())


def validate_against(mapping: CompiledMapping, schema: ObjectSchema) -> list[Problem]:
    """Every problem between ``mapping`` and the remote object described by ``schema``.

    Args:
        mapping: a compiled mapping (its source positions are used in the problems).
        schema: the connector's ``discover()`` result for ``mapping.object``.

    Returns:
        Problems sorted by position; empty when the mapping fits the remote object.
    """
    problems: list[Problem] = []
    where = _Locator(mapping)
    problems.extend(_check_key(mapping, schema, where))
    written: set[str] = {mapping.key_field}
    for item in mapping.fields:
        remote = _lookup(item.remote, schema)
        if remote is None:
            if not _inside_object(item.remote, schema):
                problems.append(_unknown(item.remote, schema, where, ("fields", item.canonical,
                                                                      "remote")))
            continue
        if item.writes:
            written.add(item.remote)
            if not remote.writable:
                problems.append(where.problem(
                    ("fields", item.canonical, "remote"),
                    f"{schema.name}.{remote.name} is read-only, but '{item.canonical}' writes it",
                    "set direction: in for this field"))
        problems.extend(_check_type(mapping, item, remote, schema, where))
        problems.extend(_check_picklist(mapping, item, remote, schema, where))
        problems.extend(_check_length(mapping, item, remote, schema, where))
    for remote in schema.fields.values():
        if remote.required and remote.writable and remote.name not in written:
            problems.append(where.problem(
                ("fields",),
                f"{schema.name}.{remote.name} is required when creating a record, "
                "but no field writes it",
                f"map a canonical field to {remote.name} (with a default: if it may be blank)",
                key=True))
    return sorted(problems, key=lambda p: (p.line, p.column, p.message))


class _Locator:
    def __init__(self, mapping: CompiledMapping) -> None:
        self.mapping = mapping

    def problem(
        self, path: tuple[str | int, ...], message: str, fix: str, *, key: bool = False
    ) -> Problem:
        if self.mapping.source is None:
            return Problem(self.mapping.name, 1, 1, message, fix)
        return self.mapping.source.problem(path, message, fix, key=key)


def _lookup(path: str, schema: ObjectSchema) -> FieldSchema | None:
    return schema.fields.get(path)


def _inside_object(path: str, schema: ObjectSchema) -> bool:
    head, dot, _ = path.partition(".")
    parent = schema.fields.get(head)
    return bool(dot) and parent is not None and remote_type_family(parent.type) == "object"


def _unknown(path: str, schema: ObjectSchema, where: _Locator,
             at: tuple[str | int, ...]) -> Problem:
    guess = did_you_mean(path, schema.fields)
    fix = f"did you mean '{guess}'?" if guess else \
        f"check the field's API name in {schema.name} (custom fields may need creating)"
    return where.problem(at, f"{schema.name} has no field '{path}'", fix)


def _check_key(mapping: CompiledMapping, schema: ObjectSchema, where: _Locator) -> list[Problem]:
    key = _lookup(mapping.key_field, schema)
    if key is None:
        if _inside_object(mapping.key_field, schema):
            return []
        return [_unknown(mapping.key_field, schema, where, ("key_field",))]
    problems = []
    if not (key.external_id or key.unique):
        problems.append(where.problem(
            ("key_field",),
            f"{schema.name}.{key.name} is neither an external id nor unique, so upserts by it "
            "could create duplicates",
            "mark the field as External ID / unique in the remote system"))
    if not key.writable:
        problems.append(where.problem(("key_field",), f"{schema.name}.{key.name} is read-only",
                                      "use a writable field to hold the refsync id"))
    return problems


def _value_kind(item: CompiledField) -> str:
    if _field_spec_values(item) is not None:
        return "mapped"
    return item.kind or "text"


def _field_spec_values(item: CompiledField) -> Any:
    return None if item.field_spec is None else item.field_spec.values


def _check_type(mapping: CompiledMapping, item: CompiledField, remote: FieldSchema,
                schema: ObjectSchema, where: _Locator) -> list[Problem]:
    family = remote_type_family(remote.type)
    if family is None or family == "object":
        return []
    kind = _value_kind(item)
    if family in _ACCEPTS.get(kind, frozenset({family})):
        return []
    conversion = _CONVERSION_FOR.get(family)
    fix = f"add the {conversion} transform" if conversion and kind in ("text", "status") else \
        "map it to a remote field of a matching type"
    return [where.problem(
        ("fields", item.canonical, "remote"),
        f"{schema.name}.{remote.name} is a {remote.type} field, but '{item.canonical}' holds "
        f"{kind} values", fix)]


def _check_picklist(mapping: CompiledMapping, item: CompiledField, remote: FieldSchema,
                    schema: ObjectSchema, where: _Locator) -> list[Problem]:
    allowed = remote.picklist_values
    if allowed is None:
        return []
    allowed_set = set(allowed)
    values = _field_spec_values(item)
    problems = []
    if values is not None:
        pairs, _ = split_value_map(values)
        originals = {str(k).lower() if isinstance(k, bool) else str(k): k for k in values}
        for remote_value in pairs:
            if remote_value not in allowed_set:
                problems.append(where.problem(
                    ("fields", item.canonical, "values", originals.get(remote_value, remote_value)),
                    f"{remote_value!r} is not a picklist value of {schema.name}.{remote.name}",
                    _allowed_fix(remote_value, allowed), key=True))
        return problems
    if item.canonical == "status" and item.writes:
        missing = [s.value for s in ReferralStatus if s.value not in allowed_set]
        if missing:
            problems.append(where.problem(
                ("fields", item.canonical, "remote"),
                f"{schema.name}.{remote.name} has no picklist values for "
                f"{', '.join(missing)}",
                "add a values: map from the picklist values to lifecycle statuses"))
    return problems


def _allowed_fix(value: str, allowed: list[str]) -> str:
    guess = did_you_mean(value, allowed)
    if guess:
        return f"did you mean {guess!r}?"
    return f"use one of: {', '.join(repr(v) for v in allowed[:20])}"


def _check_length(mapping: CompiledMapping, item: CompiledField, remote: FieldSchema,
                  schema: ObjectSchema, where: _Locator) -> list[Problem]:
    if remote.length is None or item.field_spec is None or not item.writes:
        return []
    for index, step in enumerate(item.field_spec.transform):
        if isinstance(step, dict) and isinstance(step.get("truncate"), int) and \
                step["truncate"] > remote.length:
            return [where.problem(
                ("fields", item.canonical, "transform", index, "truncate"),
                f"truncate: {step['truncate']} is longer than {schema.name}.{remote.name} "
                f"allows ({remote.length})",
                f"write {{truncate: {remote.length}}}")]
    return []
