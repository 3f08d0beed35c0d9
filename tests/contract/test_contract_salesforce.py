"""The connector contract, run for Salesforce against the sandbox emulator over TLS."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import pytest

from refsync.connectors.salesforce import SalesforceConnector
from refsync.sandbox.salesforce.soql import format_datetime
from refsync.testing.contract import ConnectorContract
from refsync.testing.salesforce import SalesforcePeer, running_salesforce


@pytest.fixture(scope="module")
def salesforce_peer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SalesforcePeer]:
    with running_salesforce(tmp_path_factory.mktemp("tls")) as peer:
        yield peer


class TestSalesforceContract(ConnectorContract):
    object_name = "Lead"
    key_field = "Refsync_Id__c"
    name_field = "LastName"

    def setup_peer(self, request: pytest.FixtureRequest) -> None:
        self.peer: SalesforcePeer = request.getfixturevalue("salesforce_peer")
        self.clock = self.peer.fresh()

    def make_connector(self) -> SalesforceConnector:
        return self.peer.connector(self.clock, page_size=self.page_size)

    def make_record(self, key: str, variant: int = 0) -> dict[str, Any]:
        return {self.key_field: key, "LastName": f"Referral {key} v{variant}", "Company": "Acme"}

    def seed(self, records: Sequence[Mapping[str, Any]]) -> None:
        self.peer.emulator.seed({"Lead": [dict(r) for r in records]})

    def change(self, key: str, changes: Mapping[str, Any]) -> None:
        emulator = self.peer.emulator
        with emulator.lock:
            store = emulator.store
            record = store.find_by("Lead", self.key_field, key)[0]
            stamp = format_datetime(store.now())
            store.update(store.object_def("Lead"), record, dict(changes), stamp)

    def peer_records(self) -> list[dict[str, Any]]:
        return [r for r in self.peer.emulator.records("Lead") if not r["IsDeleted"]]

    def invalid_record(self, key: str) -> dict[str, Any]:
        return {**self.make_record(key), "Status": "Not A Real Status"}
