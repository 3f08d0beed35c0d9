"""``set_if_empty`` on the write side: a value the remote holds is left alone by later writes.

The rule fills blanks only. A CRM record whose field sales changed keeps that value, also when
the referral is written there again because another field changed; a field sales cleared is
filled again from the hub.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import update

from refsync.state.store import link_table
from tests.sync.file_workspace import CRM_MAPPING, PRM_MAPPING, engine_for, read_jsonl, write_jsonl


def _with_titles(workspace: Path) -> None:
    """The workspace's mappings with a title: two-way in the PRM, set_if_empty in the CRM, and a
    company the partner may change."""
    (workspace / "prm.yaml").write_text(PRM_MAPPING.replace(
        "  company: {remote: company, rule: partner_owned}\n",
        "  company: {remote: company}\n  title: {remote: title}\n"))
    (workspace / "crm.yaml").write_text(CRM_MAPPING.replace(
        "  company: {remote: Company}\n",
        "  company: {remote: Company}\n  title: {remote: Title, rule: set_if_empty}\n"))
    leads = read_jsonl(workspace / "prm" / "leads.jsonl")
    for lead in leads:
        lead["title"] = "CTO"
    write_jsonl(workspace / "prm" / "leads.jsonl", leads)


def _edit(path: Path, match: dict[str, Any], **changes: Any) -> None:
    """Change the rows of a JSON Lines file that match ``match``, stamped now unless the
    changes give the stamp."""
    rows = read_jsonl(path)
    for row in rows:
        if all(row.get(key) == value for key, value in match.items()):
            stamp = "SystemModstamp" if "SystemModstamp" in row else "updated_at"
            row.update({stamp: datetime.now(UTC).isoformat(), **changes})
    write_jsonl(path, rows)


def _crm_lead(workspace: Path, email: str) -> dict[str, Any]:
    return next(row for row in read_jsonl(workspace / "crm" / "Lead.jsonl")
                if row["Email"] == email)


def test_a_title_sales_changed_survives_a_write_for_another_field(workspace: Path) -> None:
    _with_titles(workspace)
    engine, store = engine_for(workspace)
    assert engine.run().status == "succeeded"
    assert _crm_lead(workspace, "bob@globex.com")["Title"] == "CTO"  # a blank is filled

    _edit(workspace / "crm" / "Lead.jsonl", {"Email": "bob@globex.com"}, Title="Founder")
    assert engine.run().counts["written"] == 0  # both have values: neither is overwritten

    # the partner renames the company: the lead is written to the CRM again
    _edit(workspace / "prm" / "leads.jsonl", {"id": "L2"}, company="Globex Corporation")
    changed = engine.run()
    assert changed.counts["written"] == 1, changed.counts
    bob = _crm_lead(workspace, "bob@globex.com")
    assert bob["Company"] == "Globex Corporation"
    assert bob["Title"] == "Founder"
    # reading that write back is an echo: nothing is written again
    assert engine.run().counts["written"] == 0

    # the partner changes the title too: the CRM still holds a value, so it stays
    _edit(workspace / "prm" / "leads.jsonl", {"id": "L2"}, title="VP Engineering")
    engine.run()
    assert _crm_lead(workspace, "bob@globex.com")["Title"] == "Founder"

    # sales clears the title: the blank is filled from the hub again
    _edit(workspace / "crm" / "Lead.jsonl", {"Email": "bob@globex.com"}, Title="")
    engine.run()
    assert _crm_lead(workspace, "bob@globex.com")["Title"] == "VP Engineering"
    store.close()


def test_a_link_whose_remote_values_are_unknown_leaves_the_field_alone(
    workspace: Path,
) -> None:
    """A link written before refsync kept remote values (or before the field became
    set_if_empty) does not know what the record holds: the field is not sent until it is read."""
    _with_titles(workspace)
    engine, store = engine_for(workspace)
    assert engine.run().status == "succeeded"
    _edit(workspace / "crm" / "Lead.jsonl", {"Email": "bob@globex.com"}, Title="Founder",
          SystemModstamp="2026-01-01T00:00:00Z")  # an edit refsync has not read
    with store.transaction() as tx:
        tx.connection.execute(update(link_table).where(link_table.c.system == "crm")
                              .values(remote_values=None))
    _edit(workspace / "prm" / "leads.jsonl", {"id": "L2"}, company="Globex Corporation")
    engine.run()
    bob = _crm_lead(workspace, "bob@globex.com")
    assert bob["Company"] == "Globex Corporation" and bob["Title"] == "Founder"
    store.close()
