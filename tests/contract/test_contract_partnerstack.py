"""The connector contract, run for the PartnerStack connector against the PartnerStack emulator."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import pytest
import requests

from refsync.connectors.base import ConnectorContext
from refsync.connectors.partnerstack import PartnerStackConnector, PartnerStackSettings
from refsync.sandbox.runner import RunningSandbox, start_sandbox
from refsync.testing import SleepRecorder
from refsync.testing.contract import ConnectorContract

PARTNER = "part_contract"


@pytest.fixture(scope="module")
def sandbox() -> Iterator[RunningSandbox]:
    with start_sandbox(seed=None, ports={"salesforce": 0, "hubspot": 0, "partnerstack": 0}) as sb:
        yield sb


def _flatten(item: Mapping[str, Any]) -> dict[str, Any]:
    row = dict(item)
    for name, value in (item.get("fields") or {}).items():
        row[f"fields.{name}"] = value
    return row


class TestPartnerStackContract(ConnectorContract):
    """PartnerStack leads, keyed by the custom field ``fields.refsync_id``."""

    object_name = "leads"
    key_field = "fields.refsync_id"

    def setup_peer(self, request: pytest.FixtureRequest) -> None:
        self.sandbox: RunningSandbox = request.getfixturevalue("sandbox")
        self.url = self.sandbox.urls["partnerstack"]
        requests.post(f"{self.url}/_sandbox/reset", timeout=10).raise_for_status()
        partner = {"key": PARTNER, "email": "partner@example.com", "created_at": 0,
                   "updated_at": 0}
        self._seed_raw({"partnerships": [partner]})

    def _seed_raw(self, payload: dict[str, Any]) -> None:
        requests.post(f"{self.url}/_sandbox/seed", json=payload, timeout=10).raise_for_status()

    def _ms(self) -> int:
        return int(self.clock().timestamp() * 1000)

    def make_record(self, key: str, variant: int = 0) -> dict[str, Any]:
        return {
            self.key_field: key,
            "name": f"Referral {key} v{variant}",
            "email": f"{key}@prospect.example",
            "partner_key": PARTNER,
        }

    def make_connector(self) -> PartnerStackConnector:
        credentials = self.sandbox.credentials["partnerstack"]
        settings = PartnerStackSettings(
            base_url=f"{self.url}/api/v2",
            public_key=credentials["public_key"],
            secret_key=credentials["secret_key"],
            page_size=self.page_size,
            settle_lag_seconds=0,
        )
        context = ConnectorContext(system="prm", clock=self.clock, sleep=SleepRecorder())
        return PartnerStackConnector(settings, context)

    def seed(self, records: Sequence[Mapping[str, Any]]) -> None:
        stamp = self._ms()
        leads = []
        for record in records:
            lead = {k: v for k, v in record.items() if k != self.key_field}
            lead["fields"] = {"refsync_id": record[self.key_field]}
            leads.append({**lead, "created_at": stamp, "updated_at": stamp})
        self._seed_raw({"leads": leads})

    def change(self, key: str, changes: Mapping[str, Any]) -> None:
        emulator: Any = self.sandbox.emulators["partnerstack"]
        with emulator.lock:
            store = emulator.program.store("leads")
            for item in list(store.items.values()):
                if (item.get("fields") or {}).get("refsync_id") == key:
                    store.put({**item, **changes, "updated_at": self._ms()})

    def peer_records(self) -> list[dict[str, Any]]:
        response = requests.get(f"{self.url}/_sandbox/records/leads", timeout=10)
        response.raise_for_status()
        return [_flatten(item) for item in response.json() if not item.get("deleted")]

    def invalid_record(self, key: str) -> dict[str, Any]:
        return {**self.make_record(key), "email": "not-an-email"}
