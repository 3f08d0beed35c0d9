"""Pull: one page read from a system → identify → reconcile → one transaction.

:class:`PageProcessor` applies one page of remote records to the hub inside the caller's
:class:`~refsync.state.StateTransaction`: referral changes, links, events, outbox rows,
quarantine rows and (by the caller) the cursor advance all commit together.

Identification order (DESIGN section 7): the link by external id → the refsync id carried in
the record → match rules on normalised keys (PRM records only) → a new referral (PRM records
only; a CRM record refsync did not create and cannot identify is left alone and counted as
``ignored``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from refsync.config import RefsyncConfig
from refsync.connectors.base import Page, ReadRecord
from refsync.domain import Lifecycle, ReferralStatus
from refsync.domain.ids import new_referral_id, short_referral_id
from refsync.errors import RecordError
from refsync.jsontext import json_ready
from refsync.logging import get_logger, redact_text
from refsync.mapping.compiled import MappedRecord, layout_hash
from refsync.mapping.hashing import hash_normaliser
from refsync.mapping.paths import path_getter
from refsync.mapping.rules import FieldState, Rule, decide
from refsync.state import StateTransaction
from refsync.sync.bindings import RunCounts, StreamBinding
from refsync.sync.customers import CustomerIndex
from refsync.sync.keys import company_key, domain_key, email_key, match_keys, phone_key
from refsync.sync.link_hashes import StoredHashes

__all__ = ["FieldChange", "PageProcessor", "normalised_columns"]

_MATCH_COLUMNS = {
    "email": "email_norm",
    "email_domain": "domain",
    "website_domain": "domain",
    "phone": "phone_norm",
    "company_name": "company_norm",
}
_REFERRAL_COLUMNS = {
    "partner_id", "email", "first_name", "last_name", "company", "domain", "phone", "title",
    "country", "status", "status_reason", "amount", "currency", "submitted_at", "closed_at",
    "source_system", "notes",
}
_NOT_PUSHED_TO_CRM = {ReferralStatus.DUPLICATE.value, ReferralStatus.REJECTED.value}
_REJECTED = ReferralStatus.REJECTED.value
_PERSON_KEYS = {"email", "phone"}
"""Match rules that name one person; the others (domains, company name) name a company."""
_MATCH_COLUMN_NAMES = tuple(sorted(set(_MATCH_COLUMNS.values())))


@dataclass
class _Prepared:
    """A record of a page with what was worked out before touching the state store."""

    record: ReadRecord
    link: dict[str, Any] | None
    kind: str  # deleted, echo, unchanged or mapped
    read_hash: str | None = None
    mapped: MappedRecord | None = None
    keys: dict[str, str | None] | None = None
    as_written: bool = False
    """The fields the mapping writes hold what refsync last wrote there."""
    known: _Known = field(default_factory=lambda: _Known())


@dataclass(frozen=True)
class _Known:
    """What refsync knows of a record it reads again and cannot skip (a field it only reads
    changed, or the mapping did): which values the remote cannot have changed since refsync
    last wrote or read the record, whatever its modification time says (refsync's own writes
    move it too)."""

    everything: bool = False
    """The record's modification time is the one refsync last read: the remote changed
    nothing since."""
    written: bool = False
    """The fields the mapping writes hold what refsync last wrote or last read there (with
    whichever version of the mapping it wrote them)."""
    same_mapping: bool = False
    """... and refsync wrote or read them with the mapping in use now."""
    suspect: frozenset[str] = frozenset()
    """Remote paths the mapping writes now that the version refsync last wrote with only read,
    and that no longer hold what refsync last read: someone may have changed them."""

    def holds_what_refsync_synced(self, compiled: Any) -> bool:
        """Whether ``compiled``'s field holds what refsync wrote or read there itself, mapped
        as it is now: the hub's value then stands, whatever the field's rule (but
        ``set_if_empty``, which leaves a written value alone by design). After a mapping edit
        the rules decide again, with no remote change time (:meth:`remote_unchanged`), so that
        a field that is new to the mapping, or now maps differently, is taken as the rule
        says."""
        return self.written and self.same_mapping and compiled.writes and \
            compiled.rule is not Rule.SET_IF_EMPTY

    def remote_unchanged(self, compiled: Any) -> bool:
        """Whether the remote cannot have changed ``compiled``'s field since refsync synced the
        record: no rule that goes by time lets its value win (a ``two_way`` field keeps the
        hub's value where the hub has one)."""
        return self.everything or (
            self.written and compiled.writes and compiled.remote not in self.suspect)


@dataclass(frozen=True)
class _EarlierMapping:
    """What refsync needs of an earlier version of a mapping: how it hashed what it wrote
    and what it only read, and the remote paths it only read."""

    written_hash: Callable[[Mapping[str, Any]], str]
    read_only_hash: Callable[[Mapping[str, Any]], str]
    read_only_paths: frozenset[str]


@dataclass
class _PageState:
    """One page's prefetched reads, its queued writes, and what it changed so far."""

    referrals: dict[str, dict[str, Any] | None] = field(default_factory=dict)
    candidates: dict[tuple[str, str], list[dict[str, Any]]] = field(default_factory=dict)
    touched_ids: set[str] = field(default_factory=set)
    touched_keys: set[tuple[str, Any]] = field(default_factory=set)
    referral_rows: dict[str, dict[str, Any]] = field(default_factory=dict)
    link_rows: dict[tuple[str, str, str], dict[str, Any]] = field(default_factory=dict)
    outbox_rows: dict[tuple[str, str, str], dict[str, Any]] = field(default_factory=dict)
    quarantined_ids: set[str] = field(default_factory=set)


@dataclass(frozen=True)
class FieldChange:
    """One field of one referral that a pull changed (or, in a plan, would change)."""

    referral_id: str
    system: str
    field: str
    old: Any
    new: Any
    reason: str


def _queue(queued: dict[Any, dict[str, Any]], target: Any, row: dict[str, Any]) -> None:
    """Queue a row for the page's write; a later row for the same target adds to it.

    The queue keeps the row it is given (the caller does not change it afterwards) and merges
    a later one into a new dict.
    """
    earlier = queued.get(target)
    queued[target] = row if earlier is None else {**earlier, **row}


def normalised_columns(
    row: Mapping[str, Any], keys: Mapping[str, str | None] | None = None
) -> dict[str, Any]:
    """The match columns of a referral row, computed from its values.

    ``keys``, the :func:`~refsync.sync.keys.match_keys` of the values the row was made from,
    give the same columns without normalising those values a second time.
    """
    if keys is not None:
        return {
            "email_norm": keys["email"],
            "company_norm": keys["company_name"],
            "phone_norm": keys["phone"],
            "domain": keys["website_domain"] or row.get("domain"),
        }
    return {
        "email_norm": email_key(row.get("email")),
        "company_norm": company_key(row.get("company")),
        "phone_norm": phone_key(row.get("phone")),
        "domain": domain_key(row.get("domain")) or row.get("domain"),
    }


def _hub_value(row: Mapping[str, Any], name: str) -> Any:
    if name.startswith("custom."):
        return (row.get("custom") or {}).get(name[7:])
    return row.get(name)


def _set_value(row: dict[str, Any], name: str, value: Any) -> None:
    if name.startswith("custom."):
        custom = dict(row.get("custom") or {})
        custom[name[7:]] = value
        row["custom"] = custom
    elif name in _REFERRAL_COLUMNS:
        row[name] = value.value if isinstance(value, ReferralStatus) else value


def _writes_as(compiled: Any, hub_value: Any) -> Any:
    try:
        return compiled.write(hub_value, lambda _name: None)
    except RecordError:
        return _UNWRITABLE


def _raw(compiled: Any, record: ReadRecord) -> Any:
    return path_getter(compiled.remote)(record.data)


_UNWRITABLE = object()


def _edited_since_written(compiled: Any, row: Mapping[str, Any], record: ReadRecord) -> bool:
    """Whether ``record`` holds something else in a field refsync only writes than what it
    writes there for the hub's ``row``: compared as echoes are (blank is blank, ``"1200"`` is
    1200), and never for the key field or a ``set_if_empty`` field (left alone by design)."""
    if not compiled.writes or compiled.canonical == "id" or \
            compiled.rule.value == "set_if_empty":
        return False
    written = _writes_as(compiled, _hub_value(row, compiled.canonical))
    if written is _UNWRITABLE:
        return False
    same = hash_normaliser(compiled.kind)
    return bool(same(written) != same(_raw(compiled, record)))



@dataclass
class PageProcessor:
    """Applies pages read from one stream to the hub.

    Args:
        binding: the stream the page came from.
        outputs: every stream that pushes (the outbox targets).
        config: the whole configuration (matching keys, rules of engagement).
        lifecycle: the status state machine.
        run_id: the current run.
        counts: where to count what happened.
        clock: current time.
        on_change: called with each field change (plans print them).
        customers: existing customers and open deals, for the rules that reject referrals.
        replaying: when ``refsync retry`` re-reads records, each one's quarantine row by remote
            id (a record that fails again reopens that row).
    """

    binding: StreamBinding
    outputs: Sequence[StreamBinding]
    config: RefsyncConfig
    lifecycle: Lifecycle
    run_id: str
    counts: RunCounts
    clock: Callable[[], datetime]
    on_change: Callable[[FieldChange], None] | None = None
    customers: CustomerIndex | None = None
    replaying: Mapping[str, int] = field(default_factory=dict)
    _events: list[dict[str, Any]] = field(default_factory=list)
    _earlier: dict[str, _EarlierMapping | None] = field(default_factory=dict)
    """Each earlier version of the mapping met in links (None: not remembered)."""
    _page: _PageState = field(default_factory=lambda: _PageState())
    _now: datetime | None = None
    """The page's moment: every row a page writes carries one timestamp (read once)."""

    def _time(self) -> datetime:
        return self._now or self.clock()

    def process(self, tx: StateTransaction, page: Page) -> None:
        """Apply one page inside ``tx`` (the caller commits it with the cursor).

        The reads the page needs (links, referrals, match candidates) are made once for the
        whole page, and its writes are queued and written together at the end. A read of
        something the page already changed goes to the database after the queue is written,
        so every record sees what the records before it did, as if written one by one.
        """
        binding = self.binding
        self.counts.add(binding, "read", len(page.records))
        links = tx.links_by_external(binding.system, binding.object, [r.id for r in page.records])
        prepared = [self._prepare(tx, record, links.get(record.id)) for record in page.records]
        self._page = _PageState()
        self._now = self.clock()
        try:
            self._prefetch(tx, prepared)
            for item in prepared:
                self._process_record(tx, item)
            self._flush(tx)
            tx.append_events(self._events)
            tx.resolve_synced(binding.system, binding.stream, "in", [
                item.record.id for item in prepared
                if item.kind != "deleted" and item.record.id not in self._page.quarantined_ids])
        finally:
            self._page = _PageState()
            self._now = None
            self._events = []

    # -- one page -----------------------------------------------------------------------------

    def _prepare(
        self, tx: StateTransaction, record: ReadRecord, link: dict[str, Any] | None
    ) -> _Prepared:
        """What can be known about a record without the state store: its hash, its mapping."""
        binding = self.binding
        if record.deleted:
            return _Prepared(record, link, "deleted")
        now = binding.hashes(record.data)
        read_hash = now.read_text
        if link is None:
            return _Prepared(record, link, "mapped", read_hash,
                             binding.mapping.to_canonical(record.data))
        stored = StoredHashes(link.get("last_written_hash"), link.get("last_read_hash"))
        kept_earlier = stored.holds_earlier(now, binding.earlier_hash)
        as_written = kept_earlier or stored.holds_written(now)
        if as_written and stored.read_only_as_read(now):
            return _Prepared(record, link, "echo", read_hash)
        if read_hash == stored.last_read:
            return _Prepared(record, link, "unchanged", read_hash)
        as_read = stored.holds_read(now)
        seen = link.get("remote_modstamp")
        before_edit = None if as_written or as_read else \
            self._written_before_edit(tx, record, stored)
        known = _Known(
            everything=record.modstamp is not None and seen is not None and
            record.modstamp == seen,
            written=as_written or as_read or before_edit is not None,
            suspect=before_edit or frozenset(),
            same_mapping=kept_earlier or (as_written and stored.written_under(now)) or (
                as_read and stored.read_under(now)),
        )
        return _Prepared(record, link, "mapped", read_hash,
                         binding.mapping.to_canonical(record.data), as_written=as_written,
                         known=known)

    def _written_before_edit(
        self, tx: StateTransaction, record: ReadRecord, stored: StoredHashes
    ) -> frozenset[str] | None:
        """Whether ``record`` holds what refsync last wrote there with an earlier version of
        the mapping (the fields that version wrote, hashed as it hashed them): None if not,
        else the remote paths that version only read and that may have changed since refsync
        last read them (a field the edit made written can hold a person's change)."""
        fingerprint = stored.written_with()
        if fingerprint is None or fingerprint == self.binding.fingerprint:
            return None
        if fingerprint not in self._earlier:
            layout = tx.layout(self.binding.system, self.binding.object, fingerprint)
            self._earlier[fingerprint] = None if layout is None else _EarlierMapping(
                layout_hash(layout[0]), layout_hash(layout[1]),
                frozenset(path for path, _kind in layout[1]))
        earlier = self._earlier[fingerprint]
        if earlier is None or not stored.holds_written_by(earlier.written_hash(record.data)):
            return None
        if stored.read_only_read_by(fingerprint, earlier.read_only_hash(record.data)):
            return frozenset()
        return earlier.read_only_paths

    def _prefetch(self, tx: StateTransaction, prepared: Sequence[_Prepared]) -> None:
        """Read the referrals and match candidates of a whole page in a few queries."""
        usable = [item for item in prepared if item.mapped is not None and not item.mapped.errors]
        wanted: set[str] = set()
        for item in usable:
            assert item.mapped is not None
            if item.link is not None:
                wanted.add(item.link["canonical_id"])
            carried = item.mapped.values.get("id")
            if carried:
                wanted.add(carried)
        page = self._page
        found = tx.referrals(sorted(wanted)) if wanted else {}
        page.referrals = {referral_id: found.get(referral_id) for referral_id in wanted}
        if self.binding.role != "prm":
            return
        matching = self.config.matching
        keys_by_column: dict[str, set[str]] = {}
        for item in usable:
            assert item.mapped is not None
            carried = item.mapped.values.get("id")
            if (item.link is not None and found.get(item.link["canonical_id"]) is not None) or \
                    (carried and found.get(carried) is not None):
                continue
            item.keys = match_keys(item.mapped.values,
                                   ignore_free=matching.ignore_free_email_domains)
            for rule in matching.keys:
                key = item.keys.get(rule)
                if key:
                    keys_by_column.setdefault(_MATCH_COLUMNS[rule], set()).add(key)
        for column, keys in keys_by_column.items():
            grouped: dict[str, list[dict[str, Any]]] = {key: [] for key in keys}
            for row in tx.referrals_by(column, sorted(keys)):
                grouped.setdefault(row[column], []).append(row)
            for key, rows in grouped.items():
                page.candidates[(column, key)] = rows

    def _referral(self, tx: StateTransaction, referral_id: str) -> dict[str, Any] | None:
        """One referral as the page sees it now (prefetched unless the page changed it)."""
        page = self._page
        if referral_id in page.referrals and referral_id not in page.touched_ids:
            return page.referrals[referral_id]
        self._flush(tx)
        return tx.referrals([referral_id]).get(referral_id)

    def _candidates(self, tx: StateTransaction, column: str, key: str) -> list[dict[str, Any]]:
        """Referrals whose match column holds ``key``, oldest first, as the page sees them now."""
        page = self._page
        cached = page.candidates.get((column, key))
        if cached is not None and (column, key) not in page.touched_keys and \
                not any(row["id"] in page.touched_ids for row in cached):
            return cached
        self._flush(tx)
        return tx.referrals_by(column, [key])

    def _linked_to_another(self, tx: StateTransaction, referral_id: str, record_id: str) -> bool:
        """Whether ``referral_id`` is already linked to a record of this stream other than
        ``record_id`` (queued by this page or committed before)."""
        binding = self.binding
        for (system, object_name, external_id), row in self._page.link_rows.items():
            if system == binding.system and object_name == binding.object and \
                    row["canonical_id"] == referral_id:
                return external_id != record_id
        link = tx.links_by_canonical(binding.system, binding.object, [referral_id])
        found = link.get(referral_id)
        return found is not None and found["external_id"] != record_id

    def _queue_referral(self, row: dict[str, Any]) -> None:
        page = self._page
        _queue(page.referral_rows, row["id"], row)
        page.touched_ids.add(row["id"])
        for column in _MATCH_COLUMN_NAMES:
            if column in row:
                page.touched_keys.add((column, row[column]))

    def _flush(self, tx: StateTransaction) -> None:
        """Write what the page has queued so far (in the caller's transaction)."""
        page = self._page
        if page.referral_rows:
            tx.upsert_referrals(list(page.referral_rows.values()))
            page.referral_rows = {}
        if page.link_rows:
            tx.upsert_links(list(page.link_rows.values()))
            page.link_rows = {}
        if page.outbox_rows:
            tx.enqueue(list(page.outbox_rows.values()))
            page.outbox_rows = {}

    # -- one record ---------------------------------------------------------------------------

    def _process_record(self, tx: StateTransaction, item: _Prepared) -> None:
        binding = self.binding
        record, link = item.record, item.link
        if item.kind == "deleted":
            self.counts.add(binding, "deleted")
            if link is not None:
                self._event("remote_deleted", link["canonical_id"], {"external_id": record.id})
            return
        read_hash = item.read_hash
        assert read_hash is not None
        if item.kind == "echo":
            assert link is not None
            self.counts.add(binding, "echoes")
            self._link(tx, record, link["canonical_id"], read_hash)
            return
        if item.kind == "unchanged":
            self.counts.add(binding, "unchanged")
            return
        mapped = item.mapped
        assert mapped is not None
        if mapped.errors:
            self._quarantine(tx, record, mapped.errors, link)
            return
        values = mapped.values
        referral = self._identify(tx, record, link, values, item.keys)
        if referral is None:
            return
        if referral.get("_new"):
            self._create(tx, record, referral, values, read_hash)
        else:
            self._reconcile(tx, record, referral, values, read_hash, item)

    def _identify(
        self,
        tx: StateTransaction,
        record: ReadRecord,
        link: dict[str, Any] | None,
        values: dict[str, Any],
        keys: dict[str, str | None] | None = None,
    ) -> dict[str, Any] | None:
        binding = self.binding
        if link is not None:
            found = self._referral(tx, link["canonical_id"])
            if found is not None:
                return found
        carried = values.get("id")
        if carried:
            found = self._referral(tx, carried)
            if found is not None:
                self._event("matched", carried, {
                    "system": binding.system, "external_id": record.id, "by": "refsync_id",
                    "explanation": f"{binding.mapping.key_field} carries refsync id {carried}",
                })
                self.counts.add(binding, "matched")
                return found
        if binding.role != "prm":
            self.counts.add(binding, "ignored")
            return None
        return self._match_or_new(tx, record, values, keys)

    def _match_or_new(
        self,
        tx: StateTransaction,
        record: ReadRecord,
        values: dict[str, Any],
        keys: dict[str, str | None] | None = None,
    ) -> dict[str, Any]:
        binding = self.binding
        matching = self.config.matching
        if keys is None:
            keys = match_keys(values, ignore_free=matching.ignore_free_email_domains)
        partner = values.get("partner_id")
        new_id = values.get("id") or new_referral_id()
        for rule in matching.keys:
            key = keys.get(rule)
            if not key:
                continue
            candidates = self._candidates(tx, _MATCH_COLUMNS[rule], key)
            # another partner's referral that was rejected (an existing customer, an open
            # deal, turned down by sales) gives that partner no claim on the prospect
            candidates = [c for c in candidates if c["status"] != ReferralStatus.DUPLICATE.value
                          and (c["status"] != _REJECTED or partner is None
                               or c.get("partner_id") in (None, partner))]
            if not candidates:
                continue
            first = candidates[0]
            original = short_referral_id(first["id"])
            explanation = f"{rule.replace('_', ' ')} {key} equals referral {original}"
            same_partner = first.get("partner_id") in (None, partner) or partner is None
            # another record of this stream already is that referral: this one is a second
            # submission, never merged into it (that would write one lead over the other)
            resubmitted = same_partner and self._linked_to_another(tx, first["id"], record.id)
            if resubmitted and rule not in _PERSON_KEYS:
                continue  # another contact at the same company, from the same partner
            if same_partner and not resubmitted:
                self._event("matched", first["id"], {
                    "system": binding.system, "external_id": record.id, "by": rule,
                    "explanation": explanation,
                })
                self.counts.add(binding, "matched")
                return first
            window = timedelta(days=self.config.rules.protection_window_days)
            registered = first.get("submitted_at") or first.get("created_at")
            submitted = values.get("submitted_at") or record.modstamp or self._time()
            if registered is not None and submitted - registered <= window:
                when = registered.date().isoformat()
                reason = (
                    f"already referred by partner {first.get('partner_id')} on {when} "
                    f"({explanation}); protection window {window.days} days"
                )
                self.counts.add(binding, "duplicates")
                return {"_new": True, "id": new_id, "_keys": keys,
                        "status": ReferralStatus.DUPLICATE.value,
                        "status_reason": reason, "_evidence": {
                            "rule": "first_to_register", "original": first["id"],
                            "match": rule, "key": key, "original_partner": first.get("partner_id"),
                        }}
        customer = self.customers.find(keys) if self.customers is not None else None
        if customer is not None:
            how, name, remote_id = customer
            self.counts.add(binding, "rejected")
            reason = f"{name} is already a customer ({how}; CRM record {remote_id})"
            return {"_new": True, "id": new_id, "_keys": keys,
                    "status": ReferralStatus.REJECTED.value,
                    "status_reason": reason, "_evidence": {
                        "rule": "existing_customer", "customer": name,
                        "customer_id": remote_id, "match": how}}
        deal = self.customers.find_open_deal(keys) if self.customers is not None else None
        if deal is not None:
            self.counts.add(binding, "rejected")
            reason = (f"{deal.account} has an open opportunity ({deal.opportunity}, CRM record "
                      f"{deal.opportunity_id}; {deal.how})")
            return {"_new": True, "id": new_id, "_keys": keys,
                    "status": ReferralStatus.REJECTED.value,
                    "status_reason": reason, "_evidence": {
                        "rule": "open_opportunity", "account": deal.account,
                        "opportunity": deal.opportunity, "opportunity_id": deal.opportunity_id,
                        "match": deal.how}}
        # a new referral's match keys are its match columns (see normalised_columns)
        return {"_new": True, "id": new_id, "_keys": keys}

    def _create(
        self,
        tx: StateTransaction,
        record: ReadRecord,
        referral: dict[str, Any],
        values: dict[str, Any],
        read_hash: str,
    ) -> None:
        binding = self.binding
        moment = record.modstamp or self._time()
        at = moment.isoformat()
        row: dict[str, Any] = {"id": referral["id"], "custom": {}, "provenance": {},
                               "source_system": binding.system, "version": 1}
        provenance = row["provenance"]
        read_here = {"system": binding.system, "at": at}  # one object for every field read
        for name, value in values.items():
            if name == "id" or value is None:
                continue
            _set_value(row, name, value)
            provenance[name] = read_here
        row.setdefault("status", ReferralStatus.SUBMITTED.value)
        row.setdefault("submitted_at", moment)
        if "status" in referral:
            row["status"] = referral["status"]
            row["status_reason"] = referral["status_reason"]
            row["provenance"]["status"] = {"system": "refsync", "at": at}
        row.update(normalised_columns(row, referral.get("_keys")))
        self._queue_referral(row)
        self.counts.add(binding, "created")
        self._event("created", row["id"], {"system": binding.system, "external_id": record.id,
                                           "status": row["status"]})
        if "_evidence" in referral:
            kind = "rejected" if referral["status"] == ReferralStatus.REJECTED.value \
                else "duplicate"
            self._event(kind, row["id"], {**referral["_evidence"],
                                          "reason": row["status_reason"]})
        self._link(tx, record, row["id"], read_hash)
        self._enqueue(tx, row, changed=True, write_back=True)

    def _reconcile(
        self,
        tx: StateTransaction,
        record: ReadRecord,
        referral: dict[str, Any],
        values: dict[str, Any],
        read_hash: str,
        item: _Prepared,
    ) -> None:
        binding = self.binding
        row = dict(referral)
        provenance = dict(row.get("provenance") or {})
        changed: list[FieldChange] = []
        write_back = False
        for compiled in binding.mapping.fields:
            name = compiled.canonical
            if not compiled.reads:
                # a field refsync only writes (a status or reason shown to the partner): edited
                # there since, it is written back over
                write_back = write_back or _edited_since_written(compiled, row, record)
                continue
            if name == "id" or name not in values:
                continue
            hub_value = _hub_value(row, name)
            remote_value = values[name]
            if name == "status" and hub_value != remote_value and \
                    _writes_as(compiled, hub_value) == _raw(compiled, record):
                # a lossy value map (several hub statuses written as one remote value): the
                # remote still shows what refsync wrote, so there is no disagreement
                continue
            set_by = provenance.get(name) or {}
            set_at = datetime.fromisoformat(set_by["at"]) if set_by.get("at") else None
            hub_state = FieldState(hub_value, set_by.get("system"), set_at)
            if item.known.holds_what_refsync_synced(compiled):
                # the remote changed nothing here: the hub's value stands, and is written
                # there when it differs (the hub changed since, or the mapping did)
                decision = replace(
                    decide(Rule.HUB_WINS, hub_state, FieldState(remote_value),
                           direction=compiled.direction),
                    reason="the remote still holds what refsync last wrote or read there")
            else:
                remote_at = None if item.known.remote_unchanged(compiled) else record.modstamp
                decision = decide(compiled.rule, hub_state,
                                  FieldState(remote_value, binding.system, remote_at),
                                  direction=compiled.direction)
            reason = decision.reason
            if name == "status" and decision.update_hub:
                current, target = ReferralStatus(hub_value), ReferralStatus(remote_value)
                if not self.lifecycle.can_move(current, target):
                    self.counts.add(binding, "conflicts")
                    authority_is_remote = compiled.rule.value == "remote_wins"
                    self._event("status_conflict", row["id"], {
                        "system": binding.system, "hub": current.value, "remote": target.value,
                        "rule": compiled.rule.value,
                        "resolution": "remote" if authority_is_remote else "hub",
                        "explanation": f"{current.value} → {target.value} is not a legal "
                                       f"transition; {compiled.rule.value} decides",
                    })
                    if not authority_is_remote:
                        write_back = write_back or compiled.writes
                        continue
                    reason = f"{reason} (illegal transition forced by {compiled.rule.value})"
            if decision.update_hub:
                new_value = decision.hub_value
                _set_value(row, name, new_value)
                provenance[name] = {"system": binding.system,
                                    "at": (record.modstamp or self._time()).isoformat()}
                changed.append(FieldChange(row["id"], binding.system, name, hub_value,
                                           new_value, reason))
            if decision.write_remote:
                write_back = True
        if changed:
            row["provenance"] = provenance
            row["version"] = int(row.get("version") or 1) + 1
            row["updated_at"] = self._time()
            if any(c.field == "status" for c in changed) and row["status"] in ("won", "lost"):
                row.setdefault("closed_at", None)
                row["closed_at"] = row["closed_at"] or record.modstamp or self._time()
            row.update(normalised_columns(row))
            self._queue_referral(row)
            self.counts.add(binding, "updated")
            for change in changed:
                kind = "status_changed" if change.field == "status" else "field_changed"
                self._event(kind, row["id"], {
                    "system": binding.system, "field": change.field,
                    "old": json_ready(change.old), "new": json_ready(change.new),
                    "reason": change.reason,
                })
                if self.on_change is not None:
                    self.on_change(change)
        else:
            # refsync's own write read back, which nothing else changed since
            self.counts.add(binding, "echoes" if item.as_written else "unchanged")
        # the record disagrees with the hub on a field refsync writes: it no longer holds what
        # refsync last wrote (someone edited it since), so that write's hash must not make the
        # push skip writing the same values again
        self._link(tx, record, row["id"], read_hash, written_over=write_back)
        if changed or write_back:
            self._enqueue(tx, row, changed=bool(changed), write_back=write_back)

    # -- side effects -------------------------------------------------------------------------

    def _enqueue(
        self, tx: StateTransaction, row: dict[str, Any], *, changed: bool, write_back: bool
    ) -> None:
        entries = []
        for output in self.outputs:
            same_stream = output.system == self.binding.system and \
                output.object == self.binding.object
            if same_stream and not write_back:
                continue
            if not same_stream and not changed:
                continue
            if output.role != "prm" and row.get("status") in _NOT_PUSHED_TO_CRM:
                self._flush(tx)
                existing = tx.links_by_canonical(output.system, output.object, [row["id"]])
                if not existing:
                    continue
            entries.append({
                "referral_id": row["id"], "system": output.system, "stream": output.stream,
                "payload": {"version": row.get("version", 1)},
                "payload_hash": f"v{row.get('version', 1)}",
                "next_attempt_at": self._time(),
            })
        for entry in entries:
            _queue(self._page.outbox_rows,
                   (entry["system"], entry["stream"], entry["referral_id"]), entry)

    def _link(
        self, tx: StateTransaction, record: ReadRecord, canonical_id: str, read_hash: str,
        *, written_over: bool = False,
    ) -> None:
        """Queue the link of a record read at ``read_hash``; ``written_over``: it was changed
        since refsync last wrote it, so the hash of that write no longer says what it holds."""
        row: dict[str, Any] = {
            "system": self.binding.system, "object": self.binding.object,
            "external_id": record.id, "canonical_id": canonical_id,
            "last_read_hash": read_hash, "remote_modstamp": record.modstamp,
            "updated_at": self._time(),
        }
        if written_over:
            row["last_written_hash"] = None
        fill_only = self.binding.fill_only
        if fill_only is not None:
            row["remote_values"] = json_ready(fill_only.read(record.data))
        _queue(self._page.link_rows, (self.binding.system, self.binding.object, record.id), row)

    def _quarantine(
        self,
        tx: StateTransaction,
        record: ReadRecord,
        errors: Sequence[Any],
        link: dict[str, Any] | None,
    ) -> None:
        binding = self.binding
        first = errors[0]
        # every error, each naming its field: as `refsync errors` shows it and the log says it
        message = redact_text("; ".join(f"{e.field}: {e.message}" for e in errors))
        self._page.quarantined_ids.add(record.id)
        tx.quarantine([{
            "run_id": self.run_id, "system": binding.system, "stream": binding.stream,
            "direction": "in", "referral_id": link["canonical_id"] if link else None,
            "external_id": record.id,
            "payload": {"id": record.id, "data": json_ready(record.data),
                        "modstamp": record.modstamp.isoformat() if record.modstamp else None},
            "error_code": first.code,
            "message": message,
            "replay_of": self.replaying.get(record.id),
        }])
        self.counts.add(binding, "quarantined")
        get_logger("refsync.sync", run_id=self.run_id, system=binding.system,
                   stream=binding.stream).warning(
            "record quarantined", external_id=record.id,
            referral_id=link["canonical_id"] if link else None, code=first.code,
            message=message)
        if link is not None:
            self._event("quarantined", link["canonical_id"], {
                "system": binding.system, "direction": "in", "code": first.code,
            })

    def _event(self, kind: str, referral_id: str | None, payload: dict[str, Any]) -> None:
        self._events.append({
            "kind": kind, "referral_id": referral_id, "run_id": self.run_id,
            "system": self.binding.system, "stream": self.binding.stream,
            "payload": payload, "at": self._time(),
        })
