"""Quarantine: one open row per record and place, attempts that count, rows that close once the
record syncs. File systems on both backends."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from click.testing import CliRunner
from structlog.testing import capture_logs

from refsync.cli import cli
from refsync.state import StateStore
from tests.sync.file_workspace import (
    CONFIG,
    engine_for,
    read_jsonl,
    with_crm_settings,
    write_jsonl,
)


def _every_row(store: StateStore) -> list[dict[str, Any]]:
    return store.list_quarantine(include_resolved=True)


def _edit_lead(workspace: Path, lead_id: str, **changes: Any) -> None:
    """The partner edits a lead now (later than anything refsync has read)."""
    path = workspace / "prm" / "leads.jsonl"
    leads = read_jsonl(path)
    for lead in leads:
        if lead["id"] == lead_id:
            lead.update(changes, updated_at=datetime.now(UTC).isoformat())
    write_jsonl(path, leads)


def test_a_write_refused_again_and_again_keeps_one_row_that_counts_attempts(
    workspace: Path, state_url: str
) -> None:
    # partners may correct their leads after submitting them; the CRM refuses leads with no
    # company
    mapping = (workspace / "prm.yaml").read_text()
    for name in ("email", "company"):
        mapping = mapping.replace(f"{name}: {{remote: {name}, rule: partner_owned",
                                  f"{name}: {{remote: {name}, rule: remote_wins")
    (workspace / "prm.yaml").write_text(mapping)
    (workspace / "refsync.yaml").write_text(
        with_crm_settings(CONFIG.format(url=state_url), "required_fields: [Company]"))
    _edit_lead(workspace, "L2", company="")
    engine, store = engine_for(workspace)
    with capture_logs() as logs:
        assert engine.run().counts["quarantined"] == 1
    (first,) = store.list_quarantine()
    assert (first["direction"], first["error_code"], first["attempts"]) == \
        ("out", "REQUIRED_FIELD_MISSING", 1)
    # on-call can follow it: a log line and the referral's history name the refusal
    (line,) = [entry for entry in logs if entry["event"] == "write quarantined"]
    assert line["referral_id"] == first["referral_id"] and line["system"] == "crm"
    assert line["code"] == "REQUIRED_FIELD_MISSING" and line["run_id"]
    history = [e for e in store.events_of(first["referral_id"]) if e["kind"] == "quarantined"]
    assert [e["payload"]["code"] for e in history] == ["REQUIRED_FIELD_MISSING"]

    # the partner edits the lead, still with no company: the write is refused again
    _edit_lead(workspace, "L2", email="bob.b@globex.com")
    assert engine.run().counts["quarantined"] == 1
    (again,) = _every_row(store)
    assert again["id"] == first["id"] and again["attempts"] == 2
    assert again["created_at"] == first["created_at"], "the first failure's time stays"
    assert again["resolved_at"] is None

    # a retry before the fix fails once more: the row it replayed reopens
    report = engine.retry(None)
    assert report.counts["quarantined"] == 1
    (retried,) = _every_row(store)
    assert retried["id"] == first["id"] and retried["attempts"] == 3
    assert retried["resolved_at"] is None

    # the partner adds the company: the write goes through and the row closes by itself
    _edit_lead(workspace, "L2", company="Globex")
    report = engine.run()
    assert report.counts["written"] >= 1 and report.counts["quarantined"] == 0
    assert store.list_quarantine() == []
    (closed,) = _every_row(store)
    assert closed["resolved_at"] is not None
    assert any(row["Email"] == "bob.b@globex.com" and row["Company"] == "Globex"
               for row in read_jsonl(workspace / "crm" / "Lead.jsonl"))
    store.close()


def test_a_record_that_cannot_be_read_keeps_one_row_until_it_reads(workspace: Path) -> None:
    _edit_lead(workspace, "L2", status="bogus")
    engine, store = engine_for(workspace)
    with capture_logs() as logs:
        assert engine.run().counts["quarantined"] == 1
    (first,) = store.list_quarantine()
    assert (first["direction"], first["external_id"], first["attempts"]) == ("in", "L2", 1)
    (line,) = [entry for entry in logs if entry["event"] == "record quarantined"]
    assert line["external_id"] == "L2" and line["code"] == first["error_code"]
    # the log says what `refsync errors` says: every error, each naming its field
    assert line["message"] == first["message"] and line["message"].startswith("status: ")
    # `refsync errors` names the partner's record, so a person can find it and fix it
    listed = CliRunner().invoke(cli, ["errors", "-c", str(workspace / "refsync.yaml")],
                                terminal_width=200)
    assert listed.exit_code == 0 and "L2" in listed.output, listed.output

    # read again while still unreadable: the same row, one more attempt
    _edit_lead(workspace, "L2", status="bogus")
    engine.run()
    (again,) = _every_row(store)
    assert again["id"] == first["id"] and again["attempts"] == 2

    # a retry re-maps the kept payload, which still fails: the row reopens
    engine.retry(None)
    (retried,) = _every_row(store)
    assert retried["id"] == first["id"] and retried["attempts"] == 3
    assert retried["resolved_at"] is None

    # the partner fixes the status: the lead is read, becomes a referral, and the row closes
    _edit_lead(workspace, "L2", status="new")
    report = engine.run()
    assert report.counts["created"] == 1 and report.counts["quarantined"] == 0
    assert store.list_quarantine() == []
    assert any(row["Email"] == "bob@globex.com"
               for row in read_jsonl(workspace / "crm" / "Lead.jsonl"))
    store.close()
