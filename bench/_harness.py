"""Shared code of the sync benchmarks (backfill, incremental, scaling).

* The sandbox emulators run in a **child process** (:class:`RemoteSandbox`), so their memory
  and CPU are not counted as refsync's. The child seeds PartnerStack in-process (no HTTP), then
  answers a few commands over a pipe: API call counts, reset them, change the status of some
  Salesforce Leads, and count what landed in each CRM.
* The engine runs in this process, built from a configuration file like any ``refsync sync``.
* HTTP wait is measured client-side by :class:`HttpTimer`: every HTTP client refsync uses
  (``requests`` under simple-salesforce and the PartnerStack connector, ``hubspot-api-client``)
  sends through urllib3, so the timer wraps ``HTTPConnectionPool.urlopen`` (send the request,
  wait for the status line and headers) and ``HTTPResponse.read``/``read_chunked`` (read the
  body). Engine time is wall time minus that time; JSON encoding and decoding, the client
  libraries' own work, mapping and the state store all count as engine time.
* API calls are counted by the emulators (server side) and compared with the minimum a sync
  needs, see :func:`minimum_calls`.
"""

from __future__ import annotations

import contextlib
import cProfile
import functools
import math
import multiprocessing
import os
import platform
import resource
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

__all__ = [
    "CRMS",
    "PAGE_SIZES",
    "SYSTEMS",
    "WRITE_BATCH",
    "HttpTimer",
    "RemoteSandbox",
    "RunFigures",
    "StoreTimer",
    "SyncHarness",
    "backfill_plan",
    "call_table",
    "machine",
    "minimum_calls",
    "peak_rss_mb",
    "print_run",
]

SYSTEMS = ("partnerstack", "salesforce", "hubspot")
CRMS = ("salesforce", "hubspot")

#: records per read call: PartnerStack list, Salesforce query, HubSpot list (full read) and
#: HubSpot search (incremental read)
PAGE_SIZES = {"partnerstack": 250, "salesforce": 2000, "hubspot_list": 100, "hubspot_search": 200}
#: records per write call (PartnerStack has no batch endpoint: one PATCH per lead)
WRITE_BATCH = {"partnerstack": 1, "salesforce": 200, "hubspot": 100}

_PARTNERS = 50
_UNLIMITED = 1_000_000_000


# -- the sandbox, in its own process ---------------------------------------------------------


def _lead(index: int, partner: str, stamp: int) -> dict[str, Any]:
    return {
        "partner_key": partner,
        "email": f"prospect{index}@company{index % 9973}.example",
        "name": f"Pat{index % 97} Prospect{index}",
        "company": f"Company {index % 9973} Ltd",
        "status": "new",
        "created_at": stamp,
        "updated_at": stamp,
    }


def _seed_partnerstack(emulator: Any, count: int) -> None:
    """Seed ``count`` leads, one millisecond apart, all in the past."""
    partners = [{"email": f"partner{p}@partners.example", "first_name": "Partner",
                 "last_name": str(p)} for p in range(_PARTNERS)]
    emulator.seed({"partnerships": partners})
    keys = sorted(emulator.program.stores["partnerships"].items)
    base = int(time.time() * 1000) - count - 120_000
    chunk = 50_000
    for start in range(0, count, chunk):
        stop = min(count, start + chunk)
        emulator.seed({"leads": [_lead(i, keys[i % len(keys)], base + i)
                                 for i in range(start, stop)]})


def _landed(sandbox: Any) -> dict[str, dict[str, int]]:
    """Live records and distinct refsync ids in each CRM emulator."""
    salesforce = [r for r in sandbox.emulators["salesforce"].store.records["Lead"].values()
                  if not r.get("IsDeleted")]
    contacts = [r for r in sandbox.emulators["hubspot"].portal.store("contacts").records.values()
                if not r.archived]
    return {
        "salesforce": {"records": len(salesforce),
                       "distinct_keys": len({r.get("Refsync_Id__c") for r in salesforce
                                             if r.get("Refsync_Id__c")})},
        "hubspot": {"records": len(contacts),
                    "distinct_keys": len({r.properties.get("refsync_id") for r in contacts
                                          if r.properties.get("refsync_id")})},
    }


