"""A partial run's reason says each problem once: a spent daily API allowance that stopped
several streams is one problem, naming the streams it stopped."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from refsync.cli import cli
from refsync.config import load_config
from refsync.sandbox.config import sandbox_config
from refsync.sandbox.runner import RunningSandbox, start_sandbox
from refsync.state import StateStore
from refsync.sync.engine import SyncEngine
from refsync.sync.wiring import build_engine

DEALS = {"hubspot.deals": {"object": "deals", "direction": "both",
                           "mapping": "builtin:hubspot-deals"}}


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[RunningSandbox]:
    with start_sandbox(seed="demo", ports=dict.fromkeys(
            ("salesforce", "hubspot", "partnerstack"), 0), workdir=tmp_path / "tls") as running:
        yield running


@pytest.fixture
def config(sandbox: RunningSandbox, tmp_path: Path, state_url: str) -> Path:
    """The sandbox's config with two HubSpot streams, contacts and deals."""
    path = tmp_path / "refsync.yaml"
    path.write_text(sandbox_config(sandbox.urls, sandbox.ca_bundle, state_url,
                                   comment="why test", instance="refsync-test", streams=DEALS))
    return path


def engine_for(config: Path) -> tuple[SyncEngine, StateStore]:
    loaded = load_config(config)
    store = StateStore(loaded.config.state.url)
    return build_engine(loaded, store), store


def spend_hubspot_allowance(sandbox: RunningSandbox) -> None:
    sandbox.emulators["hubspot"].configure(
        {"enforce_rate_limits": True, "daily_max": 1000, "daily_used": 1000})


def test_a_spent_allowance_is_said_once_naming_every_stream_it_stopped(
    sandbox: RunningSandbox, config: Path
) -> None:
    engine, store = engine_for(config)
    spend_hubspot_allowance(sandbox)
    report = engine.run()
    assert report.status == "partial"
    assert report.stopped_streams == ["hubspot.contacts", "hubspot.deals"]
    why = report.error or ""
    # the first refusal's words, once: they say when the allowance comes back
    assert why.count("daily API allowance") == 1, why
    assert why.startswith("hubspot daily API allowance is spent (HubSpot DAILY limit): "), why
    assert "at midnight in the portal's time zone" in why
    # with what it stopped: the reading of both streams, the writes waiting for contacts
    assert "reading hubspot.contacts and hubspot.deals resumes next run" in why, why
    assert "the remaining writes to hubspot.contacts wait in the outbox for the next run" in why
    # the writes the allowance held are told of there, not again as failed writes
    assert "deferred after remote failures" not in why, why
    assert store.list_runs(limit=1)[0]["error"] == why
    store.close()


def test_refsync_runs_shows_the_allowance_once(sandbox: RunningSandbox, config: Path) -> None:
    engine, store = engine_for(config)
    engine.run()  # everything read once: the next run only reads
    spend_hubspot_allowance(sandbox)
    report = engine.run()
    store.close()
    assert report.status == "partial" and report.error is not None
    assert report.error.count("daily API allowance") == 1, report.error
    assert report.error.endswith(
        " — reading hubspot.contacts and hubspot.deals resumes next run"), report.error
    listed = CliRunner().invoke(cli, ["runs", "--json", "-c", str(config)])
    assert listed.exit_code == 0, listed.output
    assert report.error in listed.stdout
