"""Scaling: the backfill at several sizes, time and peak memory per size.

Runs ``backfill.py`` once per size, each in a fresh process so that every size's peak RSS is
its own::

    python bench/scaling.py                       # 10,000, 100,000 and 1,000,000 referrals
    python bench/scaling.py --sizes 10000,100000 --json

Memory should stay flat as the size grows: pages are read, committed and pushed one at a time,
and nothing holds every referral in memory.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["main", "run_size"]

BACKFILL = Path(__file__).resolve().with_name("backfill.py")


def run_size(size: int, *, latency_ms: int = 0, state_url: str | None = None) -> dict[str, Any]:
    """Run the backfill of ``size`` referrals in a child process; return its JSON figures."""
    command = [sys.executable, str(BACKFILL), "--n", str(size), "--latency-ms", str(latency_ms),
               "--json"]
    if state_url:
        command += ["--state-url", state_url]
    completed = subprocess.run(command, capture_output=True, text=True, check=True)
    figures: dict[str, Any] = json.loads(completed.stdout)
    return figures


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000,1000000",
                        help="comma-separated referral counts")
    parser.add_argument("--latency-ms", type=int, default=0, help="added to every API call")
    parser.add_argument("--state-url", default=None,
                        help="state store (default: a fresh SQLite file per size; a shared "
                        "database must be emptied between sizes)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)

    sizes = [int(size) for size in args.sizes.split(",") if size.strip()]
    rows = []
    for size in sizes:
        figures = run_size(size, latency_ms=args.latency_ms, state_url=args.state_url)
        run = figures["run"]
        rows.append({
            "n": size, "status": run["status"], "wall_seconds": run["wall_seconds"],
            "engine_seconds": run["engine_seconds"], "records_per_s": run["records_per_s"],
            "engine_records_per_s": run["engine_records_per_s"],
            "peak_rss_mb": figures["peak_rss_mb"], "api_call_ratio": run["api_calls"]["ratio"],
            "landed": run["landed"], "seed_seconds": figures["seed_seconds"],
        })
        machine = figures["machine"]
    result = {"bench": "scaling", "sizes": rows, "machine": machine if sizes else None}
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"{'referrals':>10} {'wall s':>8} {'engine s':>9} {'ref/s':>8} {'engine ref/s':>13} "
          f"{'peak RSS MB':>12} {'calls/min':>10}")
    for row in rows:
        print(f"{row['n']:>10,} {row['wall_seconds']:>8.1f} {row['engine_seconds']:>9.1f} "
              f"{row['records_per_s']:>8,.0f} {row['engine_records_per_s']:>13,.0f} "
              f"{row['peak_rss_mb']:>12.0f} {row['api_call_ratio']:>10.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
