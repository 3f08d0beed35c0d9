"""Crash harness: ``kill -9`` refsync mid-sync, again and again, then prove nothing was lost.

:func:`run_chaos` starts the sandbox in this process (server threads) seeded with a few thousand
PartnerStack referrals, writes a configuration, and runs ``python -m refsync sync`` as a child
process. A :class:`KillSwitch` watches the sandbox's API calls and sends SIGKILL to the child
at a seeded random moment: when the sandbox has served a chosen number of calls (the request
in flight is still applied by the emulator: the write lands, its answer never arrives, and
nothing is committed locally), a few milliseconds after such a call, or a random delay after
the child's first call (mid-mapping or mid-commit). Never during start-up, since the switch
only counts API calls. After the last kill it runs syncs until one exits 0 and a further one
has nothing to do, then audits the PRM, the hub and the CRMs (:mod:`refsync.testing.audit`)
and compares every referral's outcome with an uninterrupted reference sync of the same data.

A child that crashes (a traceback, or an exit code no run outcome gives) is a bug of refsync,
not the harness's kill: the report names it, and every other reason it fails, on a
``PROBLEM:`` line.

The kill schedule is a function of the seed; the exact instruction a kill interrupts also
depends on timing, so a failing seed reproduces the schedule, not necessarily the interleaving.
"""

from __future__ import annotations

import functools
import json
import random
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from refsync.cli.common import EXIT_FAILED, EXIT_OK, EXIT_PARTIAL
from refsync.config import load_config
from refsync.daemon.leases import SYNC_LEASE
from refsync.domain.ids import SHORT_ID_LENGTH, short_referral_id
from refsync.sandbox.core import CallCounter
from refsync.sandbox.runner import RunningSandbox
from refsync.state import StateStore
from refsync.sync.bindings import StreamBinding
from refsync.sync.wiring import build_bindings, build_engine
from refsync.testing.audit import AuditReport, audit_sync, cursor_problems, remote_records
from refsync.testing.scenario import (
    SANDBOX_SECRETS,
    sandbox_environment,
    scenario_config,
    scenario_sandbox,
    scenario_seed,
)

__all__ = [
    "Attempt",
    "Campaign",
    "ChaosOptions",
    "ChaosReport",
    "KillSwitch",
    "Reference",
    "run_campaign",
    "run_chaos",
    "run_reference",
    "sync_work",
    "verdict_line",
]

#: seconds a killed child keeps the sync lease (PostgreSQL); the shortest refsync allows
LEASE_TTL = 3

#: run counters that mean a sync still had something to do
WORK_COUNTS = ("created", "updated", "written", "quarantined", "deferred", "conflicts",
               "duplicates", "rejected")
#: the exit codes of ``refsync sync`` and ``refsync retry`` that give a run's outcome:
#: succeeded, partial or interrupted, failed (or refused the sync lease); any other is a crash
RUN_EXIT_CODES = frozenset({EXIT_OK, EXIT_PARTIAL, EXIT_FAILED})
_SHORT_ID = re.compile(rf"\b[0-9a-f]{{{SHORT_ID_LENGTH}}}\b")
#: how much of a child's last line of standard error a report quotes
_QUOTED = 300


def sync_work(counts: Mapping[str, Any]) -> int:
    """How much a run did (0: the sync had nothing to do); echoes read back are not work."""
    return sum(int(counts.get(name) or 0) for name in WORK_COUNTS)


@dataclass
class ChaosOptions:
    """What :func:`run_chaos` does.

    Attributes:
        seed: seeds the data and the kill schedule.
        referrals: PartnerStack leads to seed.
        kills: SIGKILLs to deliver mid-sync.
        state_url: the state store (an empty database); a SQLite file in ``workdir`` if None.
        workdir: where the config, state file and child logs go; a temporary one if None.
        new_leads: leads partners submit before each attempt, so every attempt has fresh work
            to be interrupted in (default: referrals / (2 * kills), at least 1).
        reference: also sync the seeded data without kills and compare every outcome.
        max_settle_runs: syncs allowed after the last kill to finish the work.
        crm_batch_size: records per CRM write call (smaller: more write calls to kill
            between); each API's maximum if None.
        python: the interpreter that runs ``python -m refsync``.
        say: receives one line per step (progress).
    """

    seed: int = 1
    referrals: int = 3000
    kills: int = 30
    state_url: str | None = None
    workdir: Path | None = None
    new_leads: int | None = None
    reference: bool = True
    max_settle_runs: int = 6
    crm_batch_size: int | None = None
    python: str = sys.executable
    say: Callable[[str], None] = lambda _line: None


