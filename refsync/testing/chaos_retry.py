"""Crash harness for ``refsync retry``: kill -9 the quarantine replay mid-flight, then audit.

:func:`run_retry_chaos` works like :func:`refsync.testing.chaos.run_chaos` (same sandbox,
seed, kill switch, settling and audit), but what it kills is ``python -m refsync retry --all``.
Before each attempt, partners submit new leads and this process syncs them with the CRMs
refusing a share of the records in their batch writes (the fault soak's ``record_refused``
faults), so that the refused referrals sit in quarantine (direction out). A few of the new
leads carry a status (``on_hold``) that the mapping those syncs use does not know, so they
are quarantined when read (direction in, ``unmapped_value``). Then the faults are cleared and
the retry child replays the quarantine with the mapping an admin fixed (``on_hold`` maps to
``submitted``): it resolves every open row, maps each failed read again into a referral and
re-enqueues each failed write, in one transaction, then pushes; the kill lands after one of
its API calls (a CRM write call, a chosen call, or a delay after the first), i.e. mid-push.
Writes the killed child left in the outbox are pushed by the next round's faulty sync (some
are refused again) or the next retry.

Between attempts, and once more after settling, it checks that no resolved quarantine row is
stranded: a replayed write's referral must be in the CRM, or still pending in the outbox, or
quarantined again; a replayed read's record must be linked to a referral, or quarantined
again. After one retry and syncs without kills, the audit must find every referral synced to
every CRM exactly once (by refsync id and email), the outbox empty and no quarantine open.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from refsync.config import load_config
from refsync.mapping.loader import default_mapping_path
from refsync.sandbox.core import Emulator
from refsync.sandbox.faults import FaultInjector
from refsync.sandbox.runner import RunningSandbox
from refsync.state import StateStore
from refsync.sync.bindings import StreamBinding
from refsync.sync.wiring import build_bindings, build_engine
from refsync.testing.audit import remote_records
from refsync.testing.chaos import (
    Campaign,
    ChaosOptions,
    ChaosReport,
    run_campaign,
    sync_work,
)
from refsync.testing.scenario import SANDBOX_SECRETS
from refsync.testing.soak import SoakOptions, fault_rules

__all__ = [
    "HELD_STATUS",
    "RetryChaosOptions",
    "RetryChaosReport",
    "fixed_mapping_config",
    "run_retry_chaos",
    "stranded_replays",
]

_EVERYTHING = 10_000_000

#: the lead status the mapping before the fix lacks; the fixed one maps it to ``submitted``
HELD_STATUS = "on_hold"
_STATUS_MAP_END = "      expired: expired\n"
_STATUS_MAP_FIX = (f"      {HELD_STATUS}: submitted\n"
                   "      out: {submitted: new}\n")


@dataclass
class RetryChaosOptions(ChaosOptions):
    """What :func:`run_retry_chaos` does: :class:`ChaosOptions` plus the faults.

    ``kills`` counts SIGKILLs of ``refsync retry``; ``new_leads`` are submitted before each
    attempt's faulty sync (default: referrals / kills, at least 1). Besides those of
    :class:`ChaosOptions`:

    Attributes:
        rate_record: share of the records in a CRM batch write refused while faults are on.
        crm_batch_size: records per CRM write call; small, so that a replay takes several
            write calls to kill between.
        max_faulty_runs: in-process syncs per attempt to reach a run with nothing to do.
        held_leads: leads submitted before each attempt with a status the faulty syncs'
            mapping does not know (``on_hold``), so that they are quarantined when read
            and the retry maps them again with the fixed mapping.
    """

    referrals: int = 200
    kills: int = 8
    rate_record: float = 0.2
    crm_batch_size: int | None = 5
    max_faulty_runs: int = 4
    held_leads: int = 3


@dataclass
class RetryChaosReport(ChaosReport):
    """What the harness did and found, with the quarantine the retries replayed.

    Attributes:
        quarantined: per attempt, the open outgoing quarantine rows the retry child found.
        held: per attempt, the open incoming quarantine rows (leads that could not be read)
            the retry child found.
        refused: records the CRMs refused while the faults were on, by system.
        stranded: after settling, resolved quarantine rows whose referral never reached the
            CRM, or whose record never became a referral (see :func:`stranded_replays`).
    """

    quarantined: list[int] = field(default_factory=list)
    held: list[int] = field(default_factory=list)
    refused: Counter[str] = field(default_factory=Counter)
    stranded: list[str] = field(default_factory=list)

    def _harness_problems(self) -> list[str]:
        """Beyond the audit's findings, including quarantine left open or stranded."""
        return [*super()._harness_problems(), *self._replay_problems()]

    def _replay_problems(self) -> list[str]:
        """After settling, every replay must have reached its CRM and nothing stay held."""
        found = list(self.stranded)
        if self.audit is not None:
            held = sum(self.audit.quarantine_open.values())
            if held:
                found.append(f"{held} quarantine rows still open after settling")
            found.extend(f"{system.synced} of {system.expected} referrals synced to {name}"
                         for name, system in sorted(self.audit.systems.items())
                         if system.synced != system.expected)
        return found

    def _summary_lines(self) -> list[str]:
        """What the harness did, the audit, and the quarantine the retries replayed."""
        out = super()._summary_lines()
        refused = ", ".join(f"{system} {n}" for system, n in sorted(self.refused.items()))
        out.append(f"records refused while faulty: {refused or 'none'}; open outgoing "
                   f"quarantine before each retry: {self.quarantined}; leads that could "
                   f"not be read before each retry: {self.held}")
        return out


