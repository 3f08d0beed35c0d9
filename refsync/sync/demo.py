"""``refsync demo``: the whole product on the local sandbox, with no credentials.

Starts the emulators in-process with demo data, writes a working configuration into a temporary
directory, runs a sync, simulates sales activity in the CRMs, syncs twice more, and returns a
summary a revops person can read.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from refsync.config import load_config
from refsync.sandbox.config import sandbox_config
from refsync.sandbox.runner import start_sandbox
from refsync.state import StateStore
from refsync.sync.engine import RunReport
from refsync.sync.wiring import build_engine

__all__ = ["DemoSummary", "demo_config", "run_demo"]

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
    config_path: str = ""


def demo_config(urls: dict[str, str], ca_bundle: Path, state: Path) -> str:
    """The demo's configuration text for a running sandbox."""
    return sandbox_config(
        urls, ca_bundle, f"sqlite:///{state}", instance="refsync-demo", env_prefix="DEMO",
        comment="Written by `refsync demo`: the sandbox's URLs and fixed test credentials.")


def run_demo(
    workdir: Path | None = None, *, say: Callable[[str], None] = lambda _line: None
) -> DemoSummary:
    """Run the demo; ``say`` receives one line per step."""
    directory = Path(workdir or tempfile.mkdtemp(prefix="refsync-demo-")).resolve()
    directory.mkdir(parents=True, exist_ok=True)
    summary = DemoSummary()
    with start_sandbox(seed="demo", ports=dict.fromkeys(
            ("salesforce", "hubspot", "partnerstack"), 0), workdir=directory / "tls") as sandbox:
        say("sandbox started: PartnerStack (PRM), Salesforce and HubSpot with demo data")
        config_path = directory / "refsync.yaml"
        config_path.write_text(
            demo_config(sandbox.urls, sandbox.ca_bundle, directory / "refsync.db"), "utf-8")
        summary.config_path = str(config_path)
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
