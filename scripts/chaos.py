"""Crash harness: kill -9 ``refsync sync`` mid-sync again and again, then audit the result.

    python scripts/chaos.py --kills 60 --referrals 3000 --seed 7
    python scripts/chaos.py --state-url postgresql+psycopg://user@host/empty_db
    python scripts/chaos.py --retry --kills 8 --seed 7

With ``--retry`` it kills ``refsync retry --all`` instead, while it replays writes the CRMs
refused (quarantined by syncs through refused-record faults before each attempt) and leads
that could not be read (a status the syncs' mapping lacks, mapped by the retry's fixed one).

Exit status 0 when no referral was lost or duplicated and no refsync child crashed, 1
otherwise; the report then gives every reason on a ``PROBLEM:`` line (and the seed).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from refsync.logging import configure_logging
from refsync.testing.chaos import ChaosOptions, run_chaos
from refsync.testing.chaos_retry import RetryChaosOptions, run_retry_chaos


def main(argv: list[str] | None = None) -> int:
    """Parse the options, run the harness, print its report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=None,
                        help="SIGKILLs to deliver mid-sync (default 30; 8 with --retry)")
    parser.add_argument("--referrals", type=int, default=None,
                        help="PartnerStack leads seeded (default 3000; 200 with --retry)")
    parser.add_argument("--retry", action="store_true",
                        help="kill `refsync retry --all` replaying quarantined writes instead")
    parser.add_argument("--rate-record", type=float, default=None,
                        help="with --retry: share of records a CRM batch write refuses "
                             "before each attempt (default 0.2)")
    parser.add_argument("--held-leads", type=int, default=None,
                        help="with --retry: leads submitted before each attempt with a status "
                             "only the retry's fixed mapping knows (default 3)")
    parser.add_argument("--crm-batch-size", type=int, default=None,
                        help="records per CRM write call (default: each API's maximum; "
                             "5 with --retry)")
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
    for name in ("rate_record", "held_leads"):
        if getattr(args, name) is not None and not args.retry:
            parser.error(f"--{name.replace('_', '-')} needs --retry")
    configure_logging(level="error")
    chosen = {name: getattr(args, name) for name in (
        "referrals", "kills", "crm_batch_size", "rate_record", "held_leads")
        if getattr(args, name) is not None}
    options_type = RetryChaosOptions if args.retry else ChaosOptions
    options = options_type(
        seed=args.seed, state_url=args.state_url, workdir=args.workdir,
        new_leads=args.new_leads, reference=not args.no_reference,
        say=(lambda _line: None) if args.quiet else print, **chosen,
    )
    report = (run_retry_chaos(options) if isinstance(options, RetryChaosOptions)
              else run_chaos(options))
    print("\n".join(report.lines()))
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