def _work_leads(emulator: Any, fraction: float) -> int:
    """Move every ``1/fraction``-th Salesforce Lead to ``Working - Contacted`` (sales work)."""
    from refsync.sandbox.salesforce.soql import format_datetime

    store = emulator.store
    if fraction <= 0:
        return 0
    step = max(1, round(1 / fraction))
    with emulator.lock:
        leads = sorted((r for r in store.records["Lead"].values() if not r.get("IsDeleted")),
                       key=lambda r: r["Id"])
        stamp = format_datetime(store.now())
        for lead in leads[::step]:
            store.update(store.objects["Lead"], lead, {"Status": "Working - Contacted"}, stamp)
    return len(leads[::step])


def _sandbox_main(conn: Connection, count: int, latency_ms: int, workdir: str) -> None:
    """The child process: start, configure and seed the emulators, then serve commands."""
    from refsync.sandbox.runner import start_sandbox

    sandbox = start_sandbox(seed=None, ports=dict.fromkeys(SYSTEMS, 0), latency_ms=latency_ms,
                            workdir=workdir)
    try:
        # a bench measures refsync, not the vendors' rate limits: lift them
        sandbox.emulators["hubspot"].configure({
            "ten_secondly_max": _UNLIMITED, "daily_max": _UNLIMITED,
            "search_per_second": _UNLIMITED})
        sandbox.emulators["salesforce"].configure({"daily_api_max": _UNLIMITED})
        started = time.perf_counter()
        _seed_partnerstack(sandbox.emulators["partnerstack"], count)
        seeded = time.perf_counter() - started
        for emulator in sandbox.emulators.values():
            emulator.calls.reset()
        conn.send({"urls": sandbox.urls, "ca_bundle": str(sandbox.ca_bundle),
                   "seed_seconds": seeded})
        while True:
            command, argument = conn.recv()
            if command == "stop":
                conn.send(None)
                return
            if command == "calls":
                conn.send({s: e.calls.snapshot() for s, e in sandbox.emulators.items()})
            elif command == "reset_calls":
                for emulator in sandbox.emulators.values():
                    emulator.calls.reset()
                conn.send(None)
            elif command == "work_leads":
                conn.send(_work_leads(sandbox.emulators["salesforce"], float(argument)))
            elif command == "landed":
                conn.send(_landed(sandbox))
            else:
                conn.send(ValueError(f"unknown command {command!r}"))
    finally:
        sandbox.stop()


class RemoteSandbox:
    """The emulators in a child process, seeded with ``count`` PartnerStack leads.

    Args:
        count: leads to seed.
        latency_ms: added to every API call's answer.
        workdir: where the TLS files go.
    """

    def __init__(self, count: int, latency_ms: int, workdir: Path) -> None:
        context = multiprocessing.get_context("spawn")
        self._conn, child = context.Pipe()
        self._process = context.Process(
            target=_sandbox_main, args=(child, count, latency_ms, str(workdir)), daemon=True)
        self._process.start()
        child.close()
        hello = self._conn.recv()
        self.urls: dict[str, str] = hello["urls"]
        self.ca_bundle = Path(hello["ca_bundle"])
        self.seed_seconds: float = hello["seed_seconds"]

    def ask(self, command: str, argument: Any = None) -> Any:
        """Send one command to the child and return its answer."""
        self._conn.send((command, argument))
        answer = self._conn.recv()
        if isinstance(answer, Exception):
            raise answer
        return answer

    def calls(self) -> dict[str, dict[str, Any]]:
        """``{system: {"total": N, "by_route": {...}}}`` since the last reset."""
        return dict(self.ask("calls"))

    def stop(self) -> None:
        """Stop the emulators and the child process."""
        if self._process.is_alive():
            with contextlib.suppress(EOFError, OSError):
                self.ask("stop")
            self._process.join(timeout=10)
        if self._process.is_alive():
            self._process.terminate()


