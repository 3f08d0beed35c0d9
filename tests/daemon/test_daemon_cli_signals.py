"""`refsync sync` as a real process stopped by SIGTERM (systemd, `timeout`) or Ctrl-C: it stops
the way a daemon stops its run, and `refsync runs` says so. The sandbox runs in the test
process, slowed down so that a sync lasts a few seconds."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from refsync.sandbox.faults import FaultRule
from refsync.sandbox.runner import RunningSandbox
from refsync.state import StateStore
from tests.daemon.daemon_helpers import WriteConfig, slow_down, wait_for

SLOW_STREAMS: dict[str, Any] = {
    "settings": {"partnerstack": {"page_size": 20}},
    "streams": {"salesforce.leads": {"batch_size": 25}, "hubspot.contacts": {"batch_size": 25}},
}
"""Small pages and batches: with 100 ms a call, a sync of the sandbox lasts several seconds."""


@contextmanager
def _manual_sync(config: Path) -> Iterator[subprocess.Popen[bytes]]:
    """`refsync sync` on ``config`` as a process of its own (killed if a test leaves it)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "refsync", "sync", "-c", str(config)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate()


def _runs(config: Path) -> list[dict[str, Any]]:
    """`refsync runs --json`, as a person would look at them after the stop."""
    listed = subprocess.run([sys.executable, "-m", "refsync", "runs", "-c", str(config),
                             "--json"], capture_output=True, check=True)
    return list(json.loads(listed.stdout))


def _first_page_committed(reader: StateStore, process: subprocess.Popen[bytes]) -> bool:
    if process.poll() is not None:
        raise AssertionError(f"refsync sync exited early: {process.communicate()[0]!r}")
    return reader.get_cursor("partnerstack", "leads") is not None


@pytest.mark.parametrize(("signum", "named"), [(signal.SIGTERM, "SIGTERM"),
                                               (signal.SIGINT, "Ctrl-C (SIGINT)")])
def test_a_signal_stops_a_manual_sync_after_its_page_and_records_it_interrupted(
    sandbox: RunningSandbox, write_config: WriteConfig, tmp_path: Path, signum: int, named: str
) -> None:
    url = f"sqlite:///{tmp_path / 'state.db'}"
    config = write_config(url, **SLOW_STREAMS)
    slow_down(sandbox)
    total = len(sandbox.emulators["partnerstack"].records("leads"))
    with StateStore(url) as reader, _manual_sync(config) as process:
        wait_for(lambda: _first_page_committed(reader, process), 60,
                 "the first page to commit")
        process.send_signal(signum)
        output = process.communicate(timeout=30)[0].decode()
        referrals = sum(reader.status_counts().values())
    assert process.returncode == 4, output  # what `refsync sync` exits for an interrupted run
    (run,) = _runs(config)
    assert run["status"] == "interrupted", run
    assert f"refsync sync was stopped by {named}" in run["error"], run
    assert "the next run resumes from there" in run["error"]
    assert run["finished_at"] is not None
    assert 0 < run["counts"]["read"] == referrals < total, (run["counts"], total)
    assert f"run {run['id'][:8]} interrupted" in output and f"stopped by {named}" in output
    assert "Traceback" not in output and "KeyboardInterrupt" not in output


def test_a_second_signal_stops_a_manual_sync_at_once_and_still_records_it(
    sandbox: RunningSandbox, write_config: WriteConfig, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'state.db'}"
    config = write_config(url, **SLOW_STREAMS)
    # the second page of PartnerStack leads never answers: the first signal cannot end the run
    sandbox.emulators["partnerstack"].faults.add([FaultRule(method="GET", path="leads",
                                                            after=1, hang=True)])
    with StateStore(url) as reader, _manual_sync(config) as process:
        wait_for(lambda: _first_page_committed(reader, process), 60,
                 "the first page to commit")
        time.sleep(0.3)  # now waiting for the page that never comes
        process.send_signal(signal.SIGTERM)
        time.sleep(1)
        assert process.poll() is None, "the first signal did not wait for the page"
        process.send_signal(signal.SIGTERM)
        output = process.communicate(timeout=15)[0].decode()
        committed = sum(reader.status_counts().values())
    assert process.returncode == 128 + signal.SIGTERM, output
    (run,) = _runs(config)
    assert run["status"] == "interrupted", run
    assert "refsync sync was stopped by SIGTERM, then at once by a second signal (SIGTERM)" \
        in run["error"], run
    assert "the page or batch in progress was not committed" in run["error"]
    assert run["counts"]["read"] == committed == 20, run["counts"]  # the first page only
    assert "Traceback" not in output
