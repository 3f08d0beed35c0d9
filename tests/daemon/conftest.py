"""Fixtures of the daemon tests: a sandbox with a few hundred referrals and a config for it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from refsync.sandbox.config import sandbox_config
from refsync.sandbox.demo import generate_demo
from refsync.sandbox.runner import RunningSandbox, start_sandbox
from tests.daemon.daemon_helpers import WriteConfig

SYSTEMS = ("salesforce", "hubspot", "partnerstack")


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
