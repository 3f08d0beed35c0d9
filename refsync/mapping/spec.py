"""The mapping file's shape as pydantic models (``extra="forbid"``, so typos are reported).

These models check structure only (keys, types, enums). Meaning (known canonical fields,
transform names and arguments, lifecycle statuses, duplicate targets) is checked by
:mod:`refsync.mapping.checks`, which reports every problem with its position.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from refsync.mapping.rules import Direction, Rule
from refsync.validation import explain_pattern

__all__ = ["FieldSpec", "MappingSpec", "TransformSpec", "ValueMapSpec"]

_REMOTE_PATH = explain_pattern(
    r"^[^.\s]+(\.[^.\s]+)*$",
    "a remote field name, or a dotted path such as address.city, without spaces",
    "write the field's API name as the remote system spells it, e.g. Email or Partner_Key__c")

TransformSpec = str | dict[str, Any]
"""One transform step as written: a name (``strip``) or a one-key mapping (``{truncate: 255}``)."""

ValueMapSpec = dict[str | int | bool, Any]
"""``remote value: canonical value`` pairs plus an optional ``out: {canonical: remote}`` entry."""


class FieldSpec(BaseModel):
    """How one canonical field maps to one remote field.

    ``email: Email`` is short for ``email: {remote: Email}``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        return {"remote": data} if isinstance(data, str) else data

    remote: str = Field(pattern=_REMOTE_PATH, description="remote field name or dotted path")
    transform: list[TransformSpec] = Field(default_factory=list)
    default: Any = None
    values: ValueMapSpec | None = None
    rule: Rule = Rule.TWO_WAY
    direction: Direction = Direction.BOTH


class MappingSpec(BaseModel):
    """One mapping file: one (system, object) pair and its fields."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    system: str = Field(min_length=1)
    object: str = Field(min_length=1)
    key_field: str = Field(pattern=_REMOTE_PATH)
    fields: dict[str, FieldSpec] = Field(min_length=1)