@dataclass
class Attempt:
    """One child sync: how it was meant to be killed and how it ended.

    Attributes:
        number: the child's number (its logs are ``runs/<number>.out`` and ``.err``).
        plan: when the kill was meant to land (``no kill`` after the last kill).
        exit_code: the child's exit code; -9 when SIGKILL ended it.
        killed_during: the last API call the sandbox served before the kill.
        phase: when the kill landed with respect to the child's run.
        counts: the run's counters, from the child's ``--json`` answer.
        last_stderr_line: the last line the child wrote to standard error (of a JSON log
            line, its message).
        raised: the child's standard error shows an exception refsync did not expect (a
            traceback, or a ``command crashed`` event).
    """

    number: int
    plan: str
    exit_code: int
    killed_during: str | None = None
    phase: str = ""
    counts: dict[str, Any] = field(default_factory=dict)
    last_stderr_line: str = ""
    raised: bool = False

    @property
    def killed(self) -> bool:
        """True when SIGKILL ended the child."""
        return self.exit_code == -9

    @property
    def crashed(self) -> bool:
        """True when refsync itself, not the harness's kill, ended the child abnormally.

        A child that raised still counts when the SIGKILL found it not yet gone.
        """
        return self.raised or (not self.killed and self.exit_code not in RUN_EXIT_CODES)

    def ended(self) -> str:
        """How the child ended, with the last thing it said when it did not succeed."""
        said = f": {self.last_stderr_line}" if self.last_stderr_line else ""
        if self.crashed and self.killed:
            return f"crashed, then was killed by SIGKILL before it exited{said}"
        if self.crashed:
            return f"crashed with exit {self.exit_code}{said}"
        if self.exit_code != EXIT_OK:
            return f"exit {self.exit_code}{said}"
        return f"exit {self.exit_code}, {sync_work(self.counts)} records of work done"


@dataclass
class Reference:
    """An uninterrupted sync of the same data: every referral's outcome and what it cost."""

    outcomes: dict[str, tuple[Any, ...]]
    api_calls: int
    seconds: float
    audit: AuditReport


