"""Fields a mapping only fills when blank (``set_if_empty``), and what each remote record holds.

A ``set_if_empty`` field is written to a remote record only while the record's value is blank:
once it holds a value (sales renamed the deal, corrected the title), refsync leaves it alone,
also when the referral is written there again because another field changed. To know which
fields are blank without reading the record before each write, every link keeps the remote's
last known values of these fields (``link.remote_values``): what was read from the record, or
what was last written to it.

A write to an existing record then sends such a field only when its known value is blank. A
field whose value is not known (a link from before refsync kept these values, or a field that
became ``set_if_empty`` in an edited mapping) is not sent either: leaving a value alone is the
safe side of the rule, and the value is learnt at the record's next read.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from refsync.mapping.compiled import CompiledMapping
from refsync.mapping.paths import path_getter, path_setter, split_path
from refsync.mapping.rules import Rule
from refsync.mapping.transforms import is_blank

__all__ = ["FillOnlyFields", "Outgoing"]


@dataclass(frozen=True)
class Outgoing:
    """One record's write, with the ``set_if_empty`` fields the remote holds taken out.

    Attributes:
        payload: what to send.
        expected: what the remote record holds once the write is applied (the payload plus the
            values left alone, or the hub's value where that is unknown): its hash is the
            written hash, so that reading the record back is recognised as an echo.
        remote_values: the link's known values after the write (None: its mapping has no
            ``set_if_empty`` field, and the link keeps none).
    """

    payload: dict[str, Any]
    expected: dict[str, Any]
    remote_values: dict[str, Any] | None


@dataclass(frozen=True)
class FillOnlyFields:
    """The remote paths of a mapping's written ``set_if_empty`` fields."""

    paths: tuple[str, ...]
    _getters: tuple[Callable[[Mapping[str, Any]], Any], ...]
    _setters: tuple[Callable[[dict[str, Any], Any], None], ...]

    @classmethod
    def of(cls, mapping: CompiledMapping) -> FillOnlyFields | None:
        """The fields of ``mapping`` written only while the remote is blank; None if none."""
        paths = tuple(field.remote for field in mapping.fields
                      if field.writes and field.rule is Rule.SET_IF_EMPTY)
        if not paths:
            return None
        return cls(paths, tuple(path_getter(path) for path in paths),
                   tuple(path_setter(path) for path in paths))

    def read(self, record: Mapping[str, Any]) -> dict[str, Any]:
        """A remote record's values of these fields, by path (a missing one reads as None)."""
        return {path: get(record) for path, get in zip(self.paths, self._getters, strict=True)}

    def outgoing(self, values: dict[str, Any], link: Mapping[str, Any] | None) -> Outgoing:
        """The write of ``values`` (the mapping's remote record) to the record of ``link``.

        A new record (no link) gets every field. An existing one gets a field only when its
        known value is blank.
        """
        written = self.read(values)
        if link is None:
            return Outgoing(values, values, written)
        known: Mapping[str, Any] = link.get("remote_values") or {}
        payload, expected = values, values
        after: dict[str, Any] = dict(known)
        for path, setter in zip(self.paths, self._setters, strict=True):
            if path in known and is_blank(known[path]):
                after[path] = written[path]  # blank there: the hub's value fills it
                continue
            payload = _without(payload, split_path(path))
            if path in known:
                if expected is values:
                    expected = _copied(values)
                setter(expected, known[path])
        return Outgoing(payload, expected, after)


def _without(record: dict[str, Any], parts: tuple[str, ...]) -> dict[str, Any]:
    """``record`` without the value at ``parts`` (a copy; ``record`` is left as it is)."""
    copy = dict(record)
    if len(parts) == 1:
        copy.pop(parts[0], None)
        return copy
    child = copy.get(parts[0])
    if isinstance(child, dict):
        copy[parts[0]] = _without(child, parts[1:])
    return copy


def _copied(record: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``record`` whose nested dicts are copies too (so setting a path is safe)."""
    return {key: _copied(value) if isinstance(value, dict) else value
            for key, value in record.items()}
