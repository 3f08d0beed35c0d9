"""What the crash harness reports: every reason its verdict is FAILED on a ``PROBLEM:`` line,
and a child that crashed (not killed by the harness) told apart from one that finished."""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

from refsync.testing.audit import AuditReport
from refsync.testing.chaos import Attempt, ChaosOptions, ChaosReport, _Child
from refsync.testing.chaos_retry import RetryChaosOptions, RetryChaosReport

CRASH = "RuntimeError: refsync raised where it should not"
CREDENTIALS = "hubspot rejected the credentials even after signing in again: check the client id"


def _killed(number: int) -> Attempt:
    return Attempt(number, f"at call +{number}", -9, phase="mid-run",
                   killed_during="salesforce PATCH /services/data/{version}/composite")


def _settled(first: int) -> list[Attempt]:
    return [Attempt(first, "no kill", 0, counts={"created": 40}),
            Attempt(first + 1, "no kill", 0, counts={"created": 0})]


def _problem_lines(lines: list[str]) -> list[str]:
    return [line.removeprefix("PROBLEM: ") for line in lines if line.startswith("PROBLEM: ")]


def test_syncs_that_never_settle_say_so_and_how_the_last_one_ended() -> None:
    report = ChaosReport(
        ChaosOptions(seed=4, max_settle_runs=3),
        attempts=[_killed(1), _killed(2)],
        settle=[Attempt(3, "no kill", 0, counts={"created": 93}),
                Attempt(4, "no kill", 1, last_stderr_line=CREDENTIALS),
                Attempt(5, "no kill", 1, last_stderr_line=CREDENTIALS)],
        audit=AuditReport(),
    )

    lines = report.lines()

    assert not report.ok
    assert report.problems == [
        f"the syncs did not settle in 3 runs after the last kill (the last one exit 1: "
        f"{CREDENTIALS})"]
    assert _problem_lines(lines) == report.problems, lines
    assert lines[-1].startswith("FAILED in ") and lines[-1].endswith("(seed 4): 1 problem above")


def test_syncs_still_working_at_the_end_say_how_much_they_did() -> None:
    report = ChaosReport(ChaosOptions(max_settle_runs=2), attempts=[_killed(1)],
                         settle=[Attempt(2, "no kill", 0, counts={"created": 9}),
                                 Attempt(3, "no kill", 0, counts={"updated": 2})],
                         audit=AuditReport())

    assert _problem_lines(report.lines()) == [
        "the syncs did not settle in 2 runs after the last kill (the last one exit 0, 2 records "
        "of work done)"]


def test_every_reason_the_verdict_is_failed_is_printed() -> None:
    report = ChaosReport(
        ChaosOptions(),
        attempts=[_killed(1), Attempt(2, "at call +3", 1, raised=True, last_stderr_line=CRASH)],
        settle=[Attempt(3, "no kill", 4, counts={"deferred": 2})],
        interim_problems=["after attempt 1: the salesforce cursor is past what was committed"],
        reference_differences=["1 referrals ended differently than in the uninterrupted sync"],
        audit=AuditReport(problems=["2 referrals are missing from hubspot"]),
    )

    lines = report.lines()
    printed = "\n".join(lines)

    assert len(report.problems) == 5
    assert all(f"PROBLEM: {problem}" in lines for problem in report.problems), printed
    assert lines[-1].endswith(": 5 problems above")


def test_a_crashed_attempt_is_counted_apart_and_fails_the_verdict() -> None:
    report = ChaosReport(
        ChaosOptions(seed=4),
        attempts=[
            _killed(1),
            Attempt(2, "at call +5", 0, counts={"created": 3}),
            Attempt(3, "at call +8", 4),
            Attempt(4, "at call +2", 1, last_stderr_line=CREDENTIALS),  # a failed run
            Attempt(5, "at hubspot write #2", 1, raised=True, last_stderr_line=CRASH),
            Attempt(6, "at call +1", -11),  # ended by a signal the harness did not send
        ],
        settle=_settled(7),
        audit=AuditReport(),
    )

    lines = report.lines()

    assert [a.number for a in report.attempts if a.crashed] == [5, 6]
    assert lines[0].endswith("6 attempts, 1 killed by SIGKILL, 3 finished before their kill, "
                             "2 crashed"), lines[0]
    assert not report.ok
    assert _problem_lines(lines) == [f"attempt 5 crashed with exit 1: {CRASH}",
                                     "attempt 6 crashed with exit -11"]
    assert lines[-1].startswith("FAILED") and lines[-1].endswith("2 problems above")


def test_a_child_that_crashed_and_was_killed_before_it_exited_is_a_crash() -> None:
    crashed_then_killed = _killed(2)
    crashed_then_killed.raised, crashed_then_killed.last_stderr_line = True, CRASH
    report = ChaosReport(ChaosOptions(), attempts=[_killed(1), crashed_then_killed,
                                                   Attempt(3, "at call +4", 0)],
                         settle=_settled(4), audit=AuditReport())

    lines = report.lines()

    assert report.kills == 2 and report.crashed == 1
    assert lines[0].endswith("3 attempts, 2 killed by SIGKILL, 1 finished before their kill, "
                             "1 crashed (1 of them then killed by SIGKILL before they exited)"), \
        lines[0]
    assert _problem_lines(lines) == [
        f"attempt 2 crashed, then was killed by SIGKILL before it exited: {CRASH}"]


