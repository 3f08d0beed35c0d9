"""The contract suite every connector must pass, reusable by third-party connector packages.

Subclass :class:`ConnectorContract` in a test module whose name starts with ``test_``, name the
class ``Test...``, and fill in the peer hooks::

    class TestFileContract(ConnectorContract):
        object_name = "referrals"
        key_field = "refsync_id"

        def setup_peer(self, request):  # a fresh peer for each test
            ...
        def make_connector(self): ...
        def seed(self, records): ...        # write straight into the peer, not via the connector
        def change(self, key, changes): ...
        def peer_records(self): ...
        def invalid_record(self, key): ...

The peer stamps changes with :attr:`ConnectorContract.clock`; records seeded or changed
without a :meth:`ConnectorContract.tick` in between share one modstamp, which is how the suite
builds ties across page boundaries. Configure the connector with a page size of
:attr:`ConnectorContract.page_size` and no settle lag.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, ClassVar

import pytest

from refsync.connectors.base import CheckReport, Connector, Page
from refsync.connectors.cursor import Cursor
from refsync.connectors.errors import Action
from refsync.testing.fakes import ManualClock

__all__ = ["ConnectorContract"]


class ConnectorContract(ABC):
    """Behaviour the engine relies on from every connector, tested against a real peer.

    Attributes:
        object_name: the object the suite reads and writes.
        key_field: the external-id field writes upsert by.
        page_size: the page size the connector must be configured with (small, so the suite's
            handful of records spans several pages).
        name_field: a plain text field the suite changes to make new versions of a record.
    """

    object_name: ClassVar[str]
    key_field: ClassVar[str]
    page_size: ClassVar[int] = 2
    name_field: ClassVar[str] = "name"

    clock: ManualClock

    # --- hooks a concrete suite fills in --------------------------------------------------

    @abstractmethod
    def setup_peer(self, request: pytest.FixtureRequest) -> None:
        """Prepare an empty peer for one test (``request.getfixturevalue`` gives fixtures)."""

    @abstractmethod
    def make_connector(self) -> Connector:
        """Return a connector talking to the peer, using :attr:`clock` as its clock."""

    @abstractmethod
    def seed(self, records: Sequence[Mapping[str, Any]]) -> None:
        """Create ``records`` directly in the peer, stamped with the current :attr:`clock`."""

    @abstractmethod
    def change(self, key: str, changes: Mapping[str, Any]) -> None:
        """Modify the record with this key directly in the peer (new modstamp = :attr:`clock`)."""

    @abstractmethod
    def peer_records(self) -> list[dict[str, Any]]:
        """Return every record of :attr:`object_name` as the peer holds it."""

    @abstractmethod
    def invalid_record(self, key: str) -> dict[str, Any]:
        """Return a record (with this key) that the peer refuses at record level."""

    def make_record(self, key: str, variant: int = 0) -> dict[str, Any]:
        """Return a valid record with this key; ``variant`` changes a non-key value."""
        return {self.key_field: key, self.name_field: f"Referral {key} v{variant}"}

    def read_fields(self) -> list[str]:
        """Fields to request when reading (by default those of :meth:`make_record`)."""
        return list(self.make_record("k"))

    def tick(self, seconds: float = 1.0) -> None:
        """Let time pass for the peer and the connector."""
        self.clock.advance(seconds)

    # --- plumbing -------------------------------------------------------------------------

    @pytest.fixture(autouse=True)
    def _contract_peer(self, request: pytest.FixtureRequest) -> Iterator[None]:
        self.clock = ManualClock()
        self.setup_peer(request)
        yield

    def _read_all(self, cursor: Cursor | None, *, stop_after: int | None = None) -> list[Page]:
        pages: list[Page] = []
        for page in self.make_connector().read(self.object_name, self.read_fields(), cursor):
            pages.append(page)
            if stop_after is not None and len(pages) >= stop_after:
                break
        return pages

    def _keys(self, pages: Sequence[Page]) -> list[str]:
        return [str(record.data.get(self.key_field)) for page in pages for record in page.records]

    def _seed_keys(self, keys: Sequence[str], variant: int = 0) -> None:
        self.seed([self.make_record(key, variant) for key in keys])

    # --- the contract ---------------------------------------------------------------------

    def test_check_succeeds(self) -> None:
        report = self.make_connector().check()
        assert isinstance(report, CheckReport)
        assert report.auth_ok, report.findings
        assert report.ok, report.findings

    def test_discover_returns_the_key_field(self) -> None:
        self._seed_keys(["k1"])
        schema = self.make_connector().discover(self.object_name)
        assert self.key_field in schema.fields
        assert schema.fields[self.key_field].name == self.key_field

    def test_full_read_returns_every_record_once_across_pages(self) -> None:
        keys = [f"k{n}" for n in range(7)]
        self._seed_keys(keys[:4])
        self.tick()
        self._seed_keys(keys[4:])
        self.tick()
        pages = self._read_all(None)
        assert len(pages) >= 2, "the suite needs the connector to use the small page size"
        assert sorted(self._keys(pages)) == sorted(keys)
        for page in pages:
            for record in page.records:
                assert record.id, "every record carries its remote id"

    def test_incremental_read_returns_only_changes_once_with_ties_at_page_boundaries(
        self,
    ) -> None:
        keys = [f"k{n}" for n in range(5)]
        self._seed_keys(keys)  # five records sharing one modstamp: ties across pages
        self.tick()

        first_page = self._read_all(None, stop_after=1)
        assert len(first_page) == 1
        interrupted_at = first_page[0].cursor
        rest = self._read_all(Cursor.from_dict(interrupted_at.to_dict()))
        resumed = self._keys(first_page) + self._keys(rest)
        assert Counter(resumed) == Counter(keys), "a run resumed mid-tie repeats and skips none"
        cursor = rest[-1].cursor

        self.tick()
        for key in ("k1", "k3", "k4"):
            self.change(key, {self.name_field: f"Referral {key} changed"})
        self.tick()
        changed_pages = self._read_all(cursor)
        assert sorted(self._keys(changed_pages)) == ["k1", "k3", "k4"]
        assert all(
            record.data.get(self.name_field) == f"Referral {record.data[self.key_field]} changed"
            for page in changed_pages
            for record in page.records
        )

        self.tick()
        assert self._keys(self._read_all(changed_pages[-1].cursor)) == []

    def test_write_creates_then_updates_by_key_without_duplicates(self) -> None:
        connector = self.make_connector()
        keys = ["w1", "w2", "w3"]
        created = connector.write(
            self.object_name, self.key_field, [self.make_record(k, 1) for k in keys]
        )
        assert [r.ok for r in created] == [True] * 3, created
        assert [r.created for r in created] == [True] * 3
        assert all(r.remote_id for r in created)

        self.tick()
        updates = [self.make_record(k, 2) for k in keys]
        updated = connector.write(self.object_name, self.key_field, updates)
        assert [(r.ok, r.created) for r in updated] == [(True, False)] * 3, updated
        assert [r.remote_id for r in updated] == [r.remote_id for r in created]

        repeated = connector.write(self.object_name, self.key_field, updates)
        assert [(r.ok, r.created) for r in repeated] == [(True, False)] * 3, repeated

        stored = [row for row in self.peer_records() if row.get(self.key_field) in keys]
        assert sorted(row[self.key_field] for row in stored) == keys, "no duplicates"
        expected = {k: self.make_record(k, 2) for k in keys}
        for row in stored:
            for name, value in expected[row[self.key_field]].items():
                assert row.get(name) == value, (name, row)

    def test_invalid_records_fail_alone_with_classified_errors(self) -> None:
        batch = [self.make_record("ok1"), self.invalid_record("bad1"), self.make_record("ok2")]
        results = self.make_connector().write(self.object_name, self.key_field, batch)
        assert [r.ok for r in results] == [True, False, True], results
        error = results[1].error
        assert error is not None
        assert error.code
        assert error.message
        assert error.action is Action.RECORD_ERROR
        stored = {row.get(self.key_field) for row in self.peer_records()}
        assert {"ok1", "ok2"} <= stored
        assert "bad1" not in stored

    def test_results_come_back_in_input_order(self) -> None:
        connector = self.make_connector()
        connector.write(self.object_name, self.key_field, [self.make_record("o2")])
        order = ["o3", "o2", "o1", "o4"]
        batch = [self.make_record(k, 3) for k in order]
        batch.insert(2, self.invalid_record("o5"))
        results = connector.write(self.object_name, self.key_field, batch)
        assert [r.key for r in results] == ["o3", "o2", "o5", "o1", "o4"]
        assert [r.ok for r in results] == [True, True, False, True, True]
        assert [r.created for r in results] == [True, False, False, True, True]
