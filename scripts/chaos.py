"""Crash harness: kill -9 ``refsync sync`` mid-sync again and again, then audit the result.

    python scripts/chaos.py --kills 60 --referrals 3000 --seed 7
    python scripts/chaos.py --state-url postgresql+psycopg://user@host/empty_db

Exit status 0 when no referral was lost or duplicated, 1 otherwise (the seed is printed).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from refsync.logging import configure_logging
from refsync.testing.chaos import ChaosOptions, run_chaos


def main(argv: list[str] | None = None) -> int:
    """Parse the options, run the harness, print its report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=30, help="SIGKILLs to deliver mid-sync")
    parser.add_argument("--referrals", type=int, default=3000, help="PartnerStack leads seeded")
    parser.add_argument("--seed", type=int, default=1, help="seeds the data and the kills")
    parser.add_argument("--state-url", default=None,
                        help="state store URL (an empty database); default: a SQLite file")
    parser.add_argument("--new-leads", type=int, default=None,
                        help="leads partners submit before each attempt")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="keep the config, state and child logs here")
    parser.add_argument("--no-reference", action="store_true",
                        help="skip the uninterrupted reference sync")
    parser.add_argument("--quiet", action="store_true", help="print the report only")
    args = parser.parse_args(argv)
    configure_logging(level="error")
    report = run_chaos(ChaosOptions(
        seed=args.seed, referrals=args.referrals, kills=args.kills, state_url=args.state_url,
        workdir=args.workdir, new_leads=args.new_leads, reference=not args.no_reference,
        say=(lambda _line: None) if args.quiet else print,
    ))
    print("\n".join(report.lines()))
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