def stranded_replays(
    store: StateStore, bindings: Sequence[StreamBinding], emulators: Mapping[str, Emulator]
) -> list[str]:
    """Resolved quarantine rows whose record is nowhere: a replay that was lost.

    ``refsync retry`` resolves a row and, in the same transaction, re-enqueues its write (a
    failed write) or maps its kept record again (a failed read). From then on a replayed
    write's referral must be in the CRM (by refsync id), or its write pending in the outbox,
    or quarantined again (an open row); a replayed read's record must be linked to a
    referral, or quarantined again. Anything else lost the referral.
    """
    rows = store.list_quarantine(include_resolved=True, limit=_EVERYTHING)
    resolved = [row for row in rows if row["resolved_at"] is not None]
    held = {(row["referral_id"], row["system"]) for row in rows if row["resolved_at"] is None}
    held_reads = {(row["system"], row["external_id"]) for row in rows
                  if row["resolved_at"] is None and row["direction"] == "in"}
    stranded = _stranded_writes(store, bindings, emulators, resolved, held)
    stranded += _stranded_reads(store, bindings, resolved, held_reads)
    if not stranded:
        return []
    shown = ", ".join(sorted(stranded)[:5])
    return [f"{len(stranded)} resolved quarantine rows whose referral is neither in the CRM "
            f"(or linked to the record read), nor pending in the outbox, nor quarantined "
            f"again: {shown}{' ...' if len(stranded) > 5 else ''}"]


def _stranded_writes(
    store: StateStore, bindings: Sequence[StreamBinding], emulators: Mapping[str, Emulator],
    resolved: Sequence[Mapping[str, Any]], held: set[tuple[str, str]],
) -> list[str]:
    """Replayed writes whose referral is neither in the CRM, nor pending, nor held again."""
    present: dict[str, set[str]] = {}
    pending: dict[tuple[str, str], set[str]] = {}
    with store.snapshot() as view:
        for binding in bindings:
            if binding.role == "prm" or not binding.writes:
                continue
            present[binding.system] = {
                str(record.data.get(binding.mapping.key_field))
                for record in remote_records(emulators[binding.system], binding.object)}
            pending[(binding.system, binding.stream)] = {
                row["referral_id"] for row in view.pending_outbox(binding.system,
                                                                  binding.stream)}
    return sorted({
        f"{row['referral_id'][:8]} ({row['system']}, quarantine row {row['id']})"
        for row in resolved
        if row["direction"] == "out" and row["referral_id"]
        and row["system"] in present
        and (row["referral_id"], row["system"]) not in held
        and row["referral_id"] not in present[row["system"]]
        and row["referral_id"] not in pending.get((row["system"], row["stream"]), set())})