@dataclass
class ChaosReport:
    """What the harness did and found."""

    options: ChaosOptions
    attempts: list[Attempt] = field(default_factory=list)
    settle: list[Attempt] = field(default_factory=list)
    interim_problems: list[str] = field(default_factory=list)
    new_leads: int = 0
    lease_waits: float = 0.0
    run_statuses: Counter[str] = field(default_factory=Counter)
    reference: Reference | None = None
    reference_differences: list[str] = field(default_factory=list)
    audit: AuditReport | None = None
    seconds: float = 0.0

    @property
    def kills(self) -> int:
        """SIGKILLs delivered."""
        return sum(1 for a in self.attempts if a.killed)

    @property
    def crashed(self) -> int:
        """Attempts that crashed (see :attr:`Attempt.crashed`), killed afterwards or not."""
        return sum(1 for a in self.attempts if a.crashed)

    @property
    def problems(self) -> list[str]:
        """Everything that went wrong; empty when nothing was lost or duplicated and no
        child crashed."""
        found = [] if self.audit is None else list(self.audit.problems)
        return [*found, *self._harness_problems()]

    def _harness_problems(self) -> list[str]:
        """What went wrong beyond the audit's findings (which the audit's lines print)."""
        found = [*self.interim_problems, *self.reference_differences]
        found.extend(f"attempt {a.number} {a.ended()}" for a in self.attempts if a.crashed)
        found.extend(f"child {a.number} after the last kill {a.ended()}"
                     for a in self.settle if a.crashed)
        if not self.settle or self.settle[-1].exit_code != EXIT_OK or sync_work(
                self.settle[-1].counts):
            last = f"the last one {self.settle[-1].ended()}" if self.settle \
                else "no run was made"
            found.append(f"the syncs did not settle in {self.options.max_settle_runs} runs "
                         f"after the last kill ({last})")
        return found

    @property
    def ok(self) -> bool:
        """True when the harness found nothing wrong."""
        return not self.problems

    def lines(self) -> list[str]:
        """A readable report: every problem is on a ``PROBLEM:`` line, the verdict last."""
        out = self._summary_lines()
        out.extend(f"PROBLEM: {problem}" for problem in self._harness_problems())
        out.append(verdict_line(len(self.problems), self.seconds, self.options.seed))
        return out

    def _summary_lines(self) -> list[str]:
        """What the harness did, and the audit with its own problems."""
        options = self.options
        killed = [a for a in self.attempts if a.killed]
        phases = Counter(a.phase for a in killed)
        last_calls = Counter(_route_kind(a.killed_during) for a in killed)
        killed_crashed = sum(1 for a in killed if a.crashed)
        finished = len(self.attempts) - self.kills - (self.crashed - killed_crashed)
        out = [f"seed {options.seed}: {options.referrals} referrals seeded, {self.new_leads} "
               f"submitted during the attempts; {len(self.attempts)} attempts, {self.kills} "
               f"killed by SIGKILL, {finished} finished before their kill, {self.crashed} "
               "crashed" + (f" ({killed_crashed} of them then killed by SIGKILL before they "
                            "exited)" if killed_crashed else "")]
        out.append("killed: " + ", ".join(f"{phase} {n}" for phase, n in phases.most_common()))
        out.append("last API call before each kill: " + ", ".join(
            f"{kind} {n}" for kind, n in last_calls.most_common()))
        out.append("after the last kill: " + ", ".join(
            f"exit {a.exit_code} ({sync_work(a.counts)} work{', crashed' if a.crashed else ''})"
            for a in self.settle))
        if self.lease_waits:
            out.append(f"waited {self.lease_waits:.1f} s in all for killed runs' sync leases "
                       "to expire")
        if self.reference is not None:
            out.append(f"reference sync without kills: {self.reference.api_calls} API calls, "
                       f"{self.reference.seconds:.1f} s")
        if self.audit is not None:
            out.extend(self.audit.lines())
        return out


class _HookedCounter(CallCounter):
    """A call counter that tells a hook about every API call it counts."""

    def __init__(self, hook: Callable[[str], None]) -> None:
        super().__init__()
        self._hook = hook

    def add(self, route_key: str) -> None:
        super().add(route_key)
        self._hook(route_key)


