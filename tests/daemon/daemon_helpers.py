"""Helpers of the daemon tests, in a module of their own name so that no other directory's
``conftest`` can shadow them when several test directories run in one command."""

from __future__ import annotations

import io
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import structlog

from refsync.config import load_config
from refsync.daemon import Daemon
from refsync.daemon.leases import SYNC_LEASE
from refsync.logging import configure_logging
from refsync.sandbox.faults import FaultRule
from refsync.sandbox.runner import RunningSandbox
from refsync.state import LeaseToken, StateStore

SCHEDULE = """
schedules:
  - name: often
    every: 1m
daemon:
  http_port: 0
  lease_ttl: 3s
"""
"""A job every minute, a quick lease and a free HTTP port: the in-process daemon tests'."""
TICK = datetime(2026, 12, 1, 10, 0, 30, tzinfo=UTC)
"""A moment 30 s into the 10:00 tick of ``often``."""

SLOW_SECOND_PAGE = FaultRule(method="GET", path="leads", after=1, delay_ms=4000)
"""PartnerStack's second page of leads (and every later one) takes 4 s."""

WriteConfig = Callable[..., Path]
"""The ``write_config`` fixture: writes a sandbox config and returns its path."""


def run_left_by_a_dead_daemon(
    store: StateStore, *, scheduled_for: datetime | None = None
) -> tuple[LeaseToken, str]:
    """The sync lease of "dead-daemon", expired ten minutes ago, and the run of job ``often``
    it left ``running``."""
    past = datetime.now(UTC) - timedelta(minutes=10)
    lease = store.acquire_lease(SYNC_LEASE, "dead-daemon", timedelta(seconds=3), now=past)
    assert lease is not None
    run_id = store.start_run(trigger="schedule", instance="dead-daemon", job="often",
                             scheduled_for=scheduled_for)
    return lease, run_id


def build_daemon(path: Path) -> tuple[Daemon, StateStore]:
    """An in-process daemon for the config at ``path`` (not started) and its state store."""
    loaded = load_config(path)
    store = StateStore(loaded.config.state.url)
    return Daemon(loaded, store), store


@contextmanager
def json_log_lines() -> Iterator[Callable[[], list[dict[str, Any]]]]:
    """Log the whole process as JSON lines into memory (as ``refsync run`` logs), and give a
    function returning the lines logged so far; the logging set-up is put back afterwards."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    config = structlog.get_config()
    stream = io.StringIO()
    configure_logging(fmt="json", stream=stream)
    try:
        yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
        structlog.configure(**config)


def assert_each_referral_once(sandbox: RunningSandbox, links: dict[str, int]) -> None:
    """Every referral refsync wrote is in Salesforce and HubSpot exactly once."""
    leads = [r["Refsync_Id__c"] for r in sandbox.emulators["salesforce"].records("Lead")
             if r.get("Refsync_Id__c")]
    assert len(leads) == len(set(leads)) == links["salesforce"] > 0
    contacts = [r["properties"]["refsync_id"]
                for r in sandbox.emulators["hubspot"].records("contacts")
                if r.get("properties", {}).get("refsync_id")]
    assert len(contacts) == len(set(contacts)) == links["hubspot"] > 0


def wait_for(condition: Callable[[], object], seconds: float, what: str) -> None:
    """Wait until ``condition()`` holds, failing the test after ``seconds``."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def tick_waiting_for_its_second_page(
    sandbox: RunningSandbox, path: Path
) -> tuple[Daemon, StateStore, threading.Thread]:
    """An in-process daemon for the config at ``path`` (its PartnerStack pages of 20 leads)
    and the thread running a tick of ``often``, once that tick waits for its second page of
    leads, which takes 4 s."""
    faults = sandbox.emulators["partnerstack"].faults
    faults.add([SLOW_SECOND_PAGE])
    daemon, store = build_daemon(path)
    worker = threading.Thread(target=daemon.run_tick, args=(daemon.jobs["often"], TICK))
    worker.start()
    wait_for(lambda: faults.snapshot()["injected"].get("delay"), 30,
             "the run to wait for its second page")
    return daemon, store, worker


def slow_down(sandbox: RunningSandbox, delay_ms: int = 100) -> None:
    """Slow down reads everywhere and batch writes (PartnerStack's one-by-one writes stay fast)."""
    for system, emulator in sandbox.emulators.items():
        method = "GET" if system == "partnerstack" else None
        emulator.faults.add([FaultRule(method=method, path="", delay_ms=delay_ms)])