# -- HTTP time, client side -------------------------------------------------------------------


class HttpTimer:
    """Adds up the time this process spends inside urllib3 sending requests and reading answers.

    Only the outermost call is timed (``urlopen`` and ``read`` may call each other).
    """

    def __init__(self) -> None:
        self.seconds = 0.0
        self.calls = 0
        self._depth = threading.local()
        self._originals: list[tuple[Any, str, Any]] = []

    def _wrap(self, owner: Any, name: str, *, counts: bool) -> None:
        original = getattr(owner, name)
        timer = self

        @functools.wraps(original)
        def timed(*args: Any, **kwargs: Any) -> Any:
            depth = getattr(timer._depth, "value", 0)
            if depth:
                return original(*args, **kwargs)
            timer._depth.value = 1
            started = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                timer.seconds += time.perf_counter() - started
                timer._depth.value = 0
                if counts:
                    timer.calls += 1

        setattr(owner, name, timed)
        self._originals.append((owner, name, original))

    def install(self) -> HttpTimer:
        """Start timing (class-level wrappers, for every client in the process)."""
        from urllib3.connectionpool import HTTPConnectionPool
        from urllib3.response import HTTPResponse

        self._wrap(HTTPConnectionPool, "urlopen", counts=True)
        self._wrap(HTTPResponse, "read", counts=False)
        self._wrap(HTTPResponse, "read_chunked", counts=False)
        return self

    def uninstall(self) -> None:
        """Put the original methods back."""
        for owner, name, original in reversed(self._originals):
            setattr(owner, name, original)
        self._originals.clear()

    def reset(self) -> None:
        """Start counting from zero."""
        self.seconds = 0.0
        self.calls = 0


# -- state-store time -------------------------------------------------------------------------


class StoreTimer:
    """Adds up the time the engine spends in the state store.

    Every public method of :class:`~refsync.state.store.StateTransaction` (reads, writes) and
    the opening and closing (``BEGIN``, ``COMMIT``) of ``StateStore.transaction`` and
    ``StateStore.snapshot`` are timed; only the outermost call counts. The figure splits engine
    time into the store's part and the rest (mapping, hashing, sync logic, client libraries).
    """

    def __init__(self) -> None:
        self.seconds = 0.0
        self._depth = 0
        self._originals: list[tuple[Any, str, Any]] = []

    def _timed(self, original: Callable[..., Any]) -> Callable[..., Any]:
        timer = self

        @functools.wraps(original)
        def timed(*args: Any, **kwargs: Any) -> Any:
            if timer._depth:
                return original(*args, **kwargs)
            timer._depth = 1
            started = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                timer.seconds += time.perf_counter() - started
                timer._depth = 0

        return timed

    def _timed_context(self, original: Callable[..., Any]) -> Callable[..., Any]:
        timer = self

        @functools.wraps(original)
        @contextlib.contextmanager
        def timed(*args: Any, **kwargs: Any) -> Any:
            manager = original(*args, **kwargs)
            started = time.perf_counter()
            opened = manager.__enter__()
            timer.seconds += time.perf_counter() - started
            try:
                yield opened
            except BaseException as exc:
                if not manager.__exit__(type(exc), exc, exc.__traceback__):
                    raise
            else:
                started = time.perf_counter()
                manager.__exit__(None, None, None)
                timer.seconds += time.perf_counter() - started

        return timed

    def install(self) -> StoreTimer:
        """Start timing (class-level wrappers)."""
        from refsync.state.store import StateStore, StateTransaction

        for name, member in vars(StateTransaction).items():
            if callable(member) and not name.startswith("_"):
                self._originals.append((StateTransaction, name, member))
                setattr(StateTransaction, name, self._timed(member))
        for name in ("transaction", "snapshot"):
            member = vars(StateStore)[name]
            self._originals.append((StateStore, name, member))
            setattr(StateStore, name, self._timed_context(member))
        return self

    def uninstall(self) -> None:
        """Put the original methods back."""
        for owner, name, original in reversed(self._originals):
            setattr(owner, name, original)
        self._originals.clear()


