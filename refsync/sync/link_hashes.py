"""The hashes a link keeps of its record: what refsync last wrote there and what it last read.

Both fit the link's 64-character columns and carry the fingerprint of the mapping they were
made with, so that a record read again can tell "the remote changed this" from "refsync wrote
this" and "the mapping changed since":

- ``last_written_hash``: 55 hex digits of the hash of the fields the mapping writes (key
  included), ``:``, the mapping's 8-digit fingerprint. A payload whose first part is the same
  is what the record already holds, whatever the mapping's other fields say, so its write is
  skipped.
- ``last_read_hash``: 26 digits of the same written fields' hash, ``:``, the mapping's
  fingerprint, 29 digits of the hash of the fields the mapping only reads (``direction: in``).

Links kept by an earlier refsync hold one hash of another form (the written fields' hash salted
with the whole mapping): while the mapping is unchanged, a written one still says the record
holds what refsync wrote (``StreamBinding.earlier_hash``); otherwise the record is looked at
again once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["RecordHashes", "StoredHashes"]

_WRITTEN = 55  # of last_written_hash: the written fields' hash, then ":" and the fingerprint
_READ_WRITTEN = 26  # of last_read_hash: the written fields' hash, then ":" and the rest
_FINGERPRINT = 8
_READ_ONLY = 29  # of last_read_hash, after the fingerprint: the read-only fields' hash


@dataclass(frozen=True, slots=True)
class RecordHashes:
    """The hashes of one record as read now (or of one payload about to be written).

    Attributes:
        written: hash of the fields the mapping writes, key included (64 hex digits).
        read_only: hash of the fields the mapping only reads (64 hex digits).
        mapping: the mapping's fingerprint (8 hex digits).
    """

    written: str
    read_only: str
    mapping: str

    @property
    def written_text(self) -> str:
        """What ``last_written_hash`` keeps after writing this payload."""
        return f"{self.written[:_WRITTEN]}:{self.mapping}"

    @property
    def read_text(self) -> str:
        """What ``last_read_hash`` keeps after reading this record."""
        return f"{self.written[:_READ_WRITTEN]}:{self.mapping}{self.read_only[:_READ_ONLY]}"


@dataclass(frozen=True, slots=True)
class StoredHashes:
    """A link's two hashes, compared with a record read now."""

    last_written: str | None
    last_read: str | None

    def _written_parts(self) -> tuple[str, str] | None:
        """(written fields' hash, fingerprint) of ``last_written``; None for none or the
        earlier form."""
        stored = self.last_written
        if stored is None or stored[_WRITTEN:_WRITTEN + 1] != ":":
            return None
        return stored[:_WRITTEN], stored[_WRITTEN + 1:]

    def _read_parts(self) -> tuple[str, str, str] | None:
        """(written fields' hash, fingerprint, read-only fields' hash) of ``last_read``; None
        for none or the earlier form."""
        stored = self.last_read
        start = _READ_WRITTEN + 1
        if stored is None or stored[_READ_WRITTEN:start] != ":":
            return None
        return (stored[:_READ_WRITTEN], stored[start:start + _FINGERPRINT],
                stored[start + _FINGERPRINT:])

    def holds_written(self, now: RecordHashes) -> bool:
        """The record's written fields hold what refsync last wrote there."""
        return self.holds_written_by(now.written)

    def holds_written_by(self, written_then: str) -> bool:
        """The record's fields that a mapping wrote, whose hash (that mapping's
        :meth:`~refsync.mapping.compiled.CompiledMapping.content_hash`) is ``written_then``,
        hold what refsync last wrote there."""
        parts = self._written_parts()
        return parts is not None and parts[0] == written_then[:_WRITTEN]

    def holds_earlier(self, now: RecordHashes, salted: Callable[[str], str]) -> bool:
        """``last_written`` is of the form an earlier refsync kept (one hash, no parts), and
        the record's written fields hold what it wrote there: ``salted(now.written)`` (the
        written fields' hash salted with the mapping, which must be unchanged) is that hash."""
        stored = self.last_written
        return stored is not None and len(stored) == 64 and ":" not in stored and \
            stored == salted(now.written)

    def written_with(self) -> str | None:
        """The fingerprint of the mapping that made the last write, if known."""
        parts = self._written_parts()
        return None if parts is None else parts[1]

    def written_under(self, now: RecordHashes) -> bool:
        """The last write was made with the mapping in use now."""
        return self.written_with() == now.mapping

    def holds_read(self, now: RecordHashes) -> bool:
        """The record's written fields hold what refsync last read there."""
        parts = self._read_parts()
        return parts is not None and parts[0] == now.written[:_READ_WRITTEN]

    def read_under(self, now: RecordHashes) -> bool:
        """The last read was made with the mapping in use now."""
        parts = self._read_parts()
        return parts is not None and parts[1] == now.mapping

    def read_only_read_by(self, fingerprint: str, read_only_then: str) -> bool:
        """The record's fields that the mapping version ``fingerprint`` only read, whose hash
        (that version's :meth:`~refsync.mapping.compiled.CompiledMapping.read_only_hash`) is
        ``read_only_then``, hold what refsync last read there, with that version."""
        parts = self._read_parts()
        return parts is not None and parts[1] == fingerprint and \
            parts[2] == read_only_then[:_READ_ONLY]

    def read_only_as_read(self, now: RecordHashes) -> bool:
        """The fields the mapping only reads hold what refsync last read there, with the
        mapping in use now."""
        return self.read_only_read_by(now.mapping, now.read_only)
