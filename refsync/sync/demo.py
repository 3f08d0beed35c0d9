"""``refsync demo``: the whole product on the local sandbox, with no credentials.

Starts the emulators in-process with demo data, writes a working configuration into a work
directory, runs a sync, simulates sales activity in the CRMs, syncs twice more, and returns a
summary a revops person can read. The work directory is a temporary one, removed when the demo
ends, unless the caller names one to keep.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from refsync.config import load_config
from refsync.sandbox.config import sandbox_config
from refsync.sandbox.runner import start_sandbox
from refsync.sandbox.tls import TLSMaterial
from refsync.state import StateStore
from refsync.sync.engine import RunReport
from refsync.sync.wiring import build_engine

__all__ = ["DemoSummary", "DemoWorkdirInUse", "demo_config", "refuse_used_workdir", "run_demo",
           "written_files"]

CONFIG_NAME = "refsync.yaml"
STATE_NAME = "refsync.db"
TLS_NAME = "tls"
_STATE_SIDE_FILES = ("-journal", "-wal", "-shm")
"""What SQLite writes beside the state database while the demo runs."""


class DemoWorkdirInUse(ValueError):
    """The work directory already holds a file the demo would write.

    A demo state database: a second demo there would sync nothing (its fresh emulators'
    records are older than the stored cursors) and report the first demo's referrals. Any
    other (a ``refsync.yaml``, TLS files, a file named ``tls`` where the demo makes its TLS
    directory): the demo would overwrite it.
    """


@dataclass
class DemoSummary:
    """What the demo did, in the words of a referral program."""

    runs: list[RunReport] = field(default_factory=list)
    referrals: int = 0
    by_status: dict[str, int] = field(default_factory=dict)
    records_by_system: dict[str, int] = field(default_factory=dict)
    status_updates_to_partners: int = 0
    duplicates: int = 0
    customers_rejected: int = 0
    open_deals_rejected: int = 0
    conflicts: int = 0
    quarantined: int = 0
    api_calls: dict[str, int] = field(default_factory=dict)
    #: the kept config's path; ``None`` when the demo ran in a temporary directory, now gone
    config_path: str | None = None


def demo_config(urls: dict[str, str], ca_bundle: Path, state: Path) -> str:
    """The demo's configuration text for a running sandbox."""
    return sandbox_config(
        urls, ca_bundle, f"sqlite:///{state}", instance="refsync-demo", env_prefix="DEMO",
        comment="Written by `refsync demo`: the sandbox's URLs and fixed test credentials.")


def run_demo(
    workdir: Path | None = None, *, say: Callable[[str], None] = lambda _line: None
) -> DemoSummary:
    """Run the demo and summarise what it did.

    Args:
        workdir: where to keep the config, the state database and the TLS files (the summary's
            ``config_path`` says where the config is); without it they live in a temporary
            directory removed when the demo ends, however it ends.
        say: receives a line per step.

    Raises:
        DemoWorkdirInUse: ``workdir`` holds a file the demo writes already (nothing started).
    """
    if workdir is None:
        directory = Path(tempfile.mkdtemp(prefix="refsync-demo-")).resolve()
        try:
            return _run_in(directory, say)
        finally:
            shutil.rmtree(directory, ignore_errors=True)
    directory = Path(workdir).resolve()
    refuse_used_workdir(directory)
    directory.mkdir(parents=True, exist_ok=True)
    summary = _run_in(directory, say)
    summary.config_path = str(directory / CONFIG_NAME)
    return summary


