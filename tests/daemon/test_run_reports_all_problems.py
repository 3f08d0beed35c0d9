"""`refsync run` tells a config with no schedules together with its other problems, at once."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from refsync.cli import cli
from refsync.sandbox.runner import RunningSandbox
from tests.daemon.daemon_helpers import WriteConfig

BROKEN_MAPPING = {"hubspot.contacts": {"mapping": "mappings/hubspot-deal.yaml"}}
"""A stream whose mapping file does not exist (the shipped one is ``builtin:hubspot-deals``)."""
NO_SCHEDULES = "no schedules to run — add a 'schedules:' list"


def test_no_schedules_and_a_broken_mapping_are_told_together(
    sandbox: RunningSandbox, write_config: WriteConfig, tmp_path: Path
) -> None:
    path = write_config(f"sqlite:///{tmp_path / 'state.db'}", streams=BROKEN_MAPPING)
    runner = CliRunner()
    synced = runner.invoke(cli, ["sync", "-c", str(path)])
    assert synced.exit_code == 2, synced.output
    ran = runner.invoke(cli, ["run", "-c", str(path)])
    assert ran.exit_code == 2, ran.output
    # every problem sync tells, and the one only run has
    told = synced.output.splitlines()[:-1]
    assert told and all(line in ran.output for line in told), ran.output
    assert "mapping file mappings/hubspot-deal.yaml" in ran.output
    assert f"{path}:" in ran.output and NO_SCHEDULES in ran.output
    assert "every: 5m" in ran.output
    assert ran.output.endswith(f"{len(told) + 1} problems found; nothing was changed.\n")
    assert not (tmp_path / "state.db").exists()


def test_no_schedules_is_told_with_the_problems_of_a_refused_config(
    sandbox: RunningSandbox, write_config: WriteConfig, tmp_path: Path
) -> None:
    path = write_config(f"sqlite:///{tmp_path / 'state.db'}", "daemon:\n  lease_ttl: 1s\n")
    result = CliRunner().invoke(cli, ["run", "-c", str(path)])
    assert result.exit_code == 2, result.output
    assert "lease_ttl must be at least 3s" in result.output
    assert NO_SCHEDULES in result.output
    assert result.output.endswith("2 problems found; nothing was changed.\n")
    assert not (tmp_path / "state.db").exists()


def test_an_empty_schedules_list_is_located_and_told_as_a_config_problem(
    sandbox: RunningSandbox, write_config: WriteConfig, tmp_path: Path
) -> None:
    path = write_config(f"sqlite:///{tmp_path / 'state.db'}", "schedules: []\n",
                        streams=BROKEN_MAPPING)
    line = path.read_text().splitlines().index("schedules: []") + 1
    result = CliRunner().invoke(cli, ["--log-format", "json", "run", "-c", str(path)])
    assert result.exit_code == 2, result.output
    events = [json.loads(text) for text in result.output.splitlines()]
    problems = [event for event in events if event["event"] == "config problem"]
    assert [(p["line"], p["column"]) for p in problems if p["message"] == "no schedules to run"] \
        == [(line, 1)]
    assert any("hubspot-deal.yaml" in p["message"] for p in problems)
    assert events[-1]["event"] == "command failed" and events[-1]["exit_code"] == 2
    assert not (tmp_path / "state.db").exists()
