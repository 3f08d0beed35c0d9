"""kill -9 in the middle of syncs, again and again: no referral is lost or duplicated.

Each test interrupts ``refsync sync`` child processes with SIGKILL at seeded random moments
(17 kills on SQLite; 9 on PostgreSQL, where each kill also waits for the dead run's sync lease
to expire: 26 in all), lets the syncs finish, audits the PRM, the hub and both CRMs, and
compares every referral's outcome with an uninterrupted sync of the same data.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from refsync.testing.chaos import ChaosOptions, run_chaos

pytestmark = pytest.mark.slow

KILLS = {"sqlite": 17, "postgresql": 9}


def test_syncs_killed_mid_flight_lose_and_duplicate_nothing(
    state_url: str, tmp_path: Path
) -> None:
    backend = "sqlite" if state_url.startswith("sqlite") else "postgresql"
    kills = KILLS[backend]
    seed = 20 + len(backend)
    report = run_chaos(ChaosOptions(seed=seed, referrals=200, kills=kills, state_url=state_url,
                                    workdir=tmp_path / "chaos"))
    text = "\n".join(report.lines())
    assert report.ok, f"seed {seed} failed:\n{text}"
    assert report.kills == kills, text
    assert sum(1 for a in report.attempts if a.killed and a.phase == "mid-run") >= kills // 2
    assert report.audit is not None
    assert report.audit.outbox_pending == 0 and not report.audit.quarantine_open
    for system in report.audit.systems.values():
        assert system.synced == system.expected > 150, text
    # a killed run never gets to record its end; the next process to take the sync lease over
    # from it marks it abandoned
    killed_mid_run = sum(1 for a in report.attempts if a.killed and a.phase == "mid-run")
    assert report.run_statuses["abandoned"] == killed_mid_run, text
    assert report.run_statuses["running"] == 0, text
