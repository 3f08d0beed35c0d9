"""Push: drain one stream's outbox through its connector, in batches.

The outbox holds *which* referral must be written where; the payload is computed at push time
from the current referral and the current mapping, so a write quarantined because of a mapping
mistake succeeds on ``refsync retry`` once the mapping is fixed. A payload whose hash equals the
one last written there is not sent again.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from refsync.connectors.base import REMOTE_ID_FIELD, WriteResult
from refsync.connectors.errors import Action
from refsync.errors import ConnectorError, QuotaExhaustedError, RetryableError
from refsync.jsontext import json_ready
from refsync.logging import get_logger, redact_text
from refsync.state import LeaseToken, StateStore, StateTransaction
from refsync.sync.bindings import RunCounts, StreamBinding, run_transaction
from refsync.sync.fill_only import Outgoing
from refsync.sync.link_hashes import RecordHashes, StoredHashes

__all__ = ["OutboxDrainer", "PlannedWrite", "retry_delay"]

MAX_BACKOFF = timedelta(hours=1)

_Sendable = tuple[dict[str, Any], dict[str, Any], str, dict[str, Any] | None]
"""A write to send: its outbox row, payload, written hash and the link's known remote values."""


def retry_delay(attempts: int) -> timedelta:
    """How long a failed write waits before its next attempt: 30 s, doubling, at most an hour."""
    return min(timedelta(seconds=30 * 2 ** max(attempts, 0)), MAX_BACKOFF)


@dataclass(frozen=True)
class PlannedWrite:
    """A write a plan would make: which referral, where, and the payload."""

    referral_id: str
    system: str
    stream: str
    action: str
    payload: dict[str, Any]


