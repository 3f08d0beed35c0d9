"""kill -9 in the middle of ``refsync retry``: no replayed referral is lost or duplicated.

Before each attempt the CRMs refuse a fifth of the records in their batch writes, so syncs
quarantine them, and partners submit a few leads with a status the syncs' mapping does not
know, so they are quarantined when read; the faults are then cleared and a ``refsync retry
--all`` child replaying the quarantine with the fixed mapping is killed mid-push (6 kills on
SQLite; 4 on PostgreSQL, where each kill also waits for the dead run's sync lease to expire:
10 in all). After a retry and syncs without kills, every referral must be in both CRMs
exactly once, nothing pending or quarantined, no replay stranded, and (on SQLite) every
referral must end as in an uninterrupted sync without faults.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from refsync.config import load_config
from refsync.sandbox.faults import FaultInjector
from refsync.state import StateStore
from refsync.sync.wiring import build_engine
from refsync.testing.audit import cursor_problems
from refsync.testing.chaos_retry import (
    HELD_STATUS,
    RetryChaosOptions,
    fixed_mapping_config,
    run_retry_chaos,
    stranded_replays,
)
from refsync.testing.scenario import (
    SANDBOX_SECRETS,
    scenario_config,
    scenario_sandbox,
    scenario_seed,
)
from refsync.testing.soak import SoakOptions, fault_rules

pytestmark = pytest.mark.slow

KILLS = {"sqlite": 6, "postgresql": 4}


def test_retries_killed_mid_replay_lose_and_duplicate_nothing(
    state_url: str, tmp_path: Path
) -> None:
    backend = "sqlite" if state_url.startswith("sqlite") else "postgresql"
    kills = KILLS[backend]
    seed = 40 + len(backend)
    report = run_retry_chaos(RetryChaosOptions(
        seed=seed, referrals=200, kills=kills, new_leads=25, rate_record=0.2, crm_batch_size=5,
        state_url=state_url, workdir=tmp_path / "chaos",
        # the reference sync does not depend on the backend: once is enough
        reference=backend == "sqlite"))
    text = "\n".join(report.lines())
    assert report.ok, f"seed {seed} failed:\n{text}"
    assert report.kills == kills, text
    killed_mid_run = sum(1 for a in report.attempts if a.killed and a.phase == "mid-run")
    assert killed_mid_run >= kills // 2, text
    # a few dozen writes refused by the first syncs, and fresh ones before every retry
    assert report.quarantined[0] >= 30 and all(report.quarantined), text
    # leads that could not be read wait for every retry, and the retries map them again
    assert all(held >= 3 for held in report.held), text
    assert report.refused["salesforce"] and report.refused["hubspot"], text
    assert report.audit is not None and not report.stranded
    assert report.audit.outbox_pending == 0 and not report.audit.quarantine_open, text
    for system in report.audit.systems.values():
        assert system.synced == system.expected > 150, text
        assert not system.duplicated and not system.duplicated_emails, text
    # each killed retry left its run running; the next process to take the lease marked it
    assert report.run_statuses["abandoned"] == killed_mid_run, text
    assert report.run_statuses["running"] == 0, text
    with StateStore(state_url, migrate=False) as store:
        retries = Counter(str(run["status"]) for run in store.list_runs(limit=1000, job="retry"))
    assert retries["abandoned"] == killed_mid_run, (retries, text)


def test_a_resolved_quarantine_row_whose_write_is_nowhere_is_reported(tmp_path: Path) -> None:
    """The check the harness runs between kills: resolving quarantine rows without queueing
    their writes again (a lost replay) is reported; queueing them again clears the report."""
    with scenario_sandbox(scenario_seed(5, 60), tmp_path) as sandbox:
        config = tmp_path / "refsync.yaml"
        config.write_text(scenario_config(sandbox, f"sqlite:///{tmp_path / 'state.db'}",
                                          crm_batch_size=5), "utf-8")
        loaded = load_config(config, environ={**SANDBOX_SECRETS})
        rates = SoakOptions(rate_429=0.0, rate_5xx=0.0, rate_slow=0.0, rate_401=0.0,
                            rate_record=0.3)
        for system, emulator in sandbox.emulators.items():
            emulator.faults = FaultInjector(seed=5)
            emulator.faults.add(fault_rules(system, emulator, rates))
        with StateStore(loaded.config.state.url) as store:
            engine = build_engine(loaded, store)
            engine.run()
            for emulator in sandbox.emulators.values():
                emulator.faults.clear()
            assert stranded_replays(store, engine.bindings, sandbox.emulators) == []
            with store.transaction() as tx:
                rows = [r for r in tx.open_quarantine() if r["direction"] == "out"]
                assert len(rows) >= 5
                tx.resolve_quarantine([r["id"] for r in rows])
            found = stranded_replays(store, engine.bindings, sandbox.emulators)
            assert len(found) == 1 and found[0].startswith(f"{len(rows)} resolved"), found
            with store.transaction() as tx:
                tx.enqueue([{"referral_id": r["referral_id"], "system": r["system"],
                             "stream": r["stream"], "payload": {"retry_of": r["id"]},
                             "payload_hash": f"retry-{r['id']}"} for r in rows])
            assert stranded_replays(store, engine.bindings, sandbox.emulators) == []
            engine.run()
            assert stranded_replays(store, engine.bindings, sandbox.emulators) == []
            assert store.counts()["outbox_pending"] == 0


def test_a_resolved_read_whose_record_became_no_referral_is_reported(tmp_path: Path) -> None:
    """Leads that could not be read are held in quarantine (the cursor may pass them); a
    read resolved without becoming a referral is reported, one replayed with the fixed
    mapping is not."""
    with scenario_sandbox(scenario_seed(6, 40), tmp_path) as sandbox:
        before_fix = tmp_path / "before-fix.yaml"
        text = scenario_config(sandbox, f"sqlite:///{tmp_path / 'state.db'}")
        before_fix.write_text(text, "utf-8")
        fixed = tmp_path / "refsync.yaml"
        fixed.write_text(fixed_mapping_config(text, tmp_path), "utf-8")
        sandbox.emulators["partnerstack"].simulate({"new_leads": 2, "status": HELD_STATUS})
        with StateStore(f"sqlite:///{tmp_path / 'state.db'}") as store:
            engine = build_engine(load_config(before_fix, environ={**SANDBOX_SECRETS}), store)
            engine.run()
            held = [r for r in store.list_quarantine() if r["direction"] == "in"]
            assert [r["error_code"] for r in held] == ["unmapped_value"] * 2
            assert cursor_problems(store, engine.bindings, sandbox.emulators) == []
            assert stranded_replays(store, engine.bindings, sandbox.emulators) == []
            lost, replayed = held
            with store.transaction() as tx:
                tx.resolve_quarantine([lost["id"]])
            found = stranded_replays(store, engine.bindings, sandbox.emulators)
            assert len(found) == 1 and lost["external_id"] in found[0], found
            assert cursor_problems(store, engine.bindings, sandbox.emulators) != []
            fixed_engine = build_engine(load_config(fixed, environ={**SANDBOX_SECRETS}), store)
            assert fixed_engine.retry([replayed["id"]]).status == "succeeded"
            assert store.find_links("partnerstack", "leads", [replayed["external_id"]])
            found = stranded_replays(store, engine.bindings, sandbox.emulators)
            assert len(found) == 1 and lost["external_id"] in found[0], found