# -- API calls against the minimum ------------------------------------------------------------


def _kind(route: str) -> str:
    method, _, path = route.partition(" ")
    if "oauth" in path or "token" in path:
        return "auth"
    if method == "GET" or path.endswith("/search"):
        return "read"
    return "write"


def minimum_calls(reads: Mapping[str, int], writes: Mapping[str, int],
                  *, hubspot_full_read: bool) -> dict[str, dict[str, int]]:
    """The fewest API calls a sync can make, per system.

    Args:
        reads: records each system's stream must read (changed since the last run).
        writes: records that must be written to each system.
        hubspot_full_read: the HubSpot stream has no cursor yet (list paging, 100 a call)
            rather than an incremental search (200 a call).

    Every read stream takes at least one call even when nothing changed (the empty page that
    says so); Salesforce signs in once per run (one token call); PartnerStack (HTTP Basic) and
    HubSpot (private-app token) need no sign-in call.
    """
    pages = {
        "partnerstack": PAGE_SIZES["partnerstack"],
        "salesforce": PAGE_SIZES["salesforce"],
        "hubspot": PAGE_SIZES["hubspot_list" if hubspot_full_read else "hubspot_search"],
    }
    minimum: dict[str, dict[str, int]] = {}
    for system in SYSTEMS:
        read = max(1, math.ceil(reads.get(system, 0) / pages[system]))
        write = math.ceil(writes.get(system, 0) / WRITE_BATCH[system])
        auth = 1 if system == "salesforce" else 0
        minimum[system] = {"read": read, "write": write, "auth": auth,
                           "total": read + write + auth}
    return minimum


def call_table(calls: Mapping[str, Mapping[str, Any]],
               minimum: Mapping[str, Mapping[str, int]]) -> dict[str, Any]:
    """Calls per system and kind next to the minimum, with ratios (actual / minimum)."""
    systems: dict[str, Any] = {}
    totals = {"calls": 0, "minimum": 0, "write_calls": 0, "write_minimum": 0}
    for system in SYSTEMS:
        by_kind = {"read": 0, "write": 0, "auth": 0}
        for route, count in (calls.get(system, {}).get("by_route") or {}).items():
            by_kind[_kind(route)] += int(count)
        actual = sum(by_kind.values())
        least = minimum[system]
        systems[system] = {
            "calls": actual, "minimum": least["total"], "ratio": _ratio(actual, least["total"]),
            "by_kind": by_kind, "minimum_by_kind": {k: least[k] for k in ("read", "write", "auth")},
            "write_ratio": _ratio(by_kind["write"], least["write"]),
        }
        totals["calls"] += actual
        totals["minimum"] += least["total"]
        totals["write_calls"] += by_kind["write"]
        totals["write_minimum"] += least["write"]
    return {
        "systems": systems,
        "total": totals["calls"],
        "minimum": totals["minimum"],
        "ratio": _ratio(totals["calls"], totals["minimum"]),
        "write_ratio": _ratio(totals["write_calls"], totals["write_minimum"]),
    }


def _ratio(actual: int, least: int) -> float | None:
    if least == 0:
        return None if actual else 1.0
    return round(actual / least, 4)


# -- running syncs ----------------------------------------------------------------------------

