"""The connector contract, run for the HubSpot connector against the HubSpot emulator."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import pytest
import requests

from refsync.connectors.base import ConnectorContext
from refsync.connectors.hubspot import HubSpotConnector, HubSpotSettings
from refsync.sandbox.runner import RunningSandbox, start_sandbox
from refsync.testing import SleepRecorder
from refsync.testing.contract import ConnectorContract

#: The suite reads and writes a ``name`` field; contacts get one as a custom property.
_NAME_PROPERTY = {"contacts": [{"name": "name", "type": "string", "groupName": "refsync"}]}


@pytest.fixture(scope="module")
def sandbox() -> Iterator[RunningSandbox]:
    with start_sandbox(seed=None, ports={"salesforce": 0, "hubspot": 0, "partnerstack": 0}) as sb:
        yield sb


def _iso(moment: Any) -> str:
    return str(moment.isoformat(timespec="milliseconds").replace("+00:00", "Z"))


class TestHubSpotContract(ConnectorContract):
    """HubSpot contacts upserted by the unique ``refsync_id`` property."""

    object_name = "contacts"
    key_field = "refsync_id"

    def setup_peer(self, request: pytest.FixtureRequest) -> None:
        self.sandbox: RunningSandbox = request.getfixturevalue("sandbox")
        self.url = self.sandbox.urls["hubspot"]
        requests.post(f"{self.url}/_sandbox/reset", timeout=10).raise_for_status()
        # The suite makes calls back to back; HubSpot's own limits are tested elsewhere.
        requests.post(
            f"{self.url}/_sandbox/settings", json={"enforce_rate_limits": False}, timeout=10
        ).raise_for_status()
        requests.post(
            f"{self.url}/_sandbox/seed", json={"$properties": _NAME_PROPERTY}, timeout=10
        ).raise_for_status()

    def make_connector(self) -> HubSpotConnector:
        settings = HubSpotSettings(
            base_url=self.url,
            access_token=self.sandbox.credentials["hubspot"]["access_token"],
            page_size=self.page_size,
            settle_lag_seconds=0,
        )
        context = ConnectorContext(system="crm", clock=self.clock, sleep=SleepRecorder())
        return HubSpotConnector(settings, context)

    def seed(self, records: Sequence[Mapping[str, Any]]) -> None:
        stamp = _iso(self.clock())
        rows = [{**record, "hs_lastmodifieddate": stamp} for record in records]
        requests.post(
            f"{self.url}/_sandbox/seed", json={"contacts": rows}, timeout=10
        ).raise_for_status()

    def change(self, key: str, changes: Mapping[str, Any]) -> None:
        emulator: Any = self.sandbox.emulators["hubspot"]
        with emulator.lock:
            store = emulator.portal.store("contacts")
            record = store.find_unique(self.key_field, key)
            values = {**changes, "hs_lastmodifieddate": _iso(self.clock())}
            clean, problems = store.check_values(values, trusted=True)
            assert not problems
            store.update(record, clean, emulator.portal.clock.tick())
            emulator.portal.search_index.written("contacts", [record])

    def peer_records(self) -> list[dict[str, Any]]:
        response = requests.get(f"{self.url}/_sandbox/records/contacts", timeout=10)
        response.raise_for_status()
        return [row["properties"] for row in response.json() if not row.get("archived")]

    def invalid_record(self, key: str) -> dict[str, Any]:
        return {self.key_field: key, "name": f"Referral {key}", "refsync_status": "no-such"}
