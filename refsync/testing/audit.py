"""Audit a sync against the sandbox: is every referral where it should be, once, and right?

:func:`audit_sync` compares three things after a sync has settled: the PRM's leads, the hub
(state store) and every CRM the referrals are pushed to. It checks that

* every PRM lead has exactly one referral and every referral comes from exactly one lead;
* every referral that belongs in a CRM is there exactly once (by refsync id and by email),
  linked once, with the fields its mapping writes; or sits in quarantine with its reason; or
  waits in the outbox (told apart from a missing one: nothing is lost, the sync has not
  settled);
* what refsync writes back to the PRM (its id, the status, the decision's reason) is there;
* nothing is left in the outbox, and no cursor points past data it has not committed.

Every finding is a sentence in :attr:`AuditReport.problems`; an empty list means the sync
neither lost nor duplicated anything. :func:`cursor_problems` is the cheap part that can run
while syncs are still being interrupted.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from refsync.connectors.cursor import Cursor
from refsync.connectors.partnerstack import get_path
from refsync.mapping.transforms import datetime_reader
from refsync.sandbox.core import Emulator
from refsync.state import StateStore
from refsync.sync.bindings import StreamBinding

__all__ = [
    "AuditReport",
    "RemoteRecord",
    "SystemAudit",
    "audit_sync",
    "cursor_problems",
    "remote_records",
]

#: statuses a referral never reaches a CRM with (unless it was there before): see sync.pull
_NOT_PUSHED_TO_CRM = {"duplicate", "rejected"}
_SHOWN = 5  # examples quoted per problem


@dataclass(frozen=True)
class RemoteRecord:
    """One record as the emulator holds it, flattened the way the connector reads it."""

    id: str
    modstamp: datetime | None
    data: dict[str, Any]


@dataclass
class SystemAudit:
    """What became of the referrals in one system a stream pushes to.

    Attributes:
        system: the configured system name.
        expected: referrals that belong there.
        synced: referrals found there exactly once with the expected fields.
        quarantined: referrals kept out, by quarantine error code.
        pending: referrals not there (or there in an older version) whose write to this
            system still waits in the outbox (their ids): not lost, not settled either.
        missing: referrals neither there, nor pending in the outbox, nor quarantined (their
            ids): lost.
        duplicated: refsync ids held by more than one record.
        duplicated_emails: emails held by more than one record refsync wrote.
        untouched: records refsync never wrote (no refsync id), present before and after.
    """

    system: str
    expected: int = 0
    synced: int = 0
    quarantined: Counter[str] = field(default_factory=Counter)
    pending: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    duplicated: list[str] = field(default_factory=list)
    duplicated_emails: list[str] = field(default_factory=list)
    untouched: int = 0

    def line(self) -> str:
        """One line for a report."""
        quarantined = sum(self.quarantined.values())
        reasons = ", ".join(f"{code} {n}" for code, n in sorted(self.quarantined.items()))
        return (f"{self.system}: {self.expected} expected, {self.synced} synced, "
                f"{quarantined} quarantined{f' ({reasons})' if reasons else ''}, "
                f"{len(self.pending)} pending in the outbox, {len(self.missing)} missing, "
                f"{len(self.duplicated)} duplicated")


@dataclass
class AuditReport:
    """The outcome of :func:`audit_sync`."""

    prm_leads: int = 0
    referrals: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    systems: dict[str, SystemAudit] = field(default_factory=dict)
    outbox_pending: int = 0
    quarantine_open: Counter[str] = field(default_factory=Counter)
    runs: Counter[str] = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when nothing was lost, duplicated or left inconsistent."""
        return not self.problems

    def lines(self) -> list[str]:
        """A readable summary, problems last."""
        statuses = ", ".join(f"{k} {v}" for k, v in sorted(self.statuses.items()))
        out = [f"PRM leads {self.prm_leads}, referrals in the hub {self.referrals} ({statuses})"]
        out.extend(system.line() for system in self.systems.values())
        quarantine = ", ".join(f"{k} {v}" for k, v in sorted(self.quarantine_open.items()))
        held = sum(self.quarantine_open.values())
        out.append(f"outbox pending {self.outbox_pending}, open quarantine {held}"
                   + (f" ({quarantine})" if quarantine else ""))
        out.append("runs: " + ", ".join(f"{k} {v}" for k, v in sorted(self.runs.items())))
        out.extend(f"PROBLEM: {problem}" for problem in self.problems)
        return out


