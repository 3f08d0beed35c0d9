"""The types of canonical values, and reading the values a mapping gives as those types.

A field's value has a kind: what its last converting transform reads (``to_int`` → ``int``),
else the canonical field's own (``amount`` is ``decimal``). The values a mapping file gives for
a field (its ``default:``, a ``{default: V}`` step, a value map's canonical values) must be of
that kind, and are read with the kind's own transform reader, so that checking a mapping and
compiling it agree on what each value is.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any, NamedTuple

from refsync.domain import Referral
from refsync.mapping import transforms as t
from refsync.mapping.rules import Direction
from refsync.mapping.vocabulary import Step

__all__ = [
    "CANONICAL_KINDS",
    "TYPED_READERS",
    "StepDefault",
    "TypedReader",
    "field_kind",
    "step_default",
    "typed_value",
]


def _canonical_kinds() -> dict[str, str]:
    """Each canonical field's kind, read from the annotations of the Referral model."""
    kinds: dict[str, str] = {}
    for name, info in Referral.model_fields.items():
        if name == "status":
            kinds[name] = "status"
        elif info.annotation in (Decimal, Decimal | None):
            kinds[name] = "decimal"
        elif info.annotation in (datetime, datetime | None):
            kinds[name] = "datetime"
        elif info.annotation in (str, str | None):
            kinds[name] = "text"
    return kinds


CANONICAL_KINDS: dict[str, str] = _canonical_kinds()
"""The type of each canonical field's value, from the Referral model: ``amount`` is
``decimal``, ``submitted_at`` and ``closed_at`` are ``datetime``, ``status`` is ``status``, the
rest ``text``."""


class TypedReader(NamedTuple):
    """How a value the mapping gives (a default, a value map's canonical value) is read as one
    typed kind, and what to say when it cannot be."""

    read: Callable[[Any], Any]
    """the transform reader of the kind (``to_decimal`` for ``decimal``)"""
    what: str
    """what the value must be, as the problem says it (``a decimal number``)"""
    advice: str
    """what to write instead (``write a number``)"""
    example: str | None = None
    """a value to show after the advice, as written in YAML"""

    def fix(self, before: str, after: str = "") -> str:
        """The fix, its example written between ``before`` and ``after`` (``{default: 0}``)."""
        if self.example is None:
            return self.advice
        return f"{self.advice}, e.g. {before}{self.example}{after}"


TYPED_READERS: dict[str, TypedReader] = {
    "decimal": TypedReader(t.to_decimal, "a decimal number", "write a number", "0"),
    "int": TypedReader(t.to_int, "a whole number", "write a whole number", "0"),
    "bool": TypedReader(t.to_bool, "true or false", "write true or false"),
    "date": TypedReader(t.date_reader, "a date", "write an ISO 8601 date", '"2026-01-05"'),
    "datetime": TypedReader(t.datetime_reader, "a date and time",
                             "write an ISO 8601 date-time", '"2026-01-05T10:00:00Z"'),
}
"""The readers of the kinds a mapping's values are converted to (text and status are checked
apart)."""


def field_kind(name: str, steps: Iterable[Step]) -> str | None:
    """The type of a field's canonical value: what its last converting transform reads
    (``to_int`` → ``int``), else the canonical field's own (``amount`` → ``decimal``); ``None``
    for a ``custom.<name>`` field no transform converts."""
    explicit = next((step.kind for step in reversed(list(steps)) if step.kind), None)
    return explicit or CANONICAL_KINDS.get(name)


def typed_value(kind: str | None, value: Any, written: str | None = None) -> Any:
    """A value the mapping gives (a ``default:``, a ``{default: V}`` step, a value map's
    canonical value) as a value of its type, read by that type's transform reader:
    ``"1200.50"`` on ``amount`` is ``Decimal("1200.50")``, ``"2026-01-05T10:00:00Z"`` on
    ``submitted_at`` an aware UTC datetime. Text, status and untyped values are returned as
    they are.

    Args:
        kind: the value's kind (:func:`field_kind`, :func:`step_default`).
        value: the value as YAML read it.
        written: the value's text when YAML read it as something else (``1200.50`` as the
            float 1200.5, ``010`` as 8): a typed value is read as written.

    Raises:
        RecordError: the value is not a value of that type.
    """
    reader = TYPED_READERS.get(kind) if kind is not None else None
    if reader is None or value is None:
        return value
    return reader.read(value if written is None else written)


class StepDefault(NamedTuple):
    """The type a ``{default: V}`` transform step's V must be, from where the step stands."""

    kind: str
    """the kind V must be a value of (:func:`field_kind`'s kinds)"""
    where: str
    """where the step stands, as a problem says it (``after to_decimal``), or empty"""
    converted: bool
    """whether V stands for a value of that kind and is used as one (a converting step comes
    before it), or is the remote's value that a conversion after it reads (and is kept as
    written)"""


def step_default(
    name: str, steps: Sequence[Step], index: int, *, mapped: bool, direction: str
) -> StepDefault | None:
    """The type the ``{default: V}`` step at ``index`` of a field's ``steps`` gives a value of.

    Reading runs the steps in order, then (when no step converts and the field has no value
    map) the field's own conversion; writing runs the same in reverse. So after a converting
    step the value is of the type that step reads (``[to_decimal, {default: 0}]``: a Decimal,
    which writing hands to to_decimal's writer); before every converting step it is the
    remote's value, which the next conversion reads (``[{default: "0"}, to_int]``, or
    ``amount: {transform: [{default: "0"}]}``) and which is written to the remote as it is.

    Returns:
        ``None`` when the step is not a ``default`` step, or V may be any value: the field
        is text, a status or an unconverted custom field, a value map reads V, or the field
        only flows out, so no conversion ever reads it.
    """
    if steps[index].name != "default":
        return None
    before = next((step for step in reversed(steps[:index]) if step.kind), None)
    if before is not None and before.kind is not None:
        found = StepDefault(before.kind, f"after {before.name}", True)
    elif direction == Direction.OUT.value:
        return None
    else:
        after = next((step for step in steps[index + 1:] if step.kind), None)
        if after is not None and after.kind is not None:
            found = StepDefault(after.kind, f"before {after.name}", False)
        elif mapped or name not in CANONICAL_KINDS:
            return None
        else:
            found = StepDefault(CANONICAL_KINDS[name], "", False)
    return found if found.kind in TYPED_READERS else None
