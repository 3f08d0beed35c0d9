"""Stable content hashes of the remote fields a mapping writes, for echo suppression.

When refsync writes a record it stores ``content_hash(payload)``; when it next reads that record
it compares ``content_hash(record_as_read)``. Equal hashes mean the record is our own write
coming back. Both sides go through the same function on the same remote field paths, and every
value is first normalised so that the ways a system echoes a value back hash alike:

- ``None``, ``""`` and whitespace-only text are all blank;
- numbers: ``1200``, ``1200.0`` and ``Decimal("1200.00")`` are one value, and so is ``"1200"``
  in a numeric field (one with ``to_decimal``/``to_int``, or ``amount``);
- fields with a date or datetime conversion compare the parsed UTC value, so
  ``2024-01-05T10:00:00Z``, ``2024-01-05T10:00:00.000+0000`` and epoch milliseconds agree;
- fields with ``to_bool`` compare the parsed boolean (``"true"`` and ``True``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from refsync.errors import RecordError
from refsync.jsontext import hash_text
from refsync.mapping import transforms as t

__all__ = ["hash_normaliser", "hash_values"]



def _generic(value: Any) -> Any:
    if value.__class__ is str:  # the common cases, answered as the general path below would
        return value if value.strip() else None
    if value is None:
        return None
    if t.is_blank(value):
        return None
    if isinstance(value, (bool, str)):
        return value
    if isinstance(value, (int, float, Decimal)):
        try:
            number = t.to_decimal(value)
        except RecordError:
            return repr(value)
        return format(number.normalize(), "f") if number is not None else None
    if isinstance(value, datetime):
        return t.datetime_writer("iso")(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, (list, tuple)):
        return [_generic(item) for item in value]
    if isinstance(value, Mapping):
        return {str(key): _generic(item) for key, item in value.items()}
    return str(value)


def _parsed(parse: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def normalise(value: Any) -> Any:
        try:
            return _generic(parse(value))
        except RecordError:
            return _generic(value)

    return normalise


def _number(value: Any) -> Any:
    if isinstance(value, str) and not t.is_blank(value):
        try:
            value = t.to_decimal(value)
        except RecordError:
            return value
    return _generic(value)


_BY_KIND: dict[str | None, Callable[[Any], Any]] = {
    None: _generic,
    "text": _generic,
    "status": _generic,
    "decimal": _number,
    "int": _number,
    "bool": _parsed(t.to_bool),
    "date": _parsed(t.date_reader),
    "datetime": _parsed(t.datetime_reader),
}


def hash_normaliser(kind: str | None) -> Callable[[Any], Any]:
    """The value normaliser for a field whose values are of ``kind`` (see :mod:`hashing`)."""
    return _BY_KIND.get(kind, _generic)


def hash_values(
    record: Mapping[str, Any],
    fields: Sequence[
        tuple[str, Callable[[Mapping[str, Any]], Any] | None, Callable[[Any], Any]]
    ],
) -> str:
    """SHA-256 (hex) over ``(path, normalised value)`` for each ``(path, reader, normaliser)``.

    A reader of ``None`` stands for ``record.get(path)``: a top-level field, read without a
    function call of its own.
    """
    get = record.get
    items = [[path, normalise(get(path) if read is None else read(record))]
             for path, read, normalise in fields]
    return hashlib.sha256(hash_text(items).encode("utf-8")).hexdigest()
