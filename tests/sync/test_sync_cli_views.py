"""What `refsync referrals show` and `refsync errors --all` show a person looking into a
referral or a quarantined record. File systems on both backends."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from refsync.cli import cli
from tests.sync.file_workspace import (
    engine_for,
    quarantined_open_and_resolved,
    read_jsonl,
    write_jsonl,
)


def _flowing(text: str) -> str:
    """Table output as one line of words: a value wrapped inside its cell reads on."""
    return " ".join(text.replace("│", " ").split())


def test_referrals_show_gives_every_value_and_detail_in_full(workspace: Path) -> None:
    leads = read_jsonl(workspace / "prm" / "leads.jsonl")
    leads[2]["company"] = "Acme Inc [/b] [bold]Holdings[/bold] " + "and Partners " * 6
    write_jsonl(workspace / "prm" / "leads.jsonl", leads)
    engine, store = engine_for(workspace)
    engine.run()
    (duplicate,) = store.list_referrals(status="duplicate")
    (original,) = [r for r in store.list_referrals() if r["partner_id"] == "p-ana"]
    store.close()
    reason = duplicate["status_reason"]
    assert len(reason) > 60
    result = CliRunner().invoke(cli, ["referrals", "show", duplicate["id"][-12:],
                                      "-c", str(workspace / "refsync.yaml")])
    assert result.exit_code == 0, result.output
    shown = _flowing(result.output)
    assert _flowing(reason) in shown  # who registered it first, when, which key matched
    assert f"original={original['id']}" in shown  # the referral it duplicates, whole
    # a partner's text is shown as it is: brackets are not markup
    assert _flowing(duplicate["company"]) in shown
    assert "..." not in result.output


def test_errors_all_tells_resolved_rows_from_open_ones(workspace: Path, state_url: str) -> None:
    open_id, resolved_id = quarantined_open_and_resolved(state_url)
    config = str(workspace / "refsync.yaml")
    result = CliRunner().invoke(cli, ["errors", "--all", "-c", config])
    assert result.exit_code == 0, result.output
    lines = {line.split("│")[1].strip(): line for line in result.output.splitlines()
             if line.startswith("│")}
    assert "open" in lines[str(open_id)] and "resolved" not in lines[str(open_id)]
    assert "resolved 20" in lines[str(resolved_id)]  # and when
    assert "Required fields are missing: [Company]" in lines[str(open_id)]
    listed = json.loads(CliRunner().invoke(cli, ["errors", "--all", "--json", "-c", config])
                        .output)
    resolved_at = {row["id"]: row["resolved_at"] for row in listed}
    assert resolved_at[open_id] is None and resolved_at[resolved_id] is not None
    # without --all only open rows are listed, and none needs telling apart
    only_open = CliRunner().invoke(cli, ["errors", "-c", config]).output
    listed_ids = [line.split("│")[1].strip() for line in only_open.splitlines()
                  if line.startswith("│")]
    assert listed_ids == [str(open_id)] and "state" not in only_open


def test_list_filters_are_checked_and_an_empty_job_says_why(workspace: Path) -> None:
    engine, store = engine_for(workspace)
    engine.run()
    store.close()
    config = ["-c", str(workspace / "refsync.yaml")]
    runner = CliRunner()
    bogus = runner.invoke(cli, ["referrals", "--status", "bogus", *config])
    assert bogus.exit_code == 2 and "'bogus' is not one of 'submitted'" in bogus.output
    accepted = runner.invoke(cli, ["referrals", "--status", "Submitted", "--json", *config])
    assert accepted.exit_code == 0, accepted.output
    assert {row["status"] for row in json.loads(accepted.stdout)} == {"submitted"}
    for command in (["referrals"], ["runs"], ["errors"]):
        none = runner.invoke(cli, [*command, "--limit", "0", *config])
        assert none.exit_code == 2 and "0 is not in the range x>=1" in none.output, command
    other = runner.invoke(cli, ["runs", "--job", "nightly", *config])
    assert other.exit_code == 0
    assert "No runs of job 'nightly': `refsync runs` lists every job's." in other.output


def test_runs_show_the_counts_that_are_not_zero(workspace: Path) -> None:
    engine, store = engine_for(workspace)
    report = engine.run()
    store.close()
    listed = CliRunner(env={"COLUMNS": "400"}).invoke(
        cli, ["runs", "-c", str(workspace / "refsync.yaml")])
    assert listed.exit_code == 0, listed.output
    assert f"created={report.counts['created']}" in listed.output
    assert "=0" not in listed.output, listed.output  # zero counters are left out, as sync does
    assert "streams=" not in listed.output and "{" not in listed.output  # per stream: --json
