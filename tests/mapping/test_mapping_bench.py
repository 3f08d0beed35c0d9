"""The mapping benchmark script runs and reports its figures (no timing is asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench" / "bench_mapping.py"


def test_bench_reports_throughput_as_json() -> None:
    completed = subprocess.run(
        [sys.executable, str(BENCH), "--n", "200", "--json"],
        capture_output=True, text=True, check=True, timeout=120,
    )
    figures = json.loads(completed.stdout)
    assert figures["mapping"] == "builtin:salesforce-lead"
    assert figures["records"] == 200
    assert figures["record_errors"] == 0
    for key in ("to_canonical_per_s", "to_remote_per_s", "content_hash_per_s"):
        assert figures[key] > 0