@dataclass
class RunFigures:
    """What one timed sync run did."""

    label: str
    status: str
    wall_seconds: float
    http_seconds: float
    store_seconds: float
    cpu_seconds: float
    counts: dict[str, Any]
    calls: dict[str, Any]
    records: int
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def engine_seconds(self) -> float:
        """Wall time not spent waiting in HTTP calls."""
        return max(self.wall_seconds - self.http_seconds, 1e-9)

    @property
    def outside_store_seconds(self) -> float:
        """Engine time not spent in the state store."""
        return max(self.engine_seconds - self.store_seconds, 1e-9)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready figures."""
        def per_s(seconds: float) -> float | None:
            return round(self.records / seconds, 1) if self.records else None

        return {
            "label": self.label, "status": self.status, "records": self.records,
            "wall_seconds": round(self.wall_seconds, 3),
            "http_seconds": round(self.http_seconds, 3),
            "engine_seconds": round(self.engine_seconds, 3),
            "store_seconds": round(self.store_seconds, 3),
            "cpu_seconds": round(self.cpu_seconds, 3),
            "records_per_s": per_s(self.wall_seconds),
            "engine_records_per_s": per_s(self.engine_seconds),
            "outside_store_records_per_s": per_s(self.outside_store_seconds),
            "counts": self.counts, "api_calls": self.calls, **self.extra,
        }


class SyncHarness:
    """A sandbox child, a configuration and a state store: everything a bench run needs.

    Args:
        count: PartnerStack leads to seed.
        latency_ms: per-call latency of the emulators.
        state_url: the state store (SQLite in the work directory when omitted).
        prm_writeback: also write the refsync id back to PartnerStack (one call per lead).
    """

    def __init__(self, count: int, *, latency_ms: int = 0, state_url: str | None = None,
                 prm_writeback: bool = False, profile: str | None = None) -> None:
        from refsync.logging import configure_logging
        from refsync.sandbox.config import sandbox_config

        configure_logging(level="warning", fmt="json")
        self.count = count
        self.prm_writeback = prm_writeback
        self.profile = profile
        self.workdir = Path(tempfile.mkdtemp(prefix="refsync-bench-"))
        self.sandbox = RemoteSandbox(count, latency_ms, self.workdir / "tls")
        self.state_url = state_url or f"sqlite:///{self.workdir / 'state.db'}"
        self.config_path = self.workdir / "refsync.yaml"
        self.config_path.write_text(sandbox_config(
            self.sandbox.urls, self.sandbox.ca_bundle, self.state_url,
            comment="A refsync configuration for the benchmarks: the sandbox, rate limits lifted.",
            instance="refsync-bench", env_prefix="BENCH",
            settings={"partnerstack": {"requests_per_minute": 100_000_000},
                      "salesforce": {"calls_per_second": 1_000_000},
                      "hubspot": {"rate_limit_max": 100_000_000, "search_per_second": 1_000_000}},
            streams={"partnerstack.leads": {"direction": "both" if prm_writeback else "in"}},
            top={"logging": {"level": "warning"}, "rules": None},
        ), "utf-8")
        self.timer = HttpTimer().install()
        self.store_timer = StoreTimer().install()

    @property
    def state_backend(self) -> str:
        """``sqlite`` or ``postgresql``."""
        return self.state_url.split(":", 1)[0].split("+", 1)[0]

    def run(self, label: str, records: int, reads: Mapping[str, int],
            writes: Mapping[str, int]) -> RunFigures:
        """One ``refsync sync`` (a fresh engine, as a scheduled run would build), timed.

        Args:
            label: the run's name in the report.
            records: referrals the run is about (for the per-second figures).
            reads: records each system must read (changed there since the last run).
            writes: records that must be written to each system.
        """
        from refsync.config import load_config
        from refsync.connectors.base import ConnectorContext
        from refsync.state import StateStore
        from refsync.sync.wiring import build_engine

        loaded = load_config(self.config_path)
        with StateStore(loaded.config.state.url) as store:
            # HubSpot lists (100 a call) until its stream has a modstamp cursor, then searches
            cursor = store.get_cursor("hubspot", "contacts") or {}
            minimum = minimum_calls(reads, writes, hubspot_full_read=not cursor.get("modstamp"))
            engine = build_engine(loaded, store,
                                  context_factory=lambda system: ConnectorContext(system=system))
            self.sandbox.ask("reset_calls")
            self.timer.reset()
            self.store_timer.seconds = 0.0
            profiler = cProfile.Profile() if self.profile else None
            cpu = time.process_time()
            started = time.perf_counter()
            if profiler is not None:
                profiler.enable()
            report = engine.run(trigger="bench")
            if profiler is not None:
                profiler.disable()
            wall = time.perf_counter() - started
            cpu = time.process_time() - cpu
            http = self.timer.seconds
            in_store = self.store_timer.seconds
            if profiler is not None and self.profile:
                profiler.dump_stats(f"{self.profile}.{label}")
        calls = call_table(self.sandbox.calls(), minimum)
        return RunFigures(label, report.status, wall, http, in_store, cpu, report.counts, calls,
                          records)

    def landed(self) -> dict[str, dict[str, int]]:
        """Live records and distinct refsync ids in each CRM emulator."""
        return dict(self.sandbox.ask("landed"))

    def work_leads(self, fraction: float) -> int:
        """Change the status of ``fraction`` of the Salesforce Leads; return how many."""
        return int(self.sandbox.ask("work_leads", fraction))

    def close(self) -> None:
        """Stop the sandbox and remove the work directory."""
        self.timer.uninstall()
        self.store_timer.uninstall()
        self.sandbox.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)


def backfill_plan(count: int, *, prm_writeback: bool) -> tuple[dict[str, int], dict[str, int]]:
    """Reads and writes of the first sync: every lead read, every referral written to each CRM."""
    writes = dict.fromkeys(CRMS, count)
    if prm_writeback:
        writes["partnerstack"] = count
    return {"partnerstack": count}, writes


# -- reporting --------------------------------------------------------------------------------


def peak_rss_mb() -> float:
    """Peak resident memory of this process (refsync's side; the emulators run elsewhere)."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def machine() -> dict[str, Any]:
    """CPU model, cores and Python version, described generically."""
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": model, "cores": os.cpu_count(), "arch": platform.machine(),
            "python": platform.python_version(), "os": platform.system()}


