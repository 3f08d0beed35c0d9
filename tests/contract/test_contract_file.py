"""The connector contract, run for the file connector (JSON Lines and CSV)."""

from __future__ import annotations

import csv
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from refsync.connectors.base import ConnectorContext
from refsync.connectors.file import FileConnector, FileSettings
from refsync.testing.contract import ConnectorContract


class _FilePeer(ConnectorContract):
    """The peer is the file itself, edited directly (as another tool would)."""

    object_name = "referrals"
    key_field = "refsync_id"
    file_format = "jsonl"

    def setup_peer(self, request: pytest.FixtureRequest) -> None:
        self.directory: Path = request.getfixturevalue("tmp_path")
        self.path = self.directory / f"{self.object_name}.{self.file_format}"

    def make_connector(self) -> FileConnector:
        settings = FileSettings(
            directory=self.directory,
            format=self.file_format,  # type: ignore[arg-type]  # class attribute narrows it
            page_size=self.page_size,
            required_fields=["name"],
        )
        return FileConnector(settings, ConnectorContext(system="files", clock=self.clock))

    def peer_records(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        if self.file_format == "jsonl":
            return [json.loads(line) for line in self.path.read_text().splitlines() if line]
        with self.path.open(newline="") as handle:
            return list(csv.DictReader(handle))

    def _store(self, rows: list[dict[str, Any]]) -> None:
        if self.file_format == "jsonl":
            self.path.write_text("".join(json.dumps(row) + "\n" for row in rows))
            return
        columns: list[str] = []
        for row in rows:
            columns.extend(name for name in row if name not in columns)
        with self.path.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=columns, lineterminator="\n")
            writer.writeheader()
            writer.writerows(rows)

    def seed(self, records: Sequence[Mapping[str, Any]]) -> None:
        rows = self.peer_records()
        stamp = self.clock().isoformat()
        for record in records:
            rows.append({"id": f"id-{record[self.key_field]}", **record, "updated_at": stamp})
        self._store(rows)

    def change(self, key: str, changes: Mapping[str, Any]) -> None:
        rows = self.peer_records()
        for row in rows:
            if row[self.key_field] == key:
                row.update(changes, updated_at=self.clock().isoformat())
        self._store(rows)

    def invalid_record(self, key: str) -> dict[str, Any]:
        return {self.key_field: key, "name": ""}


class TestFileContractJsonl(_FilePeer):
    file_format = "jsonl"


class TestFileContractCsv(_FilePeer):
    file_format = "csv"