class KillSwitch:
    """Sends SIGKILL to a child process at a chosen API call of the sandbox (plus a delay).

    Install it on a running sandbox once; :meth:`arm` it for each child.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._calls = 0
        self._process: subprocess.Popen[bytes] | None = None
        self._remaining = 0
        self._delay = 0.0
        self._only: Callable[[str, str], bool] | None = None
        self._last_call = ""
        self.fired_during: str | None = None

    @property
    def calls(self) -> int:
        """API calls the sandbox has served since installation."""
        with self._lock:
            return self._calls

    def install(self, sandbox: RunningSandbox) -> None:
        """Count every API call of every emulator (replaces their call counters)."""
        for system, emulator in sandbox.emulators.items():
            emulator.calls = _HookedCounter(functools.partial(self._on_call, system))

    def arm(
        self,
        process: subprocess.Popen[bytes],
        after_calls: int,
        delay: float,
        only: Callable[[str, str], bool] | None = None,
    ) -> None:
        """Kill ``process`` ``delay`` seconds after the ``after_calls``-th call from now.

        With ``only``, count only the calls it accepts (``only(system, route)``).
        """
        with self._lock:
            self._process = process
            self._remaining = max(1, after_calls)
            self._delay = delay
            self._only = only
            self.fired_during = None

    def disarm(self) -> None:
        """Forget the armed process."""
        with self._lock:
            self._process = None

    def _on_call(self, system: str, route: str) -> None:
        with self._lock:
            self._calls += 1
            self._last_call = f"{system} {route}"
            process = self._process
            if process is None or (self._only is not None and not self._only(system, route)):
                return
            self._remaining -= 1
            if self._remaining > 0:
                return
            self._process = None
            delay = self._delay
        if delay <= 0:
            self._kill(process)
        else:
            timer = threading.Timer(delay, self._kill, args=(process,))
            timer.daemon = True
            timer.start()

    def _kill(self, process: subprocess.Popen[bytes]) -> None:
        with self._lock:
            self.fired_during = self._last_call
        process.kill()


def _route_kind(call: str | None) -> str:
    """``salesforce write`` / ``hubspot read`` ... for a ``"<system> <METHOD> <route>"``."""
    if not call:
        return "none"
    system, _, route = call.partition(" ")
    if "token" in route:
        return f"{system} sign-in"
    return f"{system} {'write' if _is_write(system, route) else 'read'}"


def _is_write(system: str, route: str) -> bool:
    method = route.split(" ", 1)[0]
    return method in ("PATCH", "PUT") or (method == "POST" and "batch" in route)


def _kill_plan(
    rng: random.Random, calls: int, seconds: float
) -> tuple[int, float, Callable[[str, str], bool] | None, str]:
    """Draw when to kill the next child: (calls, delay, which calls count, description).

    Half the kills land at a random API call (the call is applied, its answer lost), a fifth
    a random delay after the first call, the rest at a CRM's write call, with or without a
    few milliseconds' delay: the window between a remote write and its local commit.
    """
    draw = rng.random()
    short = rng.choice((0.0, round(rng.uniform(0.0, 0.005), 4)))
    then = f" +{short * 1000:.1f} ms" if short else ""
    if draw < 0.5:
        after = rng.randint(1, max(1, calls))
        return after, short, None, f"at call +{after}{then}"
    if draw < 0.7:
        delay = round(rng.uniform(0.0, max(0.01, seconds)), 3)
        return 1, delay, None, f"{delay:.3f} s after the first call"
    system = rng.choice(("salesforce", "hubspot"))
    after = rng.choice((1, 1, 2))
    return (after, short, lambda s, route: s == system and _is_write(s, route),
            f"at {system} write #{after}{then}")


def _outcomes(store: StateStore, bindings: list[StreamBinding],
              emulators: Mapping[str, Any]) -> dict[str, tuple[Any, ...]]:
    """Per PRM lead key: the referral's status and reason and which CRMs hold it."""
    prm = next(b for b in bindings if b.role == "prm")
    crms = [b for b in bindings if b.role != "prm" and b.writes]
    leads = remote_records(emulators[prm.system], prm.object)
    links = store.find_links(prm.system, prm.object, [r.id for r in leads])
    referrals = store.get_referrals([link["canonical_id"] for link in links.values()])
    present: dict[str, set[str]] = {}
    for binding in crms:
        present[binding.system] = {
            str(r.data.get(binding.mapping.key_field))
            for r in remote_records(emulators[binding.system], binding.object)}
    # a reason names another referral by its short id, which differs from run to run: name
    # that referral's lead instead, which does not
    lead_of = {short_referral_id(link["canonical_id"]): lead_id
               for lead_id, link in links.items()}

    def by_lead(match: re.Match[str]) -> str:
        return f"<{lead_of.get(match.group(0), 'unknown referral')}>"

    outcomes = {}
    for lead in leads:
        link = links.get(lead.id)
        referral = referrals.get(link["canonical_id"]) if link else None
        if referral is None:
            outcomes[lead.id] = ("no referral",)
            continue
        reason = _SHORT_ID.sub(by_lead, str(referral.get("status_reason") or ""))
        outcomes[lead.id] = (referral["status"], reason, *(
            system for system in sorted(present) if referral["id"] in present[system]))
    return outcomes


def _untouched(sandbox: RunningSandbox, bindings: list[StreamBinding]) -> dict[str, int]:
    return {b.system: len(remote_records(sandbox.emulators[b.system], b.object))
            for b in bindings if b.role != "prm" and b.writes}


