"""What one sync cycle works with: each configured stream bound to its connector and mapping."""

from __future__ import annotations

import contextlib
import functools
import hashlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from refsync.config import StreamConfig
from refsync.connectors.base import Connector
from refsync.mapping.compiled import CompiledMapping
from refsync.state import LeaseToken, StateStore, StateTransaction
from refsync.sync.fill_only import FillOnlyFields

__all__ = ["COUNT_NAMES", "RunCounts", "StreamBinding", "run_transaction"]

_PART = 31
"""Length of the written fields' part of a read hash (the link's column holds 64 characters)."""

COUNT_NAMES = (
    "read", "created", "updated", "unchanged", "echoes", "matched", "duplicates", "rejected",
    "conflicts", "ignored", "deleted", "written", "quarantined", "deferred",
)
"""The counters every run reports, in display order."""


@dataclass
class StreamBinding:
    """One configured stream: system, stream name, its connector and compiled mapping."""

    system: str
    stream: str
    role: str
    config: StreamConfig
    mapping: CompiledMapping
    connector: Connector
    _fingerprint: str | None = field(default=None, repr=False)

    def written_hash(self, remote_record: Any) -> str:
        """The hash of what a record holds in the fields the mapping writes (key included).

        Links keep it for the last write (``last_written_hash``): a write whose payload hashes
        the same is skipped, and a record read back with it holds what refsync wrote there. It
        depends on those fields' values alone, so a mapping edit that leaves what is written
        alone (a field read in, a rule, a value map entry no record uses) changes nothing.
        """
        return self.mapping.content_hash(remote_record)

    def read_hash(self, remote_record: Any, written: str) -> str:
        """The hash a link keeps for the last read (``last_read_hash``) of a record whose
        :meth:`written_hash` is ``written``: a part for the fields the mapping writes and one for
        the fields it only reads, salted with the mapping itself, so that after a mapping
        change every record is looked at again once (:meth:`read_part`)."""
        if self._fingerprint is None:
            spec = self.mapping.spec.model_dump_json()
            self._fingerprint = hashlib.sha256(spec.encode()).hexdigest()[:12]
        read_only = self.mapping.read_only_hash(remote_record, salt=self._fingerprint)
        return f"{written[:_PART]}:{read_only[:32]}"

    @staticmethod
    def read_part(read_hash: str | None) -> str | None:
        """The part of a :meth:`read_hash` that covers the fields the mapping only reads and
        the mapping (None for a hash of an older refsync, which had no parts)."""
        if read_hash is None or read_hash[_PART:_PART + 1] != ":":
            return None
        return read_hash[_PART:]

    @staticmethod
    def written_part(read_hash: str | None) -> str | None:
        """The part of a :meth:`read_hash` that covers the fields the mapping writes."""
        if read_hash is None or read_hash[_PART:_PART + 1] != ":":
            return None
        return read_hash[:_PART]

    @functools.cached_property
    def fill_only(self) -> FillOnlyFields | None:
        """The mapping's fields written only while the remote is blank (``set_if_empty``)."""
        return FillOnlyFields.of(self.mapping)

    @property
    def object(self) -> str:
        """The remote object the stream reads and writes."""
        return self.config.object

    @property
    def reads(self) -> bool:
        """Whether the stream pulls (direction ``in`` or ``both``)."""
        return self.config.enabled and self.config.direction in ("in", "both")

    @property
    def writes(self) -> bool:
        """Whether the stream pushes (direction ``out`` or ``both``)."""
        return self.config.enabled and self.config.direction in ("out", "both")

    @property
    def label(self) -> str:
        """``system.stream``, for messages."""
        return f"{self.system}.{self.stream}"


@dataclass
class RunCounts:
    """Counters of one run, in total and per ``system.stream``."""

    total: Counter[str] = field(default_factory=Counter)
    by_stream: dict[str, Counter[str]] = field(default_factory=dict)
    run_totals: dict[str, int] = field(default_factory=dict)
    """Figures of the run as a whole beside the counters (a retry's ``replayed``), recorded
    with them."""

    def add(self, binding: StreamBinding, name: str, amount: int = 1, *,
            stream_name: str | None = None) -> None:
        """Count ``amount`` of ``name`` for a stream and in total.

        ``stream_name`` counts it under another name for the stream, where the total's name
        would not say which way the records went (``write_quarantined``: a stream that reads
        and writes quarantines records both ways).
        """
        if amount:
            self.total[name] += amount
            label = binding.label
            counts = self.by_stream.get(label)
            if counts is None:
                counts = self.by_stream[label] = Counter()
            counts[stream_name or name] += amount

    @contextlib.contextmanager
    def taken_back_on_error(self) -> Iterator[None]:
        """Take back what the block counted if it fails: wrapped around a transaction, the
        counts then say only what was committed (a page whose commit failed is not counted)."""
        total, run_totals = self.total.copy(), dict(self.run_totals)
        by_stream = {label: counts.copy() for label, counts in self.by_stream.items()}
        try:
            yield
        except BaseException:
            self.total, self.by_stream, self.run_totals = total, by_stream, run_totals
            raise

    def as_dict(self) -> dict[str, Any]:
        """Totals (every counter, zeros included) plus per-stream counts, JSON-ready."""
        totals: dict[str, Any] = {name: int(self.total.get(name, 0)) for name in COUNT_NAMES}
        totals.update(self.run_totals)
        totals["streams"] = {
            label: {k: int(v) for k, v in counts.items() if v}
            for label, counts in sorted(self.by_stream.items())
        }
        return totals


@contextlib.contextmanager
def run_transaction(
    store: StateStore, run_id: str, counts: RunCounts, lease: LeaseToken | None
) -> Iterator[StateTransaction]:
    """A write transaction of a run (a page, a pushed batch, a replay), fenced by ``lease``.

    The run's counts commit with it, so a run that never finishes still says what it
    committed; if it fails, what it counted is taken back.
    """
    with counts.taken_back_on_error(), store.transaction(lease=lease) as tx:
        yield tx
        tx.record_progress(run_id, counts.as_dict())
