"""The sync benchmark scripts run end to end on tiny inputs and report consistent counts.

Only counts are asserted (every referral landed once in each CRM, API calls against the
minimum), never timings.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parents[2] / "bench"


def _run(script: str, *args: str) -> dict[str, Any]:
    completed = subprocess.run(
        [sys.executable, str(BENCH / script), *args, "--json"],
        capture_output=True, text=True, check=True, timeout=300,
    )
    figures: dict[str, Any] = json.loads(completed.stdout)
    return figures


def _assert_landed_once(landed: dict[str, dict[str, int]], count: int) -> None:
    assert landed == {crm: {"records": count, "distinct_keys": count}
                      for crm in ("salesforce", "hubspot")}


def test_backfill_writes_every_referral_once_with_the_fewest_calls() -> None:
    figures = _run("backfill.py", "--n", "450")
    run = figures["run"]
    assert figures["bench"] == "backfill" and figures["n"] == 450
    assert figures["state"] == "sqlite" and figures["peak_rss_mb"] > 0
    assert run["status"] == "succeeded"
    assert run["counts"]["created"] == 450 and run["counts"]["written"] == 900
    _assert_landed_once(run["landed"], 450)
    calls = run["api_calls"]
    # 2 PartnerStack pages; Salesforce: sign-in, empty query, 3 batches; HubSpot: empty list,
    # 5 batches
    assert {s: row["calls"] for s, row in calls["systems"].items()} == {
        "partnerstack": 2, "salesforce": 5, "hubspot": 6}
    assert calls["write_ratio"] == 1.0 and calls["ratio"] <= 1.05
    for key in ("wall_seconds", "http_seconds", "engine_seconds", "records_per_s",
                "engine_records_per_s", "store_seconds", "outside_store_records_per_s"):
        assert run[key] > 0
    # the state store's share is part of engine time, and not all of it
    assert run["store_seconds"] < run["engine_seconds"]


def test_incremental_runs_write_only_what_changed() -> None:
    figures = _run("incremental.py", "--n", "400", "--changed", "0.05")
    runs = {run["label"].split(" (")[0]: run for run in figures["runs"]}
    assert [run["label"].split(" (")[0] for run in figures["runs"]] == [
        "backfill", "settle", "changed", "settle", "no-op"]
    changed = figures["changed"]
    assert changed == 20
    _assert_landed_once(figures["landed"], 400)
    settle = figures["runs"][1]["counts"]
    assert settle["echoes"] == 800 and settle["written"] == 0
    worked = runs["changed"]["counts"]["streams"]
    assert worked["salesforce.leads"] == {"read": changed, "updated": changed}
    assert worked["hubspot.contacts"] == {"written": changed}
    assert figures["runs"][3]["counts"]["echoes"] == changed
    noop = runs["no-op"]
    assert noop["counts"]["read"] == 0 and noop["counts"]["written"] == 0
    # the no-op sync reads one empty page per stream and signs in to Salesforce once
    assert noop["api_calls"]["total"] == 4
    for run in figures["runs"]:
        assert run["status"] == "succeeded"
        assert run["api_calls"]["ratio"] <= 1.05, run["label"]
        assert run["api_calls"]["write_ratio"] == 1.0, run["label"]


def test_scaling_reports_every_size() -> None:
    figures = _run("scaling.py", "--sizes", "200,400")
    assert [row["n"] for row in figures["sizes"]] == [200, 400]
    for row in figures["sizes"]:
        assert row["status"] == "succeeded"
        assert row["peak_rss_mb"] > 0 and row["api_call_ratio"] <= 1.05
        _assert_landed_once(row["landed"], row["n"])
    assert figures["machine"]["cores"] >= 1


def test_floor_writes_the_rows_a_backfill_writes() -> None:
    figures = _run("floor.py", "--n", "450")
    assert figures["bench"] == "floor" and figures["n"] == 450
    # a referral, its 3 links (PRM and both CRMs), 2 outbox rows (sent), 3 events
    assert figures["rows"] == {"referral": 450, "link": 1350, "outbox": 900, "event": 1350,
                               "outbox pending": 0}
    assert figures["referrals_per_second"] > 0
    assert set(figures["parts"]) >= {"store: commit", "client library: hubspot",
                                     "client library: salesforce"}