def run_reference(seed_data: dict[str, Any], workdir: Path, *, max_runs: int = 6) -> Reference:
    """Sync ``seed_data`` in this process without interruption until there is nothing to do."""
    workdir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with scenario_sandbox(seed_data, workdir) as sandbox:
        path = workdir / "reference.yaml"
        path.write_text(scenario_config(sandbox, f"sqlite:///{workdir / 'reference.db'}",
                                        instance="reference"), "utf-8")
        loaded = load_config(path, environ={**SANDBOX_SECRETS})
        untouched = _untouched(sandbox, build_bindings(loaded))
        with StateStore(loaded.config.state.url) as store:
            engine = build_engine(loaded, store)
            for _ in range(max_runs):
                report = engine.run(trigger="reference")
                if report.status == "succeeded" and not sync_work(report.counts):
                    break
            seconds = time.monotonic() - started
            calls = sum(emulator.calls.total() for emulator in sandbox.emulators.values())
            audit = audit_sync(store, engine.bindings, sandbox.emulators,
                               untouched_before=untouched)
            outcomes = _outcomes(store, list(engine.bindings), sandbox.emulators)
    return Reference(outcomes, calls, seconds, audit)


def _compare(reference: Reference, outcomes: Mapping[str, tuple[Any, ...]],
             crms: list[str]) -> list[str]:
    """Differences from the reference; leads submitted later are new prospects everywhere."""
    fresh = ("submitted", "", *sorted(crms))
    differing = [f"{key}: {found} instead of {reference.outcomes.get(key, fresh)}"
                 for key, found in sorted(outcomes.items())
                 if found != reference.outcomes.get(key, fresh)]
    differing.extend(f"{key}: missing" for key in reference.outcomes if key not in outcomes)
    if not differing:
        return []
    shown = "; ".join(differing[:5])
    return [f"{len(differing)} referrals ended differently than in the uninterrupted sync: "
            f"{shown}{' ...' if len(differing) > 5 else ''}"]


@contextmanager
def _workdir(path: Path | None) -> Iterator[Path]:
    if path is not None:
        path.mkdir(parents=True, exist_ok=True)
        yield path.resolve()
        return
    with tempfile.TemporaryDirectory(prefix="refsync-chaos-") as temporary:
        yield Path(temporary)


class _Child:
    """Runs ``python -m refsync`` commands against the scenario config, output kept in files."""

    def __init__(self, options: ChaosOptions, config: Path, logs: Path) -> None:
        self.options = options
        self.config = config
        self.logs = logs
        self.environment = sandbox_environment()
        logs.mkdir(parents=True, exist_ok=True)

    def start(self, number: int, args: Sequence[str] = ("sync",)) -> subprocess.Popen[bytes]:
        command = [self.options.python, "-m", "refsync", *args, "-c", str(self.config),
                   "--json"]
        with open(self.logs / f"{number:03d}.out", "wb") as out, \
                open(self.logs / f"{number:03d}.err", "wb") as err:
            return subprocess.Popen(command, stdout=out, stderr=err, env=self.environment)

    def result(self, number: int, plan: str, exit_code: int) -> Attempt:
        """Child ``number``'s attempt, from its exit code and what it wrote."""
        raised, last_line = _stderr_findings(
            (self.logs / f"{number:03d}.err").read_text("utf-8", errors="replace"))
        return Attempt(number, plan, exit_code, counts=self.counts(number),
                       last_stderr_line=last_line, raised=raised)

    def counts(self, number: int) -> dict[str, Any]:
        text = (self.logs / f"{number:03d}.out").read_text("utf-8", errors="replace")
        start = text.find("{")
        try:
            answer = json.loads(text[start:]) if start >= 0 else {}
        except ValueError:
            return {}
        counts = answer.get("counts") if isinstance(answer, dict) else None
        return counts if isinstance(counts, dict) else {}


def _stderr_findings(text: str) -> tuple[bool, str]:
    """Whether a child's standard error shows an unexpected exception, and its last line.

    Python's traceback (console log lines) or a ``command crashed`` event (JSON log lines)
    tells of an exception refsync did not expect. A JSON log line is quoted by its message.
    """
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    raised = any(line.startswith("Traceback (most recent call last)")
                 or _log_event(line).get("event") == "command crashed" for line in lines)
    if not lines:
        return raised, ""
    event = _log_event(lines[-1])
    last = str(event.get("error") or event.get("why") or event.get("event") or lines[-1])
    return raised, last if len(last) <= _QUOTED else last[:_QUOTED - 3] + "..."