def remote_records(emulator: Emulator, object_name: str) -> list[RemoteRecord]:
    """The live (not deleted or archived) records of an object, as the connector reads them."""
    found = []
    for raw in emulator.records(object_name):
        if emulator.name == "hubspot":
            if raw.get("archived"):
                continue
            data = dict(raw.get("properties") or {})
            found.append(RemoteRecord(str(raw["id"]), datetime_reader(
                data.get("hs_lastmodifieddate")), data))
        elif emulator.name == "salesforce":
            if raw.get("IsDeleted"):
                continue
            found.append(RemoteRecord(str(raw["Id"]), datetime_reader(raw.get("SystemModstamp")),
                                      dict(raw)))
        else:
            if raw.get("deleted"):
                continue
            found.append(RemoteRecord(str(raw["key"]), datetime_reader(raw.get("updated_at")),
                                      dict(raw)))
    return found


def _projection(binding: StreamBinding, record: RemoteRecord) -> dict[str, Any]:
    return {name: get_path(record.data, name) for name in binding.mapping.remote_fields}


def _key_of(binding: StreamBinding, record: RemoteRecord) -> str | None:
    value = get_path(record.data, binding.mapping.key_field)
    return None if value in (None, "") else str(value)


def _differences(expected: Mapping[str, Any], record: RemoteRecord) -> str:
    differ = []
    for name, value in expected.items():
        actual = get_path(record.data, name)
        if str(value if value is not None else "").strip().lower() != \
                str(actual if actual is not None else "").strip().lower():
            differ.append(f"{name}: expected {value!r}, found {actual!r}")
    return "; ".join(differ) or "content hash differs"


def _examples(items: Sequence[str]) -> str:
    shown = ", ".join(items[:_SHOWN])
    return shown + (f" and {len(items) - _SHOWN} more" if len(items) > _SHOWN else "")


