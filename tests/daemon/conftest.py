"""Fixtures of the daemon tests: a sandbox with a few hundred referrals and a config for it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from refsync.sandbox.config import sandbox_config
from refsync.sandbox.demo import generate_demo
from refsync.sandbox.runner import RunningSandbox, start_sandbox

SYSTEMS = ("salesforce", "hubspot", "partnerstack")

WriteConfig = Callable[..., Path]


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[RunningSandbox]:
    with start_sandbox(seed=generate_demo(referrals=200), ports=dict.fromkeys(SYSTEMS, 0),
                       workdir=tmp_path / "tls") as running:
        yield running


@pytest.fixture
def write_config(tmp_path: Path, sandbox: RunningSandbox) -> WriteConfig:
    """Write a config for the sandbox on ``state_url`` with extra top-level YAML; return it.

    ``settings`` and ``streams`` go to :func:`sandbox_config` (connector settings by system,
    stream keys by ``system.stream``).
    """

    def write(state_url: str, extra: str = "", name: str = "refsync.yaml",
              **changes: Any) -> Path:
        text = sandbox_config(sandbox.urls, sandbox.ca_bundle, state_url,
                              comment="daemon test", **changes)
        path = tmp_path / name
        path.write_text(text + extra)
        return path

    return write


def assert_each_referral_once(sandbox: RunningSandbox, links: dict[str, int]) -> None:
    """Every referral refsync wrote is in Salesforce and HubSpot exactly once."""
    leads = [r["Refsync_Id__c"] for r in sandbox.emulators["salesforce"].records("Lead")
             if r.get("Refsync_Id__c")]
    assert len(leads) == len(set(leads)) == links["salesforce"] > 0
    contacts = [r["properties"]["refsync_id"]
                for r in sandbox.emulators["hubspot"].records("contacts")
                if r.get("properties", {}).get("refsync_id")]
    assert len(contacts) == len(set(contacts)) == links["hubspot"] > 0