def _log_event(line: str) -> dict[str, Any]:
    """A JSON log line as a dict; empty for any other line."""
    if not line.startswith("{"):
        return {}
    try:
        event = json.loads(line)
    except ValueError:
        return {}
    return event if isinstance(event, dict) else {}


class Campaign:
    """The kill loop over one running sandbox: attempts, interim checks, settling.

    Subclass it to kill another command (set :attr:`command`, override :meth:`prepare` and
    :meth:`check`) and pass the subclass to :func:`run_campaign`, as
    :mod:`refsync.testing.chaos_retry` does for ``refsync retry``.
    """

    #: the ``refsync`` command each attempt runs (and kills)
    command: tuple[str, ...] = ("sync",)

    def __init__(self, options: ChaosOptions, report: ChaosReport, sandbox: RunningSandbox,
                 workdir: Path, per_call: float) -> None:
        self.options = options
        self.report = report
        self.sandbox = sandbox
        self.rng = random.Random(options.seed)
        self.per_call = per_call
        self.config = workdir / "refsync.yaml"
        self.state_url = options.state_url or f"sqlite:///{workdir / 'state.db'}"
        self.config.write_text(scenario_config(sandbox, self.state_url, instance="chaos",
                                               lease_ttl=f"{LEASE_TTL}s",
                                               crm_batch_size=options.crm_batch_size), "utf-8")
        self.bindings = build_bindings(load_config(self.config, environ={**SANDBOX_SECRETS}))
        self.untouched = _untouched(sandbox, self.bindings)
        self.switch = KillSwitch()
        self.switch.install(sandbox)
        self.child = _Child(options, self.config, workdir / "runs")
        self.per_attempt = options.new_leads if options.new_leads is not None else max(
            1, options.referrals // (2 * max(1, options.kills)))
        self.number = 0

    def _runs(self) -> tuple[int, str | None]:
        """Runs recorded so far and the newest one's status (none before the first child)."""
        if self.number <= 1 and not self.report.attempts and self.switch.fired_during is None:
            return 0, None
        with StateStore(self.state_url, migrate=False) as store:
            newest = store.list_runs(limit=1)
            return store.counts()["runs"], newest[0]["status"] if newest else None

    def submit_leads(self) -> None:
        """Partners submit this attempt's new leads in the PRM."""
        if not self.per_attempt:
            return
        partnerstack = self.sandbox.emulators["partnerstack"]
        with partnerstack.lock:
            partnerstack.simulate({"new_leads": self.per_attempt})
        self.report.new_leads += self.per_attempt

    def prepare(self, number: int) -> int:
        """Get attempt ``number`` ready; return roughly the API calls it will make."""
        if number > 1:
            self.submit_leads()
        # roughly the API calls this attempt needs (a write per PRM lead written back, a few
        # reads); the kill lands somewhere inside that
        if number == 1:
            return 8 + self.options.referrals
        with StateStore(self.state_url, migrate=False) as store:
            return 8 + store.counts()["outbox_pending"] // 3 + self.per_attempt

    def check(self, store: StateStore) -> list[str]:
        """What is wrong with the committed state between attempts (cheap checks only)."""
        return cursor_problems(store, self.bindings, self.sandbox.emulators)

    def attempt(self) -> Attempt:
        """Start a child with a kill armed; check the committed state once it is gone."""
        self.number += 1
        number, options, report = self.number, self.options, self.report
        calls = self.prepare(number)
        runs_before, _ = self._runs()
        after, delay, only, plan = _kill_plan(self.rng, calls, calls * self.per_call)
        process = self.child.start(number, self.command)
        self.switch.arm(process, after, delay, only)
        exit_code = process.wait()
        self.switch.disarm()
        attempt = self.child.result(number, plan, exit_code)
        if attempt.killed:
            attempt.killed_during = self.switch.fired_during
            runs_after, status = self._runs()
            attempt.phase = ("before its run started" if runs_after == runs_before
                             else "mid-run" if status == "running" else "after its run ended")
        report.attempts.append(attempt)
        if attempt.killed:
            report.lease_waits += self._wait_for_dead_lease()
        if attempt.killed:
            outcome = f"killed {attempt.phase}, last call {attempt.killed_during}" + (
                f" ({attempt.ended()})" if attempt.crashed else "")
        else:
            outcome = attempt.ended() if attempt.crashed else f"exit {exit_code}"
        options.say(f"attempt {number}: kill {plan} -> {outcome}")
        with StateStore(self.state_url, migrate=False) as store:
            for problem in self.check(store):
                report.interim_problems.append(f"after attempt {number}: {problem}")
        return attempt

    def _wait_for_dead_lease(self) -> float:
        """Wait until the sync lease a killed child held expires, as the next run must.

        On SQLite a manual sync takes the lease over at once (the file lock already proves
        the holder is gone); on PostgreSQL the lease of a dead holder lasts its TTL.
        """
        with StateStore(self.state_url, migrate=False) as store:
            if store.backend == "sqlite":
                return 0.0
            lease = store.get_lease(SYNC_LEASE) or {}
        expires = lease.get("expires_at")
        if not lease.get("holder") or expires is None:
            return 0.0
        wait = max(0.0, (expires - datetime.now(UTC)).total_seconds()) + 0.05
        time.sleep(wait)
        return wait

    def settle(self) -> None:
        """Sync without kills until one exits 0 and the next has nothing to do."""
        for _ in range(self.options.max_settle_runs):
            self.number += 1
            exit_code = self.child.start(self.number).wait()
            attempt = self.child.result(self.number, "no kill", exit_code)
            self.report.settle.append(attempt)
            self.options.say(f"sync {self.number} without a kill: exit {exit_code}, "
                             f"work {sync_work(attempt.counts)}"
                             + (f" ({attempt.ended()})" if attempt.crashed else ""))
            settle = self.report.settle
            if len(settle) > 1 and settle[-2].exit_code == 0 and exit_code == 0 and \
                    not sync_work(attempt.counts):
                return

    def audit(self) -> None:
        """Audit the settled state and compare it with the reference."""
        report = self.report
        with StateStore(self.state_url, migrate=False) as store:
            report.audit = audit_sync(store, self.bindings, self.sandbox.emulators,
                                      untouched_before=self.untouched)
            report.run_statuses = Counter(
                str(run["status"]) for run in store.list_runs(limit=1_000_000))
            if report.reference is not None:
                report.reference_differences = _compare(
                    report.reference, _outcomes(store, self.bindings, self.sandbox.emulators),
                    [b.system for b in self.bindings if b.role != "prm" and b.writes])


def run_chaos(options: ChaosOptions) -> ChaosReport:
    """Interrupt syncs with SIGKILL as ``options`` says, let them finish, audit the result."""
    return run_campaign(options, ChaosReport(options), Campaign)


_Report = TypeVar("_Report", bound=ChaosReport)


def run_campaign(options: ChaosOptions, report: _Report,
                  campaign_type: type[Campaign]) -> _Report:
    """The reference sync, then ``campaign_type``'s attempts, settling and audit.

    Args:
        options: seed, sizes and kills.
        report: filled in and returned.
        campaign_type: :class:`Campaign` or a subclass (which command to kill and check).
    """
    started = time.monotonic()
    seed_data = scenario_seed(options.seed, options.referrals)
    with _workdir(options.workdir) as workdir:
        if options.reference:
            report.reference = run_reference(seed_data, workdir / "reference")
            options.say(f"reference sync: {report.reference.api_calls} API calls in "
                        f"{report.reference.seconds:.1f} s")
        per_call = (report.reference.seconds / max(1, report.reference.api_calls)
                    if report.reference else 0.004)
        with scenario_sandbox(seed_data, workdir) as sandbox:
            campaign = campaign_type(options, report, sandbox, workdir, per_call)
            while report.kills < options.kills and campaign.number < 3 * options.kills:
                campaign.attempt()
            campaign.settle()
            campaign.audit()
    report.seconds = time.monotonic() - started
    return report


def verdict_line(problems: int, seconds: float, seed: int) -> str:
    """A harness report's last line: OK, or FAILED with how many problems it listed."""
    said = f" in {seconds:.1f} s (seed {seed})"
    if not problems:
        return f"OK{said}"
    return f"FAILED{said}: {problems} problem{'s' if problems > 1 else ''} above"