def print_run(data: Mapping[str, Any], say: Callable[[str], None] = print) -> None:
    """Print one run (:meth:`RunFigures.as_dict`) as a readable block."""
    calls = data["api_calls"]
    say(f"{data['label']}: {data['records']:,} referrals, status {data['status']}")
    say(f"  wall {data['wall_seconds']:.2f} s, HTTP wait {data['http_seconds']:.2f} s, "
        f"engine {data['engine_seconds']:.2f} s (state store {data['store_seconds']:.2f} s), "
        f"CPU {data['cpu_seconds']:.2f} s")
    if data["records"]:
        say(f"  end to end {data['records_per_s']:>12,.0f} referrals/s")
        say(f"  engine only {data['engine_records_per_s']:>11,.0f} referrals/s")
        say(f"  engine outside the state store {data['outside_store_records_per_s']:>8,.0f} "
            "referrals/s")
    say(f"  {'system':<13}{'calls':>8}{'minimum':>9}{'ratio':>7}   reads/writes/auth (minimum)")
    for system, row in calls["systems"].items():
        kinds, least = row["by_kind"], row["minimum_by_kind"]
        say(f"  {system:<13}{row['calls']:>8,}{row['minimum']:>9,}{_fmt(row['ratio']):>7}   "
            f"{kinds['read']}/{kinds['write']}/{kinds['auth']} "
            f"({least['read']}/{least['write']}/{least['auth']})")
    say(f"  {'all':<13}{calls['total']:>8,}{calls['minimum']:>9,}"
        f"{_fmt(calls['ratio']):>7}   writes ratio {_fmt(calls['write_ratio'])}")


def _fmt(ratio: float | None) -> str:
    return "-" if ratio is None else f"{ratio:.2f}"
