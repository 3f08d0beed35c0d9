"""``refsync demo``: sandbox, three syncs and sales activity, end to end with real clients;
a temporary work directory is removed afterwards, a named one is kept and not reused."""

from __future__ import annotations

import importlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import refsync.sync.demo
from refsync.cli import cli
from refsync.state import StateStore
from refsync.sync.demo import DemoSummary, run_demo


@pytest.fixture
def temporary_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Where this test's temporary directories are made, to see what is left in it."""
    root = tmp_path / "tmp"
    root.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(root))
    return root


def test_demo_syncs_referrals_everywhere_and_brings_status_back(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["demo", "--json", "--workdir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    first, second, third = summary["runs"]
    assert first["counts"]["created"] == summary["referrals"] > 0
    assert summary["records_by_system"]["partnerstack"] == summary["referrals"]
    assert summary["records_by_system"]["salesforce"] > 0
    assert summary["records_by_system"]["hubspot"] > 0
    assert summary["duplicates"] >= 1
    assert summary["status_updates_to_partners"] > 0, "CRM progress must reach the partners"
    assert second["counts"]["updated"] > 0
    assert third["counts"]["written"] == 0 and third["counts"]["created"] == 0
    with StateStore(f"sqlite:///{tmp_path / 'refsync.db'}") as store:
        duplicates = store.list_referrals(status="duplicate")
        assert duplicates and "already referred by partner" in duplicates[0]["status_reason"]
        assert all(run["status"] != "running" for run in store.list_runs())
        # the summary counts records awaiting a person, each once however often it failed
        assert summary["quarantined"] == len(store.list_quarantine()) >= 1
        # the demo's customers and the prospects its CRM already has open deals with
        reasons = [r["status_reason"] or "" for r in store.list_referrals(status="rejected")]
        assert any("is already a customer" in reason for reason in reasons)
        assert any("has an open opportunity" in reason for reason in reasons)
    assert summary["customers_rejected"] >= 1 and summary["open_deals_rejected"] >= 1
    assert summary["customers_rejected"] + summary["open_deals_rejected"] == \
        sum(run["counts"].get("rejected", 0) for run in (first, second, third))

    assert summary["config"] == str((tmp_path / "refsync.yaml").resolve())

    # a second demo in the same directory would sync nothing and report the first one's counts
    database = (tmp_path / "refsync.db").read_bytes()
    again = CliRunner().invoke(cli, ["demo", "--workdir", str(tmp_path)])
    assert again.exit_code == 2 and again.stdout == ""
    assert again.stderr == (
        f"error: {tmp_path} already holds a demo state database ({tmp_path / 'refsync.db'}): a "
        "demo there would sync nothing new and report the earlier demo's referrals — use an "
        f"empty or new directory, or delete {tmp_path / 'refsync.db'}\n")
    assert (tmp_path / "refsync.db").read_bytes() == database


def test_a_workdir_holding_a_state_database_is_refused_before_anything_starts(
    tmp_path: Path,
) -> None:
    (tmp_path / "refsync.db").write_bytes(b"")
    result = CliRunner().invoke(cli, ["--log-format", "json", "demo", "--workdir", str(tmp_path)])
    assert result.exit_code == 2 and result.stdout == ""
    (event,) = [json.loads(line) for line in result.stderr.splitlines()]
    assert event["event"] == "command failed"
    assert "already holds a demo state database" in event["error"]
    assert "use an empty or new directory" in event["error"]
    assert sorted(path.name for path in tmp_path.iterdir()) == ["refsync.db"]


def test_without_workdir_nothing_is_left_behind_and_no_config_is_named(
    temporary_root: Path,
) -> None:
    result = CliRunner().invoke(cli, ["demo"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "sandbox started: PartnerStack (PRM), Salesforce and HubSpot with demo data"
    assert lines[-1].startswith("API calls used: ")
    assert "Config" not in result.stdout and "refsync-demo-" not in result.stdout
    assert list(temporary_root.iterdir()) == []


def test_an_interrupted_demo_removes_its_temporary_directory(
    temporary_root: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    def interrupted(*args: Any, **kwargs: Any) -> None:
        (made,) = temporary_root.iterdir()  # the demo is under way in it
        assert made.name.startswith("refsync-demo-")
        raise KeyboardInterrupt

    monkeypatch.setattr(refsync.sync.demo, "build_engine", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_demo()
    assert list(temporary_root.iterdir()) == []


def test_a_kept_workdir_is_named_with_how_to_look_around(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    def ran(workdir: Path | None, **_: Any) -> DemoSummary:
        assert workdir == tmp_path
        return DemoSummary(config_path=str(tmp_path / "refsync.yaml"))

    # the package's ``demo`` attribute is the command, so the module is looked up by name
    monkeypatch.setattr(importlib.import_module("refsync.cli.demo"), "run_demo", ran)
    result = CliRunner().invoke(cli, ["demo", "--workdir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[-1] == (
        f"Config and state database kept in {tmp_path}: look around with "
        f"`refsync -c {tmp_path / 'refsync.yaml'} referrals`, `runs` and `errors`")


def test_a_demo_stopped_by_sigterm_removes_its_temporary_directory(tmp_path: Path) -> None:
    root = tmp_path / "tmp"
    root.mkdir()
    demo = subprocess.Popen([sys.executable, "-m", "refsync", "demo"], cwd=tmp_path,
                            env={**os.environ, "TMPDIR": str(root)},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not any((made / "refsync.yaml").exists() for made in root.iterdir()):
            assert demo.poll() is None and time.monotonic() < deadline, demo.communicate()
            time.sleep(0.05)
        demo.send_signal(signal.SIGTERM)
        demo.communicate(timeout=60)
    finally:
        demo.kill()
    assert demo.returncode == 128 + signal.SIGTERM
    assert list(root.iterdir()) == []