def _stranded_reads(
    store: StateStore, bindings: Sequence[StreamBinding],
    resolved: Sequence[Mapping[str, Any]], held: set[tuple[str, str]],
) -> list[str]:
    """Replayed reads whose record is linked to no referral and is not held again."""
    stranded = []
    with store.snapshot() as view:
        for binding in bindings:
            if not binding.reads:
                continue
            replayed = {str(row["external_id"]): row for row in resolved
                        if row["direction"] == "in" and row["external_id"]
                        and row["system"] == binding.system and row["stream"] == binding.stream
                        and (row["system"], row["external_id"]) not in held}
            linked = view.links_by_external(binding.system, binding.object, list(replayed))
            stranded += [f"{external_id} ({binding.system}, quarantine row {row['id']})"
                         for external_id, row in replayed.items()
                         if external_id not in linked]
    return stranded


class _RetryCampaign(Campaign):
    """Each attempt: new leads, syncs through refused records, then a retry child killed."""

    command = ("retry", "--all")
    options: RetryChaosOptions
    report: RetryChaosReport

    def __init__(self, options: ChaosOptions, report: ChaosReport, sandbox: RunningSandbox,
                 workdir: Path, per_call: float) -> None:
        super().__init__(options, report, sandbox, workdir, per_call)
        # the faulty syncs read with the shipped mapping, which lacks HELD_STATUS; the retry
        # child and the settling syncs read with the mapping the admin fixed
        before_fix = workdir / "refsync-before-fix.yaml"
        text = self.config.read_text("utf-8")
        before_fix.write_text(text, "utf-8")
        self.config.write_text(fixed_mapping_config(text, workdir), "utf-8")
        self.loaded = load_config(before_fix, environ={**SANDBOX_SECRETS})
        self.bindings = build_bindings(load_config(self.config, environ={**SANDBOX_SECRETS}))
        self.crms = [b for b in self.bindings if b.role != "prm" and b.writes]
        self.injectors: dict[str, FaultInjector] = {}
        for number, (system, emulator) in enumerate(sorted(sandbox.emulators.items())):
            emulator.faults = self.injectors[system] = FaultInjector(
                seed=options.seed * 10 + number)
        if options.new_leads is None:
            self.per_attempt = max(1, options.referrals // max(1, options.kills))
        self.lease_pending = False

    def _wait_for_dead_lease(self) -> float:
        """Defer the wait: the faulty syncs need no lease, so they run while it expires."""
        self.lease_pending = True
        return 0.0

    def _lease_free(self) -> None:
        """Wait for what is left of a killed child's lease before the next child starts."""
        if self.lease_pending:
            self.report.lease_waits += super()._wait_for_dead_lease()
            self.lease_pending = False

    def prepare(self, number: int) -> int:
        """Quarantine fresh records through faulty syncs; return the replay's API calls."""
        options = self.options
        if number > 1:
            self.submit_leads()
        self._submit_held_leads()
        self._faults(on=True)
        runs = 0
        try:
            with StateStore(self.state_url) as store:
                engine = build_engine(self.loaded, store, instance="chaos-faulty")
                while runs < options.max_faulty_runs:
                    runs += 1
                    if not sync_work(engine.run(trigger="chaos").counts):
                        break
        finally:
            refused = self._faults(on=False)
        self._lease_free()
        with StateStore(self.state_url, migrate=False) as store:
            open_rows = store.list_quarantine(limit=_EVERYTHING)
            backlog = store.backlog()
        outgoing = sum(1 for row in open_rows if row["direction"] == "out")
        self.report.quarantined.append(outgoing)
        self.report.held.append(len(open_rows) - outgoing)
        options.say(f"attempt {number}: {runs} syncs through refused records ({refused} "
                    f"refused), {outgoing} outgoing records and {len(open_rows) - outgoing} "
                    f"leads that could not be read in quarantine, "
                    f"{sum(backlog['outbox'].values())} writes pending")
        batch = options.crm_batch_size or 100
        # a sign-in, then a write call per batch of each CRM's replayed and pending writes
        return 1 + sum(math.ceil((backlog["outbox"].get(b.system, 0)
                                  + backlog["quarantine"].get(b.system, 0)) / batch)
                       for b in self.crms)

    def _submit_held_leads(self) -> None:
        """Partners submit leads with a status only the fixed mapping knows."""
        if not self.options.held_leads:
            return
        partnerstack = self.sandbox.emulators["partnerstack"]
        with partnerstack.lock:
            partnerstack.simulate({"new_leads": self.options.held_leads, "status": HELD_STATUS})
        self.report.new_leads += self.options.held_leads

    def _faults(self, *, on: bool) -> int:
        """Turn the refused-record faults on or off; return the records refused meanwhile."""
        # the fault soak's record refusals alone: no 429, 5xx, slow answers or 401
        rates = SoakOptions(rate_429=0.0, rate_5xx=0.0, rate_slow=0.0, rate_401=0.0,
                            rate_record=self.options.rate_record)
        refused = 0
        for system, injector in self.injectors.items():
            if on:
                injector.add(fault_rules(system, self.sandbox.emulators[system], rates))
                continue
            injector.clear()
            total = injector.snapshot()["injected"].get("record_refused", 0)
            if total:
                refused += total - self.report.refused[system]
                self.report.refused[system] = total
        return refused

    def _runs(self) -> tuple[int, str | None]:
        """Runs recorded so far and the newest one's status (the faulty syncs made the store)."""
        with StateStore(self.state_url, migrate=False) as store:
            newest = store.list_runs(limit=1)
            return store.counts()["runs"], newest[0]["status"] if newest else None

    def check(self, store: StateStore) -> list[str]:
        """Cursors, and no resolved quarantine row whose referral was lost."""
        return [*super().check(store),
                *stranded_replays(store, self.bindings, self.sandbox.emulators)]

    def settle(self) -> None:
        """One retry without a kill, then syncs until one has nothing to do."""
        self._lease_free()
        self.number += 1
        exit_code = self.child.start(self.number, self.command).wait()
        attempt = self.child.result(self.number, "no kill", exit_code)
        self.report.settle.append(attempt)
        self.options.say(f"retry {self.number} without a kill: exit {exit_code}, replayed "
                         f"{attempt.counts.get('replayed', 0)}, work {sync_work(attempt.counts)}"
                         + (f" ({attempt.ended()})" if attempt.crashed else ""))
        super().settle()

    def audit(self) -> None:
        """The audit, plus stranded replays in the settled state."""
        super().audit()
        with StateStore(self.state_url, migrate=False) as store:
            self.report.stranded = stranded_replays(store, self.bindings,
                                                    self.sandbox.emulators)


def fixed_mapping_config(config_text: str, workdir: Path) -> str:
    """The scenario config reading PartnerStack leads with a mapping that knows HELD_STATUS.

    The fixed mapping is the shipped one with ``on_hold: submitted`` added to its status map
    (and ``out:`` saying ``new`` is what ``submitted`` writes back), as an admin would fix it.
    """
    shipped = default_mapping_path("partnerstack-leads").read_text("utf-8")
    if shipped.count(_STATUS_MAP_END) != 1:
        raise RuntimeError("the shipped partnerstack-leads mapping changed: update "
                           "chaos_retry's status map fix")
    fixed = workdir / "partnerstack-leads-fixed.yaml"
    fixed.write_text(shipped.replace(_STATUS_MAP_END, _STATUS_MAP_END + _STATUS_MAP_FIX),
                     "utf-8")
    reference = "builtin:partnerstack-leads"
    if config_text.count(reference) != 1:
        raise RuntimeError(f"the scenario config must read PartnerStack with {reference}")
    return config_text.replace(reference, str(fixed))


def run_retry_chaos(options: RetryChaosOptions) -> RetryChaosReport:
    """Kill ``refsync retry`` mid-replay as ``options`` says, let it finish, audit the result."""
    return run_campaign(options, RetryChaosReport(options), _RetryCampaign)