class _Auditor:
    """Collects the facts once and runs every check over them."""

    def __init__(self, store: StateStore, bindings: Sequence[StreamBinding],
                 emulators: Mapping[str, Emulator], untouched: Mapping[str, int] | None) -> None:
        self.store = store
        self.emulators = emulators
        self.untouched_before = untouched
        self.report = AuditReport()
        self.prm = next(b for b in bindings if b.role == "prm")
        self.crms = [b for b in bindings if b.role != "prm" and b.writes]
        referrals = store.list_referrals(limit=10_000_000)
        self.referrals = {row["id"]: row for row in referrals}
        quarantine = store.list_quarantine(limit=10_000_000)
        self.quarantine: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
        for row in quarantine:
            self.report.quarantine_open[f"{row['system']} {row['error_code']}"] += 1
            if row["referral_id"]:
                self.quarantine[(row["referral_id"], row["system"])].append(row)

    def problem(self, text: str) -> None:
        self.report.problems.append(text)

    def run(self) -> AuditReport:
        report = self.report
        report.referrals = len(self.referrals)
        report.statuses = Counter(str(r["status"]) for r in self.referrals.values())
        linked = self._check_prm()
        for binding in self.crms:
            report.systems[binding.system] = self._check_crm(binding, linked)
        counts = self.store.counts()
        report.outbox_pending = counts["outbox_pending"]
        if report.outbox_pending:
            self.problem(f"{report.outbox_pending} writes still pending in the outbox")
        runs = self.store.list_runs(limit=1_000_000)
        report.runs = Counter(str(run["status"]) for run in runs)
        # every run, killed ones included, keeps the counts of the pages it committed
        created = sum(int((run["counts"] or {}).get("created") or 0) for run in runs)
        if created != report.referrals:
            self.problem(f"the runs' counts say {created} referrals were created, but the "
                         f"state store holds {report.referrals}")
        report.problems.extend(cursor_problems(self.store, [self.prm, *self.crms], self.emulators))
        return report

    def _records(self, binding: StreamBinding) -> list[RemoteRecord]:
        return remote_records(self.emulators[binding.system], binding.object)

    def _pending(self, binding: StreamBinding) -> set[str]:
        """The referrals with a write to ``binding``'s stream still waiting in the outbox."""
        with self.store.snapshot() as view:
            rows = view.pending_outbox(binding.system, binding.stream)
        return {str(row["referral_id"]) for row in rows if row["referral_id"]}

    def _check_prm(self) -> set[str]:
        """Every PRM lead has one referral and carries its id, status and reason back."""
        binding = self.prm
        leads = self._records(binding)
        self.report.prm_leads = len(leads)
        links = self.store.find_links(binding.system, binding.object, [r.id for r in leads])
        unlinked = [r.id for r in leads if r.id not in links]
        if unlinked:
            self.problem(f"{len(unlinked)} PRM leads have no referral: {_examples(unlinked)}")
        by_referral: dict[str, list[str]] = defaultdict(list)
        for external_id, link in links.items():
            by_referral[link["canonical_id"]].append(external_id)
        shared = [f"{rid[:8]} ({', '.join(keys)})" for rid, keys in by_referral.items()
                  if len(keys) > 1]
        if shared:
            self.problem(f"{len(shared)} referrals hold several PRM leads: {_examples(shared)}")
        orphans = [rid for rid in self.referrals if rid not in by_referral]
        if orphans:
            self.problem(f"{len(orphans)} referrals come from no PRM lead: {_examples(orphans)}")
        dangling = [link["canonical_id"] for link in links.values()
                    if link["canonical_id"] not in self.referrals]
        if dangling:
            self.problem(f"{len(dangling)} PRM links point at no referral: {_examples(dangling)}")
        stray_links = self.store.link_counts().get(binding.system, 0) - len(links)
        if stray_links:
            self.problem(f"{stray_links} {binding.system} links point at no live PRM lead")
        pending = self._pending(binding)
        wrong: list[str] = []
        waiting: list[str] = []
        for lead in leads:
            found = links.get(lead.id)
            referral = self.referrals.get(found["canonical_id"]) if found else None
            if referral is None or self.quarantine.get((referral["id"], binding.system)):
                continue
            differs = self._field_problem(binding, referral, lead)
            (waiting if differs and referral["id"] in pending else wrong).extend(differs)
        if waiting:
            self.problem(f"{len(waiting)} PRM leads do not show what refsync wrote back yet: "
                         f"the writes are pending in the outbox (not lost): "
                         f"{_examples([w.split(' ', 1)[0] for w in waiting])}")
        if wrong:
            self.problem(f"{len(wrong)} PRM leads do not show what refsync wrote back: "
                         f"{_examples(wrong)}")
        return set(by_referral)

    def _field_problem(self, binding: StreamBinding, referral: Mapping[str, Any],
                       record: RemoteRecord) -> list[str]:
        result = binding.mapping.to_remote_result(referral)
        if result.errors:
            return []  # a mapping refusal is quarantined, checked by the caller
        if binding.mapping.content_hash(_projection(binding, record)) == \
                binding.mapping.content_hash(result.values):
            return []
        return [f"{record.id} ({_differences(result.values, record)})"]

    def _check_crm(self, binding: StreamBinding, from_prm: set[str]) -> SystemAudit:
        audit = SystemAudit(binding.system)
        records = self._records(binding)
        by_key: dict[str, list[RemoteRecord]] = defaultdict(list)
        untouched = 0
        for record in records:
            key = _key_of(binding, record)
            if key is None:
                untouched += 1
            else:
                by_key[key].append(record)
        audit.untouched = untouched
        before = (self.untouched_before or {}).get(binding.system)
        if before is not None and before != untouched:
            self.problem(f"{binding.system} holds {untouched} records without a refsync id; "
                         f"it held {before} before syncing")
        links = self.store.find_links(binding.system, binding.object, [r.id for r in records])
        stray_links = self.store.link_counts().get(binding.system, 0) - len(links)
        if stray_links:
            self.problem(f"{stray_links} {binding.system} links point at no live record")
        links_by_referral: dict[str, list[str]] = defaultdict(list)
        for external_id, link in links.items():
            links_by_referral[link["canonical_id"]].append(external_id)
        unknown = [key for key in by_key if key not in self.referrals]
        if unknown:
            self.problem(f"{binding.system} holds records for {len(unknown)} refsync ids the hub "
                         f"does not know: {_examples(unknown)}")
        pending = self._pending(binding)
        wrong: list[str] = []
        link_trouble: list[str] = []
        strays: list[str] = []
        for rid, referral in self.referrals.items():
            found = by_key.get(rid, [])
            linked = links_by_referral.get(rid, [])
            expected = str(referral["status"]) not in _NOT_PUSHED_TO_CRM or bool(linked)
            if len(found) > 1:
                audit.duplicated.append(rid)
            if len(linked) > 1:
                link_trouble.append(f"{rid[:8]} linked {len(linked)} times")
            if not expected:
                if found:
                    strays.append(rid)
                continue
            audit.expected += 1
            if len(found) == 1:
                record = found[0]
                if linked != [record.id]:
                    link_trouble.append(f"{rid[:8]} is {record.id} but linked to {linked}")
                problem = self._field_problem(binding, referral, record)
                held = self.quarantine.get((rid, binding.system))
                if not problem:
                    audit.synced += 1
                elif held:  # an earlier version is there; the latest write was refused
                    audit.quarantined[str(held[0]["error_code"])] += 1
                elif rid in pending:  # an earlier version is there; the latest still waits
                    audit.pending.append(rid)
                else:
                    wrong.extend(problem)
                continue
            if found:
                continue
            held = self.quarantine.get((rid, binding.system))
            if held:
                audit.quarantined[str(held[0]["error_code"])] += 1
            elif rid in pending:
                audit.pending.append(rid)
            else:
                audit.missing.append(rid)
        emails = Counter(str(r.data.get("Email") or r.data.get("email") or "").strip().lower()
                         for found in by_key.values() for r in found)
        audit.duplicated_emails = sorted(e for e, n in emails.items() if e and n > 1)
        name = binding.system
        if audit.duplicated:
            self.problem(f"{len(audit.duplicated)} referrals are in {name} more than once: "
                         f"{_examples(audit.duplicated)}")
        if audit.duplicated_emails:
            self.problem(f"{len(audit.duplicated_emails)} emails are in {name} more than once "
                         f"with a refsync id: {_examples(audit.duplicated_emails)}")
        if audit.pending:
            self.problem(f"{len(audit.pending)} referrals are not in {name} yet: their writes "
                         f"are pending in the outbox (not lost): {_examples(audit.pending)}")
        if audit.missing:
            self.problem(f"{len(audit.missing)} referrals are missing from {name} (neither "
                         f"there, nor pending in the outbox, nor quarantined): "
                         f"{_examples(audit.missing)}")
        if strays:
            self.problem(f"{len(strays)} referrals reached {name} though their status keeps "
                         f"them out: {_examples(strays)}")
        if wrong:
            self.problem(f"{len(wrong)} {name} records differ from their referral: "
                         f"{_examples(wrong)}")
        if link_trouble:
            self.problem(f"{len(link_trouble)} {name} links are wrong: {_examples(link_trouble)}")
        return audit