def test_an_exit_code_no_run_outcome_gives_is_a_crash() -> None:
    report = ChaosReport(ChaosOptions(), attempts=[_killed(1), Attempt(2, "at call +1", 2)],
                         settle=_settled(3), audit=AuditReport())

    assert not report.ok
    assert report.crashed == 1
    assert report.problems == ["attempt 2 crashed with exit 2"]


def test_a_child_that_crashed_after_the_last_kill_is_reported_though_the_next_ones_settled(
) -> None:
    report = ChaosReport(
        ChaosOptions(),
        attempts=[_killed(1)],
        settle=[Attempt(2, "no kill", 1, raised=True, last_stderr_line=CRASH), *_settled(3)],
        audit=AuditReport(),
    )

    lines = report.lines()

    assert "after the last kill: exit 1 (0 work, crashed), exit 0 (40 work), exit 0 (0 work)" \
        in lines
    assert _problem_lines(lines) == [f"child 2 after the last kill crashed with exit 1: {CRASH}"]
    assert not report.ok


def test_a_clean_campaign_reports_ok_without_problems() -> None:
    report = ChaosReport(ChaosOptions(), attempts=[_killed(1), Attempt(2, "at call +9", 0)],
                         settle=_settled(3), audit=AuditReport())

    lines = report.lines()

    assert report.ok and report.problems == []
    assert lines[0].endswith("2 attempts, 1 killed by SIGKILL, 1 finished before their kill, "
                             "0 crashed")
    assert lines[-1].startswith("OK in ") and "PROBLEM" not in "\n".join(lines)


def test_the_retry_harness_reports_crashed_retries_and_every_other_reason() -> None:
    stranded = ("1 resolved quarantine rows whose referral is neither in the CRM (or linked to "
                "the record read), nor pending in the outbox, nor quarantined again: 0a1b2c3d")
    report = RetryChaosReport(
        RetryChaosOptions(seed=7, max_settle_runs=2),
        attempts=[_killed(1), Attempt(2, "at salesforce write #1", 1, raised=True,
                                      last_stderr_line=CRASH)],
        settle=[Attempt(3, "no kill", 4, counts={"replayed": 5}),
                Attempt(4, "no kill", 1, last_stderr_line=CREDENTIALS)],
        audit=AuditReport(quarantine_open=Counter({"hubspot INVALID_OPTION": 2})),
        refused=Counter({"hubspot": 4}),
        stranded=[stranded],
    )

    lines = report.lines()

    assert lines[0].endswith("2 attempts, 1 killed by SIGKILL, 0 finished before their kill, "
                             "1 crashed")
    assert _problem_lines(lines) == report.problems == [
        f"attempt 2 crashed with exit 1: {CRASH}",
        f"the syncs did not settle in 2 runs after the last kill (the last one exit 1: "
        f"{CREDENTIALS})",
        stranded,
        "2 quarantine rows still open after settling",
    ]
    assert any(line.startswith("records refused while faulty: hubspot 4") for line in lines)
    assert lines[-1].startswith("FAILED") and lines[-1].endswith("4 problems above")


def test_a_child_that_raises_is_a_crash_quoting_its_last_line(tmp_path: Path) -> None:
    # the interpreter the harness starts `-m refsync sync` with: one that raises at once
    interpreter = tmp_path / "python"
    interpreter.write_text(f"#!{sys.executable}\nraise RuntimeError('refsync raised where it "
                           "should not')\n", "utf-8")
    interpreter.chmod(0o755)
    child = _Child(ChaosOptions(python=str(interpreter)), tmp_path / "refsync.yaml",
                   tmp_path / "runs")

    attempt = child.result(1, "at call +1", child.start(1).wait())

    assert attempt.exit_code == 1 and attempt.raised and attempt.crashed
    assert attempt.last_stderr_line == CRASH


def test_json_log_lines_tell_a_crash_from_a_failed_run(tmp_path: Path) -> None:
    child = _Child(ChaosOptions(), tmp_path / "refsync.yaml", tmp_path / "runs")
    took_over = {"event": "took the sync lease over from a process that stopped renewing it",
                 "level": "warning"}
    crashed = {"error": CRASH, "event": "command crashed", "exit_code": 1, "level": "error",
               "traceback": f"Traceback (most recent call last):\n  ...\n{CRASH}\n"}
    failed = {"error": CREDENTIALS, "event": "command failed", "exit_code": 1, "level": "error"}
    for number, events in ((1, [took_over, crashed]), (2, [took_over, failed])):
        (tmp_path / "runs" / f"{number:03d}.out").write_text("", "utf-8")
        (tmp_path / "runs" / f"{number:03d}.err").write_text(
            "".join(json.dumps(event) + "\n" for event in events), "utf-8")

    crash, failure = child.result(1, "at call +1", 1), child.result(2, "at call +1", 1)

    assert crash.crashed and crash.last_stderr_line == CRASH
    assert not failure.crashed and failure.last_stderr_line == CREDENTIALS
