"""Fixtures of the connector tests."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import structlog


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
