"""`refsync run` as real processes: two daemons on one PostgreSQL database, kill -9 take-over,
SIGTERM mid-run. The sandbox runs in the test process; the daemons talk to it over loopback."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
import requests

from refsync.sandbox.faults import FaultRule
from refsync.sandbox.runner import RunningSandbox
from refsync.state import StateStore
from tests.daemon.daemon_helpers import (
    WriteConfig,
    assert_each_referral_once,
    slow_down,
    wait_for,
)

SCHEDULE = """
schedules:
  - name: often
    every: 1s
daemon:
  lease_ttl: 3s
  shutdown_timeout: 10s
"""
# Small pages and batches, and 100 ms per call, so that a run lasts a few seconds.
SLOW_STREAMS: dict[str, Any] = {
    "settings": {"partnerstack": {"page_size": 20}},
    "streams": {"salesforce.leads": {"batch_size": 25}, "hubspot.contacts": {"batch_size": 25}},
}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class DaemonProcess:
    """One `refsync run` subprocess with its HTTP port and log file."""

    def __init__(self, config: Path, name: str) -> None:
        self.port = _free_port()
        self.log = config.parent / f"{name}.log"
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "refsync", "--log-format", "json", "run", "-c", str(config),
             "--http-port", str(self.port)],
            stdout=self.log.open("wb"), stderr=subprocess.STDOUT, env=env,
        )
        wait_for(self._listening, 30, f"{name} to serve /healthz")

    def _listening(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"daemon exited early:\n{self.log.read_text()}")
        try:
            return requests.get(f"http://127.0.0.1:{self.port}/healthz", timeout=1).ok
        except requests.ConnectionError:
            return False

    def metrics(self) -> str:
        return requests.get(f"http://127.0.0.1:{self.port}/metrics", timeout=5).text

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        return self.process.wait(timeout=timeout)


@contextmanager
def daemons(config: Path, *names: str) -> Iterator[list[DaemonProcess]]:
    started: list[DaemonProcess] = []
    try:
        for name in names:
            started.append(DaemonProcess(config, name))
        yield started
    finally:
        for daemon in started:
            if daemon.process.poll() is None:
                daemon.process.kill()
                daemon.process.wait()


def _slow_config(write_config: WriteConfig, state_url: str, extra: str = SCHEDULE) -> Path:
    return write_config(state_url, extra, **SLOW_STREAMS)


@pytest.mark.postgres
@pytest.mark.slow
def test_two_daemons_on_one_database_never_overlap_and_run_each_tick_once(
    sandbox: RunningSandbox, write_config: WriteConfig, postgres_server: object
) -> None:
    url = postgres_server.create_database()  # type: ignore[attr-defined]
    config = write_config(url, SCHEDULE)
    seconds = float(os.environ.get("REFSYNC_TEST_DAEMON_SECONDS", "60"))
    with daemons(config, "a", "b") as (first, second):
        time.sleep(seconds)
        metrics = first.metrics() + second.metrics()
        assert first.stop() == 0 and second.stop() == 0
    with StateStore(url, migrate=False) as store:
        runs = sorted(store.list_runs(100_000, job="often"), key=lambda r: r["started_at"])
        links = store.link_counts()
    assert len(runs) >= seconds / 4, f"only {len(runs)} runs in {seconds:.0f} s"
    ticks = [r["scheduled_for"] for r in runs if r["scheduled_for"] is not None]
    assert len(ticks) == len(set(ticks)), "a tick ran twice"
    # a run stopped with its daemon gives its tick up to the other daemon, and says so
    released = [r for r in runs if r["scheduled_for"] is None]
    assert all(r["status"] in ("interrupted", "abandoned") and r["counts"]["tick"]
               for r in released), released
    assert all(r["status"] in ("succeeded", "partial", "interrupted") for r in runs), runs
    for earlier, later in pairwise(runs):
        assert earlier["finished_at"] is not None
        assert earlier["finished_at"] <= later["started_at"], ("overlap", earlier, later)
    instances = {r["instance"] for r in runs}
    print("runs by instance", {i: sum(r["instance"] == i for r in runs) for i in instances})
    assert instances <= {line.split('instance="')[1].split('"')[0]
                         for line in metrics.splitlines()
                         if line.startswith("refsync_daemon_info{")}
    assert "refsync_runs_skipped_total" in metrics
    assert_each_referral_once(sandbox, links)


@pytest.mark.postgres
@pytest.mark.slow
def test_kill_9_of_the_lease_holder_mid_run_is_taken_over_and_nothing_is_doubled(
    sandbox: RunningSandbox, write_config: WriteConfig, postgres_server: object
) -> None:
    url = postgres_server.create_database()  # type: ignore[attr-defined]
    config = _slow_config(write_config, url)
    slow_down(sandbox)
    reader = StateStore(url)
    with daemons(config, "a", "b") as (first, second):
        wait_for(lambda: any(r["status"] == "running" for r in reader.list_runs(5)), 30,
                 "a run to start")
        wait_for(lambda: reader.get_cursor("partnerstack", "leads") is not None, 30,
                 "the first page to commit")
        (running,) = [r for r in reader.list_runs(5) if r["status"] == "running"]
        holder = reader.get_lease("sync")
        victim = first if holder and str(first.process.pid) in holder["holder"] else second
        survivor = second if victim is first else first
        assert str(victim.process.pid) in running["instance"]
        victim.process.kill()  # SIGKILL: no goodbye, the lease stays until it expires
        victim.process.wait()

        def survivor_finished() -> bool:
            done = [r for r in reader.list_runs(50)
                    if str(survivor.process.pid) in r["instance"]
                    and r["status"] in ("succeeded", "partial")
                    and r["started_at"] > running["started_at"]]
            return bool(done) and not reader.backlog()["outbox"]

        wait_for(survivor_finished, 90, "the other daemon to take over and finish")
        assert reader.get_run(running["id"])["status"] == "abandoned"
        assert "took over" in reader.get_run(running["id"])["error"]
        assert "refsync_lease_takeovers_total 1.0" in survivor.metrics()
        assert survivor.stop() == 0
    counts = reader.status_counts()
    links = reader.link_counts()
    reader.close()
    assert sum(counts.values()) > 0
    assert_each_referral_once(sandbox, links)


def test_sigterm_mid_run_commits_the_page_marks_the_run_interrupted_and_resumes(
    sandbox: RunningSandbox, write_config: WriteConfig, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'state.db'}"
    config = _slow_config(write_config, url)
    slow_down(sandbox)
    reader = StateStore(url)
    leads = sandbox.emulators["partnerstack"]
    with daemons(config, "only") as (daemon,):
        wait_for(lambda: reader.get_cursor("partnerstack", "leads") is not None, 30,
                 "the first page to commit")
        # the process must be gone well within shutdown_timeout (10 s) plus start-up slack
        assert daemon.stop(signal.SIGTERM, timeout=20) == 0
    (run,) = reader.list_runs()
    assert run["status"] == "interrupted", run
    cursor = reader.get_cursor("partnerstack", "leads")
    referrals_then = sum(reader.status_counts().values())
    total = len(leads.records("leads"))
    assert 0 < referrals_then < total
    log = (tmp_path / "only.log").read_text()
    assert '"status": "interrupted"' in log and "duration_s" in log
    # the next start reads on from the committed cursor, not from the beginning
    before = leads.calls.snapshot()["by_route"].copy()
    with daemons(config, "again") as (again,):
        wait_for(lambda: any(r["status"] in ("succeeded", "partial")
                             for r in reader.list_runs(5)), 60, "the next run to finish")
        assert again.stop() == 0
    after = leads.calls.snapshot()["by_route"]
    list_route = "GET /api/v2/{resource}"
    pages_read = after[list_route] - before.get(list_route, 0)
    assert pages_read < (total + 19) // 20, (pages_read, total)
    assert cursor is not None
    assert_each_referral_once(sandbox, reader.link_counts())
    reader.close()


def test_a_run_stuck_in_a_remote_call_cannot_hold_up_shutdown(
    sandbox: RunningSandbox, write_config: WriteConfig, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'state.db'}"
    config = _slow_config(write_config, url, SCHEDULE.replace("10s", "2s"))
    # the second page of PartnerStack leads never answers
    sandbox.emulators["partnerstack"].faults.add([FaultRule(method="GET", path="leads",
                                                            after=1, hang=True)])
    reader = StateStore(url)
    with daemons(config, "stuck") as (daemon,):
        wait_for(lambda: reader.get_cursor("partnerstack", "leads") is not None, 30,
                 "the first page to commit")
        time.sleep(0.3)  # now waiting for the page that never comes
        assert daemon.stop(signal.SIGTERM, timeout=15) == 1  # gave up after shutdown_timeout
    # before exiting, the daemon closed its run's books: no run shows running in a dead process
    (stuck,) = reader.list_runs()
    assert stuck["status"] == "abandoned", stuck
    assert f":{daemon.process.pid} exited after its shutdown timeout of 2 s before the run " \
        "stopped" in stuck["error"]
    log = (tmp_path / "stuck.log").read_text()
    assert "run did not stop in time; exiting anyway" in log
    # the next daemon on the file takes the lease at once and continues from the committed page
    sandbox.emulators["partnerstack"].faults.clear()
    with daemons(config, "next") as (again,):
        wait_for(lambda: any(r["status"] in ("succeeded", "partial")
                             for r in reader.list_runs(5)), 60, "the next run to finish")
        assert again.stop() == 0
    assert_each_referral_once(sandbox, reader.link_counts())
    reader.close()


def test_a_second_signal_exits_at_once_and_marks_the_run_left_behind_abandoned(
    sandbox: RunningSandbox, write_config: WriteConfig, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'state.db'}"
    config = _slow_config(write_config, url)
    # the second page of PartnerStack leads never answers: the first signal cannot end the run
    sandbox.emulators["partnerstack"].faults.add([FaultRule(method="GET", path="leads",
                                                            after=1, hang=True)])
    reader = StateStore(url)
    with daemons(config, "twice") as (daemon,):
        wait_for(lambda: reader.get_cursor("partnerstack", "leads") is not None, 30,
                 "the first page to commit")
        time.sleep(0.3)  # now waiting for the page that never comes
        daemon.process.send_signal(signal.SIGTERM)
        time.sleep(1)
        assert daemon.process.poll() is None, "the first signal did not wait for the page"
        # well before the shutdown timeout (10 s)
        assert daemon.stop(signal.SIGTERM, timeout=5) == 128 + signal.SIGTERM
    (left,) = reader.list_runs()
    assert left["status"] == "abandoned", left
    assert f":{daemon.process.pid} exited at once on a second signal (SIGTERM) before the run " \
        "stopped" in left["error"]
    reader.close()
