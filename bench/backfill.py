"""Backfill: N PartnerStack leads synced to Salesforce and HubSpot in one run.

Seeds ``--n`` leads in the PartnerStack emulator, then runs one sync (a fresh engine, as
``refsync sync`` builds it) that creates N referrals in the state store and writes each one to
the Salesforce and HubSpot emulators::

    python bench/backfill.py                      # 100,000 referrals, SQLite, no latency
    python bench/backfill.py --n 10000 --latency-ms 20
    python bench/backfill.py --state-url postgresql://user@localhost/refsync_bench --json

Figures:

* referrals/s end to end (wall time of the run) and engine only: wall time minus the time this
  process spends inside urllib3 sending requests and reading answers (timed client-side by
  wrapping ``HTTPConnectionPool.urlopen`` and ``HTTPResponse.read``; see ``_harness.py``);
* API calls per system, counted by the emulators, against the minimum: one call per page read
  (250 PartnerStack leads; an empty Salesforce query and an empty HubSpot list, one call each,
  since the CRMs are empty) plus one call per write batch (200 Salesforce records, 100 HubSpot
  contacts), plus Salesforce's one sign-in (token) call;
* peak RSS of the refsync process: the emulators run in a child process and are not counted;
* that every referral landed exactly once in each CRM (records and distinct refsync ids).

PartnerStack is read only by default (``direction: in``): the PRM has no batch write endpoint,
so writing the refsync id back costs one call per lead; ``--prm-writeback`` adds it.
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
    SyncHarness,
    backfill_plan,
    machine,
    peak_rss_mb,
    print_run,
)

__all__ = ["main", "run_backfill"]


def run_backfill(harness: SyncHarness) -> dict[str, Any]:
    """Run the first sync of ``harness`` and return its figures, JSON-ready."""
    reads, writes = backfill_plan(harness.count, prm_writeback=harness.prm_writeback)
    figures = harness.run("backfill", harness.count, reads, writes)
    return {**figures.as_dict(), "landed": harness.landed()}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000, help="referrals to seed and sync")
    parser.add_argument("--latency-ms", type=int, default=0, help="added to every API call")
    parser.add_argument("--state-url", default=None, help="state store (default: SQLite file)")
    parser.add_argument("--prm-writeback", action="store_true",
                        help="also write the refsync id back to PartnerStack (a call per lead)")
    parser.add_argument("--profile", metavar="PATH",
                        help="write cProfile statistics of the sync to PATH.backfill")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)

    harness = SyncHarness(args.n, latency_ms=args.latency_ms, state_url=args.state_url,
                          prm_writeback=args.prm_writeback, profile=args.profile)
    try:
        run = run_backfill(harness)
        result = {
            "bench": "backfill", "n": args.n, "latency_ms": args.latency_ms,
            "state": harness.state_backend, "prm_writeback": args.prm_writeback,
            "seed_seconds": round(harness.sandbox.seed_seconds, 2),
            "peak_rss_mb": peak_rss_mb(), "machine": machine(), "run": run,
        }
    finally:
        harness.close()
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"backfill: {args.n:,} PartnerStack leads → Salesforce + HubSpot, state "
          f"{result['state']}, latency {args.latency_ms} ms "
          f"(seeded in {result['seed_seconds']:.1f} s)")
    print_run(run)
    print(f"  peak RSS (refsync process) {result['peak_rss_mb']:.0f} MB")
    for system, landed in run["landed"].items():
        print(f"  landed in {system}: {landed['records']:,} records, "
              f"{landed['distinct_keys']:,} distinct refsync ids")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
