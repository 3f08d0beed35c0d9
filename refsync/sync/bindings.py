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
from refsync.sync.link_hashes import RecordHashes

__all__ = ["COUNT_NAMES", "RunCounts", "StreamBinding", "run_transaction"]

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

    @functools.cached_property
    def _spec_digest(self) -> str:
        return hashlib.sha256(self.mapping.spec.model_dump_json().encode()).hexdigest()

    @property
    def fingerprint(self) -> str:
        """8 hex digits that change whenever the mapping does (kept in the link hashes)."""
        return self._spec_digest[:8]

    def earlier_hash(self, written: str) -> str:
        """The one hash links kept before their hashes had parts: the written fields' hash
        ``written`` salted with the whole mapping. A link still holding one is recognised by
        it while the mapping is unchanged, so an upgrade writes nothing again."""
        return hashlib.sha256(f"{self._spec_digest[:12]}:{written}".encode()).hexdigest()

    def hashes(self, remote_record: Any) -> RecordHashes:
        """The hashes of a record read from the stream (see :mod:`refsync.sync.link_hashes`)."""
        mapping = self.mapping
        return RecordHashes(mapping.content_hash(remote_record),
                            mapping.read_only_hash(remote_record), self.fingerprint)

    def payload_hashes(self, payload: Any) -> RecordHashes:
        """The hashes of a payload to write: its written fields' (the only ones it has)."""
        return RecordHashes(self.mapping.content_hash(payload), "", self.fingerprint)

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
