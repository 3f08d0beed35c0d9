"""Fault soak: sync through 429s, 5xx, slow answers, expired tokens and refused records.

    python scripts/soak.py --referrals 3000 --rate-429 0.05 --rate-5xx 0.05 --rate-401 0.02

Prints how many faults of each kind were injected, what became of every referral (synced,
quarantined with its reason, pending in the outbox, missing, duplicated) and every reason the
soak failed (a sync that never settled included). Exit status 0 when nothing went wrong, 1
otherwise.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from refsync.logging import configure_logging
from refsync.testing.soak import SoakOptions, run_soak


def main(argv: list[str] | None = None) -> int:
    """Parse the options, run the soak, print its report."""
    defaults = SoakOptions()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--referrals", type=int, default=defaults.referrals)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--rate-429", type=float, default=defaults.rate_429,
                        help="share of calls answered 429 with Retry-After")
    parser.add_argument("--retry-after", type=int, default=defaults.retry_after,
                        help="Retry-After seconds (waits are recorded, not slept)")
    parser.add_argument("--rate-5xx", type=float, default=defaults.rate_5xx)
    parser.add_argument("--rate-slow", type=float, default=defaults.rate_slow)
    parser.add_argument("--slow-ms", type=int, default=defaults.slow_ms)
    parser.add_argument("--rate-401", type=float, default=defaults.rate_401,
                        help="share of Salesforce/HubSpot calls answered 401 (token expired)")
    parser.add_argument("--rate-record", type=float, default=defaults.rate_record,
                        help="share of records in a CRM batch refused on their own")
    parser.add_argument("--crm-batch-size", type=int, default=None,
                        help="records per Salesforce/HubSpot write call")
    parser.add_argument("--max-runs", type=int, default=defaults.max_runs)
    parser.add_argument("--no-recover", action="store_true",
                        help="do not clear the faults and replay the quarantine afterwards")
    parser.add_argument("--state-url", default=None,
                        help="state store URL (an empty database); default: a SQLite file")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--quiet", action="store_true", help="print the report only")
    args = parser.parse_args(argv)
    configure_logging(level="error")
    report = run_soak(SoakOptions(
        seed=args.seed, referrals=args.referrals, rate_429=args.rate_429,
        retry_after=args.retry_after, rate_5xx=args.rate_5xx, rate_slow=args.rate_slow,
        slow_ms=args.slow_ms, rate_401=args.rate_401, rate_record=args.rate_record,
        crm_batch_size=args.crm_batch_size,
        max_runs=args.max_runs, recover=not args.no_recover, state_url=args.state_url,
        workdir=args.workdir, say=(lambda _line: None) if args.quiet else print,
    ))
    print("\n".join(report.lines()))
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
