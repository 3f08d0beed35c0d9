"""Fixtures of the sync engine tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.sync.file_workspace import make_workspace


@pytest.fixture
def workspace(tmp_path: Path, state_url: str) -> Path:
    """A PRM and a CRM as files, with their mappings and config, on each backend."""
    return make_workspace(tmp_path, state_url)
