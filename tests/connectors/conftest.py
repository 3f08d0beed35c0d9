"""Fixtures of the connector tests."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import responses
import structlog

from refsync.testing.fakes import ManualClock


@pytest.fixture
def logs() -> Iterator[list[dict[str, Any]]]:
    """Every structlog line written during the test, debug included, whatever level an earlier
    test configured; the configuration comes back afterwards."""
    saved = structlog.get_config()
    structlog.reset_defaults()
    try:
        with structlog.testing.capture_logs() as captured:
            yield captured
    finally:
        structlog.configure(**saved)


@pytest.fixture
def mocked() -> Iterator[responses.RequestsMock]:
    """HTTP answers registered by the test (``responses``); a registered route that was never
    called fails the test."""
    with responses.RequestsMock(assert_all_requests_are_fired=True) as mock:
        yield mock


@pytest.fixture
def clock() -> ManualClock:
    """A clock the test moves by hand (a test module may give its own)."""
    return ManualClock()
