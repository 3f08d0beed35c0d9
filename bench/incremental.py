"""Incremental syncs after a backfill: 1% of the referrals changed in the CRM, then nothing.

Seeds ``--n`` PartnerStack leads, runs the backfill, then four more syncs, each timed and
counted against the minimum number of API calls::

    python bench/incremental.py                   # 100,000 referrals, 1% changed
    python bench/incremental.py --n 10000 --changed 0.05 --json

1. ``settle``: reads back the backfill's own writes from Salesforce and HubSpot (echoes,
   recognised by their content hash and not written again);
2. ``changed``: sales works ``--changed`` of the Salesforce Leads (status ``Open - Not
   Contacted`` → ``Working - Contacted``); the status change (Salesforce owns it) reaches the
   hub and is pushed to HubSpot. Changes made in PartnerStack after submission would not
   flow (the PRM's fields are ``partner_owned`` or ``hub_wins``), so the change is made where
   the mappings let it flow;
3. ``settle``: reads back those writes;
4. ``no-op``: nothing changed anywhere.

The minimum of a run: one read call per page of records changed since the last run (at least
one call per stream, the empty page), one write call per batch of records that must be
written, plus Salesforce's sign-in. HTTP wait is timed client-side as in ``backfill.py``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

# the shared harness sits next to this script
from _harness import (
    CRMS,
    SyncHarness,
    backfill_plan,
    machine,
    peak_rss_mb,
    print_run,
)

__all__ = ["main", "run_incremental"]


def run_incremental(harness: SyncHarness, changed_share: float) -> dict[str, Any]:
    """Backfill, then the four incremental runs; return every run's figures."""
    count = harness.count
    runs = [harness.run("backfill", count,
                        *backfill_plan(count, prm_writeback=harness.prm_writeback)).as_dict()]
    runs.append(harness.run("settle (backfill echoes)", 0, dict.fromkeys(CRMS, count), {})
                .as_dict())
    changed = harness.work_leads(changed_share)
    runs.append(harness.run(f"changed ({changed:,} Lead statuses in Salesforce)", changed,
                            {"salesforce": changed}, {"hubspot": changed}).as_dict())
    runs.append(harness.run("settle (echoes of the changes)", 0, {"hubspot": changed}, {})
                .as_dict())
    runs.append(harness.run("no-op", 0, {}, {}).as_dict())
    return {"changed": changed, "runs": runs, "landed": harness.landed()}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000, help="referrals to seed and sync")
    parser.add_argument("--changed", type=float, default=0.01,
                        help="share of the Salesforce Leads worked by sales (default 0.01)")
    parser.add_argument("--latency-ms", type=int, default=0, help="added to every API call")
    parser.add_argument("--state-url", default=None, help="state store (default: SQLite file)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)

    harness = SyncHarness(args.n, latency_ms=args.latency_ms, state_url=args.state_url)
    try:
        result = {"bench": "incremental", "n": args.n, "changed_share": args.changed,
                  "latency_ms": args.latency_ms, "state": harness.state_backend,
                  **run_incremental(harness, args.changed),
                  "peak_rss_mb": peak_rss_mb(), "machine": machine()}
    finally:
        harness.close()
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"incremental: {args.n:,} referrals, {result['changed']:,} changed, state "
          f"{result['state']}, latency {args.latency_ms} ms")
    for run in result["runs"]:
        print_run(run)
    print(f"peak RSS (refsync process) {result['peak_rss_mb']:.0f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
