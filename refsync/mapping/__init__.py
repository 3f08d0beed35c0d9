"""Field mappings between refsync's canonical referral and each remote system.

A mapping is a YAML file per (system, stream) that admins review like code. The pipeline is
YAML → pydantic models (structure) → meaning checks (every problem at once, with file:line:col)
→ a :class:`CompiledMapping` of plain closures that translate records both ways::

    mapping = load_mapping("builtin:salesforce-lead")      # or a file path
    mapped = mapping.to_canonical(lead)                    # MappedRecord(values, errors)
    payload = mapping.to_remote(referral)                  # dict for the connector's write()
    written_hash = mapping.content_hash(payload)           # echo suppression

:func:`decide` settles one field between the hub and a remote by the field's rule, and
:func:`validate_against` checks a mapping against a connector's ``discover()`` result.
Nothing here does I/O except reading the mapping files.
"""

from __future__ import annotations

from refsync.mapping.compiled import CompiledField, CompiledMapping, MappedRecord, compile_mapping
from refsync.mapping.loader import (
    BUILTIN_PREFIX,
    builtin_mapping_names,
    default_mapping_path,
    load_mapping,
    parse_mapping,
    resolve_mapping_reference,
)
from refsync.mapping.rules import Decision, Direction, FieldState, Rule, decide
from refsync.mapping.schema_check import validate_against
from refsync.mapping.spec import FieldSpec, MappingSpec
from refsync.mapping.valuemap import UnmappedValueError, ValueMap
from refsync.mapping.vocabulary import TRANSFORM_NAMES

__all__ = [
    "BUILTIN_PREFIX",
    "TRANSFORM_NAMES",
    "CompiledField",
    "CompiledMapping",
    "Decision",
    "Direction",
    "FieldSpec",
    "FieldState",
    "MappedRecord",
    "MappingSpec",
    "Rule",
    "UnmappedValueError",
    "ValueMap",
    "builtin_mapping_names",
    "compile_mapping",
    "decide",
    "default_mapping_path",
    "load_mapping",
    "parse_mapping",
    "resolve_mapping_reference",
    "validate_against",
]