def cursor_problems(
    store: StateStore, bindings: Sequence[StreamBinding], emulators: Mapping[str, Emulator]
) -> list[str]:
    """Cursors that point past data: ahead of every record, or past a record never committed.

    A committed cursor at modstamp M promises that every version changed at or before M has
    been read and committed. So every record refsync must know (each PRM lead; each CRM record
    carrying the id of a referral in the hub) whose current modstamp is at or before M must
    have a link, or be held in quarantine (a record that could not be read, kept to be
    replayed), and M can never exceed the newest modstamp in the system.
    """
    problems = []
    cursors = {(row["system"], row["stream"]): row["value"] for row in store.list_cursors()}
    held = {(row["system"], row["stream"], row["external_id"])
            for row in store.list_quarantine(limit=10_000_000) if row["direction"] == "in"}
    referrals = None
    for binding in bindings:
        stored = cursors.get((binding.system, binding.stream))
        if not stored or not binding.reads:
            continue
        cursor = Cursor.from_dict(stored)
        if cursor.modstamp is None:
            continue
        records = remote_records(emulators[binding.system], binding.object)
        newest = max((r.modstamp for r in records if r.modstamp is not None), default=None)
        if newest is None or cursor.modstamp > newest:
            problems.append(f"{binding.label} cursor {cursor.modstamp.isoformat()} is ahead of "
                            f"the newest record ({newest.isoformat() if newest else 'none'})")
        covered = [r for r in records if r.modstamp is not None and r.modstamp <= cursor.modstamp]
        if binding.role != "prm":
            if referrals is None:
                referrals = {row["id"] for row in store.list_referrals(limit=10_000_000)}
            covered = [r for r in covered if _key_of(binding, r) in referrals]
        links = store.find_links(binding.system, binding.object, [r.id for r in covered])
        unread = [r.id for r in covered if r.id not in links
                  and (binding.system, binding.stream, r.id) not in held]
        if unread:
            problems.append(f"{binding.label} cursor {cursor.modstamp.isoformat()} is past "
                            f"{len(unread)} records that were never committed: "
                            f"{_examples(unread)}")
    return problems


def audit_sync(
    store: StateStore,
    bindings: Sequence[StreamBinding],
    emulators: Mapping[str, Emulator],
    *,
    untouched_before: Mapping[str, int] | None = None,
) -> AuditReport:
    """Check the PRM, the hub and every CRM against each other after a sync has settled.

    Args:
        store: the state store the syncs used.
        bindings: the configured streams (from :func:`refsync.sync.wiring.build_bindings`).
        emulators: the sandbox emulator of each configured system, by system name.
        untouched_before: per CRM system, how many records it held before the first sync
            (none carries a refsync id); refsync must leave exactly those alone.
    """
    return _Auditor(store, bindings, emulators, untouched_before).run()
