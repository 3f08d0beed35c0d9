"""What the soak and the audit report: every reason a soak failed, and writes still waiting in
the outbox told apart from referrals that were lost."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from refsync.config import load_config
from refsync.connectors.base import ConnectorContext
from refsync.sandbox.faults import FaultRule
from refsync.state import StateStore
from refsync.sync.engine import RunReport
from refsync.sync.wiring import build_engine
from refsync.testing.audit import AuditReport, audit_sync
from refsync.testing.scenario import (
    SANDBOX_SECRETS,
    scenario_config,
    scenario_sandbox,
    scenario_seed,
)
from refsync.testing.soak import SoakOptions, SoakReport

CREDENTIALS = "hubspot rejected the credentials even after signing in again: check the client id"


def _run(status: str, error: str | None = None, work: int = 0) -> RunReport:
    return RunReport(run_id=status, status=status, counts={"created": work}, error=error)


def test_a_soak_that_never_settles_says_so_and_why_its_last_run_ended() -> None:
    report = SoakReport(
        SoakOptions(max_runs=3),
        runs=[_run("partial", work=40), _run("failed", CREDENTIALS), _run("failed", CREDENTIALS)],
        audit=AuditReport(problems=["50 writes still pending in the outbox"]),
    )

    lines = report.lines()
    text = "\n".join(lines)

    assert not report.ok
    assert f"no steady state within 3 runs (the last one failed: {CREDENTIALS})" in text
    assert all(problem in text for problem in report.problems), text
    assert f"  2 runs ended with: {CREDENTIALS}" in lines
    assert lines[-1].startswith("FAILED") and lines[-1].endswith("2 problems above")


def test_every_reason_a_recovery_failed_is_printed() -> None:
    report = SoakReport(
        SoakOptions(max_runs=2),
        runs=[_run("partial", work=5), _run("succeeded")],
        audit=AuditReport(),
        recovery_runs=[_run("succeeded", work=4), _run("partial", work=2), _run("partial", work=1)],
        recovered=AuditReport(quarantine_open=Counter({"hubspot INVALID_OPTION": 3})),
    )

    text = "\n".join(report.lines())

    assert report.problems == [
        "after recovery: no steady state within 2 runs (the last one partial, 1 records of "
        "work done)",
        "after recovery: 3 records still quarantined",
    ]
    assert all(f"PROBLEM: {problem}" in text for problem in report.problems), text


def test_a_clean_soak_reports_ok_without_problems() -> None:
    report = SoakReport(SoakOptions(), runs=[_run("partial", work=5), _run("succeeded")],
                        audit=AuditReport(), recovery_runs=[_run("succeeded")],
                        recovered=AuditReport())

    lines = report.lines()

    assert report.ok and report.problems == []
    assert lines[-1].startswith("OK in ") and "PROBLEM" not in "\n".join(lines)


def test_the_audit_tells_writes_pending_in_the_outbox_from_missing_referrals(
    tmp_path: Path,
) -> None:
    with scenario_sandbox(scenario_seed(8, 30), tmp_path) as sandbox:
        config = tmp_path / "refsync.yaml"
        config.write_text(scenario_config(sandbox, f"sqlite:///{tmp_path / 'state.db'}",
                                          max_attempts=1), "utf-8")
        loaded = load_config(config, environ={**SANDBOX_SECRETS})
        sandbox.emulators["hubspot"].faults.add(
            [FaultRule(method="POST", path=r"/batch/", status=503)])
        sandbox.emulators["partnerstack"].faults.add(
            [FaultRule(method="PATCH", path=r"^/api/v2/", status=503)])
        with StateStore(loaded.config.state.url) as store:
            engine = build_engine(loaded, store, context_factory=lambda system: ConnectorContext(
                system=system, sleep=lambda _seconds: None))
            engine.run()

            waiting = audit_sync(store, engine.bindings, sandbox.emulators)
            hubspot = waiting.systems["hubspot"]
            assert hubspot.pending and len(hubspot.pending) == hubspot.expected
            assert hubspot.missing == []
            assert "0 missing" in hubspot.line()
            assert f"{len(hubspot.pending)} pending in the outbox" in hubspot.line()
            assert any("pending in the outbox (not lost)" in p for p in waiting.problems)
            assert not any("missing from hubspot" in p for p in waiting.problems)
            assert any("PRM leads do not show what refsync wrote back yet: the writes are "
                       "pending in the outbox (not lost)" in p for p in waiting.problems)
            assert not any("wrote back:" in p for p in waiting.problems), waiting.problems

            stream = next(b.stream for b in engine.bindings
                          if b.system == "hubspot" and b.role != "prm" and b.writes)
            with store.snapshot() as view:
                lost = view.pending_outbox("hubspot", stream, limit=1)
            with store.transaction() as tx:  # marked sent, never sent: a lost write
                tx.finish_outbox([lost[0]["id"]])

            after = audit_sync(store, engine.bindings, sandbox.emulators)
            assert after.systems["hubspot"].missing == [lost[0]["referral_id"]]
            assert len(after.systems["hubspot"].pending) == len(hubspot.pending) - 1
            assert any("1 referrals are missing from hubspot (neither there, nor pending"
                       in p for p in after.problems), after.problems
