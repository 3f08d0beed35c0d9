"""Throughput of a compiled mapping: records per second through to_canonical and to_remote.

Runs the shipped Salesforce Lead mapping over generated Lead records on one core::

    python bench/bench_mapping.py --n 100000
    python bench/bench_mapping.py --json
"""

from __future__ import annotations

import argparse
import json
import random
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from refsync.domain import Referral
from refsync.mapping import load_mapping

__all__ = ["generate_leads", "main", "measure"]

_STATUSES = ["Open - Not Contacted", "Working - Contacted", "Closed - Converted",
             "Closed - Not Converted"]
_FIRST = ["Jane", "Omar", "Li", "Amélie", "Kwame", "Sofia", "Raj", "Ingrid"]
_LAST = ["Doe", "Haddad", "Wei", "Dubois", "Mensah", "García", "Patel", "Berg"]


def generate_leads(count: int, seed: int = 7) -> list[dict[str, Any]]:
    """``count`` Salesforce Lead records shaped like a SOQL query result."""
    rng = random.Random(seed)
    leads = []
    for index in range(count):
        first, last = rng.choice(_FIRST), rng.choice(_LAST)
        company = f"Company {index % 997}"
        leads.append({
            "attributes": {"type": "Lead", "url": f"/services/data/v62.0/sobjects/Lead/{index}"},
            "Id": f"00Q{index:015d}",
            "Refsync_Id__c": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            "Email": f" {first}.{last}{index}@Example{index % 50}.com ",
            "FirstName": first,
            "LastName": last,
            "Company": company,
            "Website": f"https://www.example{index % 50}.com/about",
            "Phone": f"+1 (415) 555-{index % 10000:04d}",
            "Title": "Head of Operations",
            "Country": "United States",
            "Partner_Key__c": f"partner-{index % 40}",
            "AnnualRevenue": rng.choice([None, 125000.0, 2_500_000.0]),
            "CreatedDate": "2026-01-05T10:00:00.000+0000",
            "Description": None,
            "Status": rng.choice(_STATUSES),
        })
    return leads


def measure(fn: Callable[[Any], Any], items: Sequence[Any], repeat: int = 3) -> float:
    """Best records/second of ``fn`` over ``items`` in ``repeat`` passes."""
    best = 0.0
    for _ in range(repeat):
        started = time.perf_counter()
        for item in items:
            fn(item)
        elapsed = time.perf_counter() - started
        best = max(best, len(items) / elapsed if elapsed else float("inf"))
    return best


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000, help="records to generate")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)

    mapping = load_mapping("builtin:salesforce-lead")
    leads = generate_leads(args.n)
    mapped = [mapping.to_canonical(lead) for lead in leads]
    failed = sum(1 for item in mapped if not item.ok)
    referrals = [Referral.model_validate(item.referral_fields()) for item in mapped]
    results = {
        "mapping": mapping.name,
        "records": args.n,
        "record_errors": failed,
        "to_canonical_per_s": round(measure(mapping.to_canonical, leads)),
        "to_remote_per_s": round(measure(mapping.to_remote, referrals)),
        "content_hash_per_s": round(measure(mapping.content_hash, leads)),
    }
    if args.json:
        print(json.dumps(results))
    else:
        print(f"mapping {results['mapping']}, {args.n} generated records "
              f"({failed} with record errors)")
        for key in ("to_canonical_per_s", "to_remote_per_s", "content_hash_per_s"):
            print(f"  {key.removesuffix('_per_s'):<14} {results[key]:>10,} records/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
