"""Regressions the crash harness found."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import requests

from refsync.connectors.base import ConnectorContext
from refsync.connectors.cursor import Cursor
from refsync.connectors.hubspot import HubSpotConnector, HubSpotSettings
from refsync.sandbox.runner import RunningSandbox, start_sandbox
from refsync.testing import SleepRecorder


@pytest.fixture
def sandbox() -> Iterator[RunningSandbox]:
    with start_sandbox(seed=None, ports={"salesforce": 0, "hubspot": 0, "partnerstack": 0}) as sb:
        requests.post(f"{sb.urls['hubspot']}/_sandbox/settings",
                      json={"enforce_rate_limits": False}, timeout=10).raise_for_status()
        yield sb


def _seed(sandbox: RunningSandbox, key: str, stamp: datetime) -> None:
    iso = stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    requests.post(f"{sandbox.urls['hubspot']}/_sandbox/seed", json={"contacts": [
        {"refsync_id": key, "hs_lastmodifieddate": iso}]}, timeout=10).raise_for_status()


def test_a_full_hubspot_read_continues_from_the_newest_modstamp_read(
    sandbox: RunningSandbox,
) -> None:
    """A full read (list paging) used to leave its cursor at the listing's start on refsync's
    clock, ahead of every record read. With refsync's clock ahead of HubSpot's, a contact
    changed after the listing got a modstamp below that cursor and was never read."""
    hubspot_now = datetime.now(UTC).replace(microsecond=0)
    _seed(sandbox, "r-1", hubspot_now - timedelta(minutes=2))
    _seed(sandbox, "r-2", hubspot_now - timedelta(minutes=1))
    ahead = hubspot_now + timedelta(minutes=10)  # refsync's clock runs 10 minutes ahead
    settings = HubSpotSettings(base_url=sandbox.urls["hubspot"], settle_lag_seconds=0,
                               search_per_second=1000,
                               access_token=sandbox.credentials["hubspot"]["access_token"])
    connector = HubSpotConnector(settings, ConnectorContext(
        system="hubspot", clock=lambda: ahead, sleep=SleepRecorder()))

    pages = list(connector.read("contacts", ["refsync_id"], None))
    assert sorted(r.data["refsync_id"] for p in pages for r in p.records) == ["r-1", "r-2"]
    cursor = Cursor.from_dict(pages[-1].cursor.to_dict())
    assert cursor.modstamp == hubspot_now - timedelta(minutes=1)

    _seed(sandbox, "r-3", hubspot_now)  # changed after the listing, before refsync's "now"
    later = list(connector.read("contacts", ["refsync_id"], cursor))
    assert [r.data["refsync_id"] for p in later for r in p.records] == ["r-3"]


def test_a_full_hubspot_read_of_nothing_leaves_no_modstamp(sandbox: RunningSandbox) -> None:
    settings = HubSpotSettings(base_url=sandbox.urls["hubspot"], settle_lag_seconds=0,
                               access_token=sandbox.credentials["hubspot"]["access_token"])
    connector = HubSpotConnector(settings, ConnectorContext(system="hubspot",
                                                            sleep=SleepRecorder()))
    pages = list(connector.read("contacts", ["refsync_id"], None))
    assert pages[-1].cursor.modstamp is None and pages[-1].cursor.position is None
