"""File connector behaviour beyond the contract: positions, discovery, atomic writes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from refsync.connectors.base import Connector, ConnectorContext
from refsync.connectors.cursor import Cursor
from refsync.connectors.errors import Action
from refsync.connectors.file import FileConnector, FileSettings
from refsync.errors import FatalConnectorError
from refsync.testing.fakes import ManualClock


def connector(tmp_path: Path, **settings: Any) -> FileConnector:
    return FileConnector(
        FileSettings(directory=tmp_path, **settings),
        ConnectorContext(system="files", clock=ManualClock()),
    )


def read_all(conn: FileConnector, obj: str, cursor: Cursor | None) -> tuple[list[Any], Cursor]:
    records: list[Any] = []
    last = cursor or Cursor()
    for page in conn.read(obj, [], cursor):
        records.extend(record.data for record in page.records)
        last = page.cursor
    return records, last


def test_is_a_connector(tmp_path: Path) -> None:
    assert isinstance(connector(tmp_path), Connector)


def test_append_only_jsonl_is_read_incrementally_by_position(tmp_path: Path) -> None:
    conn = connector(tmp_path, modstamp_field=None, page_size=2)
    path = tmp_path / "events.jsonl"
    path.write_text('{"n": 1}\n{"n": 2}\n{"n": 3}\n{"n": 4, "partial')
    first, cursor = read_all(conn, "events", None)
    assert [r["n"] for r in first] == [1, 2, 3], "an unfinished last line is left for later"

    with path.open("a") as handle:
        handle.write('": true}\n{"n": 5}\n')
    stored = Cursor.from_dict(json.loads(json.dumps(cursor.to_dict())))
    second, cursor = read_all(conn, "events", stored)
    assert [r["n"] for r in second] == [4, 5]
    assert read_all(conn, "events", cursor)[0] == []


def test_a_rewritten_file_is_read_again_from_the_start(tmp_path: Path) -> None:
    conn = connector(tmp_path, modstamp_field=None)
    path = tmp_path / "events.jsonl"
    path.write_text('{"n": 1}\n{"n": 2}\n')
    _, cursor = read_all(conn, "events", None)
    path.write_text('{"n": 9}\n{"n": 8}\n{"n": 7}\n')
    again, _ = read_all(conn, "events", cursor)
    assert [r["n"] for r in again] == [9, 8, 7]


def test_append_only_csv_with_multiline_values(tmp_path: Path) -> None:
    conn = connector(tmp_path, format="csv", modstamp_field=None, page_size=1)
    path = tmp_path / "leads.csv"
    path.write_text('email,note\na@x.test,"two\nlines"\n')
    first, cursor = read_all(conn, "leads", None)
    assert first == [{"email": "a@x.test", "note": "two\nlines"}]
    with path.open("a") as handle:
        handle.write("b@x.test,plain\n")
    second, _ = read_all(conn, "leads", cursor)
    assert second == [{"email": "b@x.test", "note": "plain"}]


def test_requested_fields_are_selected(tmp_path: Path) -> None:
    conn = connector(tmp_path)
    conn.write("leads", "key", [{"key": "a", "email": "a@x.test", "note": "n"}])
    page = next(iter(conn.read("leads", ["key", "email"], None)))
    assert page.records[0].data == {"key": "a", "email": "a@x.test"}
    assert page.records[0].modstamp is not None


def test_write_is_atomic_and_leaves_no_temporary_files(tmp_path: Path) -> None:
    conn = connector(tmp_path, format="csv")
    results = conn.write("leads", "key", [{"key": "a", "score": 3, "vip": True}])
    assert results[0].ok
    names = sorted(p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock"))
    assert names == ["leads.csv"]
    assert (tmp_path / "leads.csv").read_text().splitlines()[1].startswith("a,3,true,")


def test_update_keeps_fields_not_given_and_the_remote_id(tmp_path: Path) -> None:
    conn = connector(tmp_path)
    created = conn.write("leads", "key", [{"key": "a", "email": "a@x.test", "id": "r-1"}])
    updated = conn.write("leads", "key", [{"key": "a", "note": "hi", "id": "other"}])
    assert created[0].remote_id == updated[0].remote_id == "r-1"
    rows = [json.loads(line) for line in (tmp_path / "leads.jsonl").read_text().splitlines()]
    assert rows == [
        {
            "key": "a",
            "email": "a@x.test",
            "id": "r-1",
            "updated_at": "2026-01-01T00:00:00+00:00",
            "note": "hi",
        }
    ]


def test_values_the_format_cannot_hold_are_refused_per_record(tmp_path: Path) -> None:
    conn = connector(tmp_path, format="csv")
    results = conn.write("leads", "key", [{"key": "a", "tags": ["x"]}, {"key": "b"}])
    assert [r.ok for r in results] == [False, True]
    error = results[0].error
    assert error is not None and error.code == "INVALID_VALUE" and error.fields == ("tags",)
    assert error.action is Action.RECORD_ERROR
    assert error.message == (
        "value of tags cannot be stored by files (tags holds a list, which csv cannot store): "
        "change the mapping to write text, a number or true/false there")
    assert error.detail == "tags holds a list, which csv cannot store"


def test_an_update_may_leave_out_a_required_field_the_row_already_has(tmp_path: Path) -> None:
    conn = connector(tmp_path, required_fields=["email"])
    assert conn.write("leads", "key", [{"key": "r-1", "email": "a@b.test", "name": "A"}])[0].ok
    updated = conn.write("leads", "key", [{"key": "r-1", "name": "A2"}])
    assert updated[0].ok and not updated[0].created, updated[0].error
    (row,) = [json.loads(line) for line in (tmp_path / "leads.jsonl").read_text().splitlines()]
    assert (row["email"], row["name"]) == ("a@b.test", "A2")

    # a create still needs it, and an update may not blank it
    refused = conn.write("leads", "key", [{"key": "r-2", "name": "B"},
                                          {"key": "r-1", "email": ""}])
    assert [r.ok for r in refused] == [False, False]
    for result in refused:
        assert result.error is not None and result.error.code == "REQUIRED_FIELD_MISSING"
        assert result.error.fields == ("email",)
        assert result.error.message == (
            "required field(s) email missing: map a value for it or set a default")


def test_a_batch_with_nothing_valid_does_not_create_the_file(tmp_path: Path) -> None:
    results = connector(tmp_path).write("leads", "key", [{"email": "no key"}])
    assert results[0].error is not None
    assert results[0].error.code == "REQUIRED_FIELD_MISSING"
    assert not (tmp_path / "leads.jsonl").exists()


def test_discover_infers_types(tmp_path: Path) -> None:
    (tmp_path / "leads.csv").write_text(
        "id,updated_at,score,amount,vip,signed,email\n"
        "1,2026-01-01T00:00:00Z,3,2.5,true,2026-01-02,a@x.test\n"
        "2,2026-01-01T00:00:00Z,4,3,false,2026-01-03,\n"
    )
    schema = connector(tmp_path, format="csv", required_fields=["email"]).discover("leads")
    types = {name: f.type for name, f in schema.fields.items()}
    assert types == {
        "id": "integer",
        "updated_at": "datetime",
        "score": "integer",
        "amount": "number",
        "vip": "boolean",
        "signed": "date",
        "email": "string",
    }
    assert schema.fields["id"].unique and schema.fields["id"].external_id
    assert not schema.fields["updated_at"].writable
    assert schema.fields["email"].required


def test_discover_of_a_missing_file_lists_the_bookkeeping_fields(tmp_path: Path) -> None:
    assert list(connector(tmp_path).discover("new").fields) == ["updated_at", "id"]


def test_rows_without_a_modstamp_are_reported_with_their_line(tmp_path: Path) -> None:
    (tmp_path / "leads.jsonl").write_text('{"id": "1", "updated_at": "2026-01-01T00:00:00Z"}\n'
                                           '{"id": "2"}\n')
    with pytest.raises(FatalConnectorError, match=r"line 2.*modstamp_field: null"):
        list(connector(tmp_path).read("leads", [], None))


def test_broken_json_is_reported_with_its_line(tmp_path: Path) -> None:
    (tmp_path / "leads.jsonl").write_text("[1]\n")
    with pytest.raises(FatalConnectorError, match="line 1 is not a JSON object"):
        list(connector(tmp_path, modstamp_field=None).read("leads", [], None))


def test_object_names_cannot_escape_the_directory(tmp_path: Path) -> None:
    with pytest.raises(FatalConnectorError, match="plain file name"):
        connector(tmp_path).path_of("../etc/passwd")


def test_check_reports_a_missing_directory(tmp_path: Path) -> None:
    report = connector(tmp_path / "nope").check()
    assert not report.ok
    assert "does not exist" in report.findings[0].message


def test_settings_refuse_unknown_keys(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="extra"):
        FileSettings.model_validate({"directory": str(tmp_path), "fromat": "csv"})


def test_a_known_remote_id_updates_that_row(tmp_path: Path) -> None:
    from refsync.connectors.base import REMOTE_ID_FIELD

    conn = connector(tmp_path)
    (tmp_path / "leads.jsonl").write_text(
        '{"id": "row-1", "email": "a@x.test", "updated_at": "2025-01-01T00:00:00+00:00"}\n'
    )
    [result] = conn.write("leads", "key", [{"key": "k1", "note": "n", REMOTE_ID_FIELD: "row-1"}])
    assert (result.ok, result.created, result.remote_id) == (True, False, "row-1")
    rows = [json.loads(line) for line in (tmp_path / "leads.jsonl").read_text().splitlines()]
    assert len(rows) == 1
    assert rows[0]["key"] == "k1" and rows[0]["email"] == "a@x.test"
    assert REMOTE_ID_FIELD not in rows[0]
