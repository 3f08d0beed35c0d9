"""``refsync demo``: sandbox, three syncs and sales activity, end to end with real clients."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from refsync.cli import cli
from refsync.state import StateStore


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