@dataclass
class OutboxDrainer:
    """Writes one stream's due outbox rows through its connector.

    Args:
        store: the state store.
        binding: the stream to push.
        run_id: the current run (quarantine rows carry it).
        counts: where to count what happened.
        clock: current time.
        lease: fences every commit when set.
    """

    store: StateStore
    binding: StreamBinding
    run_id: str
    counts: RunCounts
    clock: Callable[[], datetime]
    lease: LeaseToken | None = None
    should_stop: Callable[[], bool | str] = lambda: False
    stopped: bool = False
    """Set when :meth:`drain` returned early because ``should_stop`` asked it to."""
    held_by_quota: int = 0
    """Writes a spent daily allowance refused, kept in the outbox (counted ``deferred`` too)."""
    _layout_kept: bool = False

    @property
    def _log(self) -> Any:
        return get_logger("refsync.sync", run_id=self.run_id, system=self.binding.system,
                          stream=self.binding.stream)

    @property
    def batch_size(self) -> int:
        """Records per write call (the stream's ``batch_size``, else 100)."""
        return self.binding.config.batch_size or 100

    def drain(self) -> bool:
        """Write every due row; return False when the run must stop early (quota spent)."""
        started = self.clock()
        binding = self.binding
        while True:
            # one read transaction per batch: the due rows, their referrals and links
            with self.store.snapshot() as view:
                due = view.due_writes(
                    binding.system, binding.stream, limit=self.batch_size, now=started
                )
                if not due:
                    return True
                # only the fields the mapping writes from (never the provenance ledger)
                referrals = view.referrals([row["referral_id"] for row in due],
                                           provenance=False, columns=binding.mapping.written_from)
                links = view.links_by_canonical(binding.system, binding.object, list(referrals))
            if not self._push_batch(due, referrals, links):
                return False
            if self.should_stop():
                self.stopped = True
                return False

    def plan(self, due: list[dict[str, Any]], referrals: dict[str, dict[str, Any]],
             links: dict[str, dict[str, Any]]) -> list[PlannedWrite]:
        """What pushing ``due`` would write, without writing (for ``refsync plan``)."""
        planned = []
        mapping = self.binding.mapping
        for row in due:
            referral = referrals.get(row["referral_id"])
            if referral is None:
                continue
            result = mapping.to_remote_result(referral)
            link = links.get(row["referral_id"])
            if result.errors:
                planned.append(PlannedWrite(row["referral_id"], self.binding.system,
                                            self.binding.stream, "quarantine",
                                            {"error": result.errors[0].message}))
                continue
            outgoing = self._outgoing(result.values, link)
            if self._holds_already(link, self.binding.payload_hashes(outgoing.expected)):
                continue
            planned.append(PlannedWrite(row["referral_id"], self.binding.system,
                                        self.binding.stream,
                                        "update" if link else "create", outgoing.payload))
        return planned

    def _push_batch(self, due: list[dict[str, Any]], referrals: dict[str, dict[str, Any]],
                    links: dict[str, dict[str, Any]]) -> bool:
        binding, mapping = self.binding, self.binding.mapping
        now = self.clock()  # one moment for the batch's rows
        sendable: list[_Sendable] = []
        done: list[int] = []
        quarantined: list[dict[str, Any]] = []
        for row in due:
            referral = referrals.get(row["referral_id"])
            if referral is None:
                done.append(row["id"])
                continue
            result = mapping.to_remote_result(referral)
            if result.errors:
                first = result.errors[0]
                quarantined.append(self._quarantine_row(
                    row, result.values, first.code,
                    "; ".join(f"{e.field}: {e.message}" for e in result.errors)))
                continue
            link = links.get(row["referral_id"])
            outgoing = self._outgoing(result.values, link)
            hashes = self.binding.payload_hashes(outgoing.expected)
            if self._holds_already(link, hashes):
                done.append(row["id"])
                continue
            payload_hash = hashes.written_text
            payload = outgoing.payload
            if link is not None:
                payload = {**payload, REMOTE_ID_FIELD: link["external_id"]}
            sendable.append((row, payload, payload_hash, outgoing.remote_values))
        results: list[WriteResult] = []
        stop = False
        failure: ConnectorError | None = None
        if sendable:
            try:
                results = binding.connector.write(
                    binding.object, mapping.key_field, [item[1] for item in sendable]
                )
            except QuotaExhaustedError as exc:
                failure, stop = exc, True
                self.held_by_quota += len(sendable)
            except RetryableError as exc:
                failure = exc
        with run_transaction(self.store, self.run_id, self.counts, self.lease) as tx:
            if sendable and not self._layout_kept:
                # the links this run writes name the mapping: keep what it writes
                tx.remember_layout(binding.system, binding.object, binding.fingerprint,
                                   mapping.written_layout, mapping.read_only_layout)
            tx.finish_outbox(done)
            if quarantined:
                self._quarantine(tx, quarantined)
                self.counts.add(binding, "quarantined", len(quarantined),
                                stream_name="write_quarantined")
            if failure is not None:
                self._defer(tx, sendable, failure, now)
            else:
                self._record_results(tx, sendable, results, now)
        self._layout_kept = self._layout_kept or bool(sendable)
        return not stop

    def _holds_already(self, link: dict[str, Any] | None, payload: RecordHashes) -> bool:
        """Whether the linked record holds the payload: refsync wrote it there last, and
        nobody has been seen changing the record since (whatever mapping wrote it)."""
        if link is None:
            return False
        stored = StoredHashes(link.get("last_written_hash"), None)
        return stored.holds_written(payload) or \
            stored.holds_earlier(payload, self.binding.earlier_hash)

    def _outgoing(self, values: dict[str, Any], link: dict[str, Any] | None) -> Outgoing:
        """The write of ``values``, leaving alone the ``set_if_empty`` fields the remote holds."""
        fill_only = self.binding.fill_only
        if fill_only is None:
            return Outgoing(values, values, None)
        return fill_only.outgoing(values, link)

    def _defer(self, tx: StateTransaction, sendable: list[_Sendable],
               failure: ConnectorError, now: datetime) -> None:
        """Keep a batch whose write call failed as a whole in the outbox, for a later attempt."""
        for row, *_ in sendable:
            tx.delay_outbox(row["id"], error=failure.message,
                            next_attempt_at=now + retry_delay(row["attempts"]))
        self.counts.add(self.binding, "deferred", len(sendable))
        self._log.warning("write batch deferred", records=len(sendable),
                          error=failure.message, action=failure.action)

    def _record_results(
        self,
        tx: StateTransaction,
        sendable: list[_Sendable],
        results: list[WriteResult],
        now: datetime,
    ) -> None:
        """Record each written record's link and event, and defer or quarantine the rest."""
        binding = self.binding
        new_links = []
        written_events = []
        refused = []
        sent = []
        for (row, payload, payload_hash, remote_values), outcome in zip(
                sendable, results, strict=True):
            if outcome.ok:
                link = {
                    "system": binding.system, "object": binding.object,
                    "external_id": outcome.remote_id or str(outcome.key),
                    "canonical_id": row["referral_id"], "last_written_hash": payload_hash,
                    "updated_at": now,
                }
                if remote_values is not None:
                    link["remote_values"] = json_ready(remote_values)
                new_links.append(link)
                sent.append(row["id"])
                written_events.append({
                    "kind": "written", "referral_id": row["referral_id"],
                    "run_id": self.run_id, "system": binding.system,
                    "stream": binding.stream, "at": now,
                    "payload": {"remote_id": outcome.remote_id, "created": outcome.created},
                })
                continue
            error = outcome.error
            assert error is not None
            if error.action in (Action.RETRY, Action.RATE_LIMITED):
                tx.delay_outbox(row["id"], error=error.message,
                                next_attempt_at=now + retry_delay(row["attempts"]))
                self.counts.add(binding, "deferred")
                self._log.warning("write deferred", referral_id=row["referral_id"],
                                  code=error.code, message=error.message)
                continue
            refused.append(self._quarantine_row(row, payload, error.code, error.message))
            self.counts.add(binding, "quarantined", stream_name="write_quarantined")
        if refused:
            self._quarantine(tx, refused)
        tx.upsert_links(new_links)
        tx.resolve_synced(binding.system, binding.stream, "out",
                          [link["canonical_id"] for link in new_links])
        tx.append_events(written_events)
        tx.finish_outbox(sent)
        self.counts.add(binding, "written", len(new_links))

    def _quarantine(self, tx: StateTransaction, rows: list[dict[str, Any]]) -> None:
        """Quarantine failed writes, take them out of the outbox, and tell each referral's
        history and the log why.

        A write that ``refsync retry`` queued again carries the quarantine row it replays
        (``retry_of``); if it fails again, that row reopens with one more attempt.
        """
        binding = self.binding
        outbox_ids = [row["payload"]["outbox_id"] for row in rows]
        replays = {queued["id"]: (queued.get("payload") or {}).get("retry_of")
                   for queued in tx.outbox_rows(outbox_ids)}
        tx.quarantine([{**row, "replay_of": replays.get(row["payload"]["outbox_id"])}
                       for row in rows])
        tx.finish_outbox(outbox_ids, state="quarantined")
        at = self.clock()
        tx.append_events([{
            "kind": "quarantined", "referral_id": row["referral_id"], "run_id": self.run_id,
            "system": binding.system, "stream": binding.stream, "at": at,
            "payload": {"direction": "out", "code": row["error_code"],
                        "message": row["message"]},
        } for row in rows])
        for row in rows:
            self._log.warning("write quarantined", referral_id=row["referral_id"],
                              code=row["error_code"], message=row["message"])

    def _quarantine_row(
        self, row: dict[str, Any], payload: dict[str, Any], code: str, message: str
    ) -> dict[str, Any]:
        return {
            "run_id": self.run_id, "system": self.binding.system, "stream": self.binding.stream,
            "direction": "out", "referral_id": row["referral_id"],
            "payload": {"outbox_id": row["id"], "data": json_ready(payload)},
            "error_code": code, "message": redact_text(message),
        }