def refuse_used_workdir(directory: Path) -> None:
    """Refuse a work directory a demo has run in already, or holding any file a demo writes
    (a user's own ``refsync.yaml`` among them) or anything but a directory where it makes its
    TLS directory, before anything is written.

    Raises:
        DemoWorkdirInUse: ``directory`` holds a demo state database, or another file the demo
            would overwrite.
    """
    state = directory / STATE_NAME
    if state.exists():
        raise DemoWorkdirInUse(
            f"{directory} already holds a demo state database ({state}): a demo there would "
            "sync nothing new and report the earlier demo's referrals — use an empty or new "
            f"directory, or delete {state}")
    held = [str(path) for path in written_files(directory) if os.path.lexists(path)]
    tls = directory / TLS_NAME
    if os.path.lexists(tls) and not tls.is_dir():  # its TLS files could not be written
        held.append(str(tls))
    if held:
        these = "it" if len(held) == 1 else "them"
        raise DemoWorkdirInUse(
            f"{directory} already holds {', '.join(held)}: the demo would overwrite {these} "
            "with its own — use an empty or new directory")


def written_files(directory: Path) -> list[Path]:
    """Every file a demo writes in ``directory``: its config, its state database (with the
    files SQLite keeps beside it) and the sandbox's TLS files."""
    state = directory / STATE_NAME
    tls = TLSMaterial.in_directory(directory / TLS_NAME)
    return [directory / CONFIG_NAME, state,
            *(state.with_name(state.name + suffix) for suffix in _STATE_SIDE_FILES),
            tls.ca_bundle, tls.certfile, tls.keyfile]


def _run_in(directory: Path, say: Callable[[str], None]) -> DemoSummary:
    """The demo itself, with every file it writes in ``directory``."""
    summary = DemoSummary()
    with start_sandbox(seed="demo", ports=dict.fromkeys(
            ("salesforce", "hubspot", "partnerstack"), 0), workdir=directory / TLS_NAME) as sandbox:
        say("sandbox started: PartnerStack (PRM), Salesforce and HubSpot with demo data")
        config_path = directory / CONFIG_NAME
        config_path.write_text(
            demo_config(sandbox.urls, sandbox.ca_bundle, directory / STATE_NAME), "utf-8")
        loaded = load_config(config_path)
        with StateStore(loaded.config.state.url) as store:
            engine = build_engine(loaded, store)
            for step in range(3):
                if step == 1:
                    sandbox.emulators["salesforce"].simulate({"seed": 7, "fraction": 0.6})
                    sandbox.emulators["hubspot"].simulate({"steps": 2})
                    say("sales worked the leads in Salesforce and the deals in HubSpot")
                report = engine.run(trigger="demo")
                summary.runs.append(report)
                say(_describe(step, report))
            summary.by_status = store.status_counts()
            summary.referrals = sum(summary.by_status.values())
            summary.records_by_system = store.link_counts()
            summary.duplicates = summary.by_status.get("duplicate", 0)
            rejected_by = _rejections_by_rule(store)
            summary.customers_rejected = rejected_by.get("existing_customer", 0)
            summary.open_deals_rejected = rejected_by.get("open_opportunity", 0)
            # records, not failures: a record refused again keeps its one row
            summary.quarantined = len(store.list_quarantine(limit=10_000))
        for report in summary.runs:
            counts = report.counts
            summary.conflicts += int(counts.get("conflicts", 0))
        for report in summary.runs[1:]:
            prm = report.counts.get("streams", {}).get("partnerstack.leads", {})
            summary.status_updates_to_partners += int(prm.get("written", 0))
        summary.api_calls = {
            system: int(emulator.calls.snapshot()["total"])
            for system, emulator in sandbox.emulators.items()
        }
    return summary


def _rejections_by_rule(store: StateStore) -> dict[str, int]:
    """Rejected referrals by the rule that rejected them (from their ``rejected`` events)."""
    rules: dict[str, int] = {}
    for referral in store.list_referrals(status="rejected", limit=10_000):
        for event in store.events_of(referral["id"]):
            if event["kind"] == "rejected":
                rule = str((event["payload"] or {}).get("rule", "other"))
                rules[rule] = rules.get(rule, 0) + 1
                break
    return rules


def _describe(step: int, report: RunReport) -> str:
    counts: dict[str, Any] = {k: v for k, v in report.counts.items() if k != "streams" and v}
    text = ", ".join(f"{k} {v}" for k, v in counts.items()) or "nothing to do"
    return f"sync {step + 1}: {report.status} — {text}"
