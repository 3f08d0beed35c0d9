"""What refsync knows of a record it wrote or read, across mapping edits and remote changes.

A link keeps two hashes: of what refsync last wrote to the record (the fields the mapping
writes) and of what it last read there (those fields, plus the fields the mapping only reads,
salted with the mapping). So a change to a field refsync only reads is seen; an edit of the
mapping makes every record be looked at again, without taking refsync's own writes for changes
made by the remote; and an edit that leaves what a system is written alone writes nothing more.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from sqlalchemy import select, update

from refsync.config import load_config
from refsync.mapping.loader import default_mapping_path
from refsync.sandbox.config import sandbox_config
from refsync.sandbox.runner import RunningSandbox, start_sandbox
from refsync.sandbox.salesforce.soql import format_datetime
from refsync.state import StateStore
from refsync.state.store import link_table
from refsync.sync.engine import SyncEngine
from refsync.sync.wiring import build_engine

AUTH = ("pk_sandbox_refsync", "sk_sandbox_refsync")
PS_PATCH = "PATCH /api/v2/leads/{key}"


@dataclass
class Workspace:
    """A sandbox with the demo data, a config whose mappings are files, and its state."""

    sandbox: RunningSandbox
    config: Path
    store: StateStore

    def mapping(self, name: str) -> Path:
        return self.config.parent / f"{name}.yaml"

    def engine(self) -> SyncEngine:
        return build_engine(load_config(self.config), self.store)

    def records(self, system: str, obj: str) -> list[dict[str, Any]]:
        return self.sandbox.emulators[system].records(obj)


@pytest.fixture
def workspace(tmp_path: Path, state_url: str) -> Iterator[Workspace]:
    """Two syncs done on the demo data: the referrals made, every write read back."""
    yield from _workspace(tmp_path, state_url, settled=True)


@pytest.fixture
def backfilled(tmp_path: Path, state_url: str) -> Iterator[Workspace]:
    """One sync done on the demo data: the referrals made, refsync's writes not read back."""
    yield from _workspace(tmp_path, state_url, settled=False)


@pytest.fixture
def titles_read_from_hubspot(tmp_path: Path, state_url: str) -> Iterator[Workspace]:
    """Two syncs done with HubSpot's job title read in only (``direction: in``)."""
    yield from _workspace(tmp_path, state_url, settled=True, edit=lambda folder: _set_line(
        folder / "hubspot-contacts.yaml", "  title: ",
        "  title: {remote: jobtitle, direction: in, transform: [strip]}"))


def _set_line(path: Path, start: str, line: str) -> None:
    """Put ``line`` in place of the line of ``path`` that starts with ``start``."""
    old = next(text for text in path.read_text().splitlines() if text.startswith(start))
    path.write_text(path.read_text().replace(old, line, 1))


def _workspace(
    tmp_path: Path, state_url: str, *, settled: bool,
    edit: Callable[[Path], None] | None = None,
) -> Iterator[Workspace]:
    with start_sandbox(seed="demo", ports=dict.fromkeys(
            ("salesforce", "hubspot", "partnerstack"), 0), workdir=tmp_path / "tls") as sandbox:
        text = sandbox_config(sandbox.urls, sandbox.ca_bundle, state_url,
                              comment="mapping edits", instance="refsync-test")
        for name in ("partnerstack-leads", "salesforce-lead", "hubspot-contacts"):
            (tmp_path / f"{name}.yaml").write_text(default_mapping_path(name).read_text())
            text = text.replace(f"builtin:{name}", str(tmp_path / f"{name}.yaml"))
        # the referral's website, which partners give and the shipped mapping leaves out
        _add_field(tmp_path / "partnerstack-leads.yaml", "  company:      {remote: company, "
                   "rule: partner_owned, transform: [strip]}\n", "  domain: {remote: "
                   "fields.website, direction: in, rule: partner_owned, transform: "
                   "[domain_from_url]}")
        if edit is not None:
            edit(tmp_path)
        config = tmp_path / "refsync.yaml"
        config.write_text(text)
        with StateStore(state_url) as store:
            space = Workspace(sandbox, config, store)
            engine = space.engine()
            engine.run()
            if settled:
                assert engine.run().counts["written"] == 0  # the writes read back as echoes
            yield space


def _add_field(path: Path, after: str, line: str) -> None:
    text = path.read_text()
    assert after in text
    path.write_text(text.replace(after, f"{after}{line}\n", 1))


def _touch_lead(space: Workspace, lead_id: str, **changes: Any) -> None:
    """Sales edits a Salesforce Lead (the modification time moves on, as it does there)."""
    emulator = space.sandbox.emulators["salesforce"]
    time.sleep(0.01)
    with emulator.lock:
        record = emulator.store.records["Lead"][lead_id]
        record.update(changes)
        record["SystemModstamp"] = record["LastModifiedDate"] = format_datetime(
            emulator.store.now())


def _linked_lead(space: Workspace) -> dict[str, Any]:
    return next(lead for lead in space.records("salesforce", "Lead") if lead["Refsync_Id__c"])


def test_a_change_to_a_field_refsync_only_reads_reaches_the_hub(workspace: Workspace) -> None:
    # the Lead's AnnualRevenue is read into the referral's amount (direction: in); refsync
    # never writes it, so its last write's hash cannot tell that sales changed it
    lead = _linked_lead(workspace)
    _touch_lead(workspace, lead["Id"], AnnualRevenue=125000.0)

    report = workspace.engine().run()

    assert report.counts["streams"]["salesforce.leads"] == {"read": 1, "updated": 1}
    referral = workspace.store.get_referral(lead["Refsync_Id__c"])
    assert referral is not None
    assert str(referral["amount"]) == "125000.00"
    assert workspace.engine().run().counts["updated"] == 0


def test_the_first_read_back_of_a_record_refsync_created_is_an_echo(
    workspace: Workspace,
) -> None:
    # the fixture's second sync read back every record the first one wrote: echoes, although
    # refsync had never read the fields those records' mappings only read
    runs = workspace.store.list_runs(limit=2)
    assert runs[0]["counts"]["echoes"] > 0
    assert runs[0]["counts"]["updated"] == 0 and runs[0]["counts"]["written"] == 0


def test_a_field_added_to_a_mapping_is_written_from_the_hub_not_emptied_from_the_remote(
    workspace: Workspace,
) -> None:
    store = workspace.store
    with_domain = {r["id"]: r["domain"] for r in store.list_referrals(limit=1000) if r["domain"]}
    websites = {lead["Id"]: lead["Website"] for lead in workspace.records("salesforce", "Lead")}
    assert with_domain and any(websites.values())
    # an admin wants HubSpot to show the prospect's website: two_way, as fields are by default
    _add_field(workspace.mapping("hubspot-contacts"), "  title:       {remote: jobtitle, "
               "transform: [strip]}\n", "  domain:      {remote: website, transform: "
               "[domain_from_url]}")

    report = workspace.engine().run(full=True)

    assert report.status in ("succeeded", "partial"), report
    hubspot = report.counts["streams"]["hubspot.contacts"]
    assert hubspot.get("updated", 0) == 0, hubspot  # HubSpot's blanks are not newer values
    assert {r["id"]: r["domain"] for r in store.list_referrals(limit=1000)
            if r["domain"]} == with_domain
    assert {lead["Id"]: lead["Website"]
            for lead in workspace.records("salesforce", "Lead")} == websites
    written = {contact["properties"].get("refsync_id"): contact["properties"].get("website")
               for contact in workspace.records("hubspot", "contacts")
               if contact["properties"].get("website")}
    assert written and set(written) <= set(with_domain)
    assert all(with_domain[referral_id] in website for referral_id, website in written.items())
    assert workspace.engine().run().counts["written"] == 0


def test_a_mapping_edit_that_leaves_a_systems_writes_alone_writes_nothing_more_there(
    workspace: Workspace,
) -> None:
    # a field read in from PartnerStack: what refsync writes to the leads is unchanged
    text = workspace.mapping("partnerstack-leads").read_text()
    anchor = next(line for line in text.splitlines() if line.startswith("  submitted_at: "))
    workspace.mapping("partnerstack-leads").write_text(text.replace(
        anchor, f"{anchor}\n  custom.ps_amount: {{remote: amount, direction: in, "
                "rule: remote_wins}", 1))
    emulator = workspace.sandbox.emulators["partnerstack"]
    before = emulator.calls.snapshot()["by_route"]
    # sales changes one Lead's title: the referral changes, and is queued for every system
    lead = _linked_lead(workspace)
    _touch_lead(workspace, lead["Id"], Title="VP Sales")

    report = workspace.engine().run()

    assert report.counts["updated"] == 1, report.counts
    after = emulator.calls.snapshot()["by_route"]
    writes = {route: after[route] - before.get(route, 0) for route in after
              if not route.startswith("GET ") and after[route] != before.get(route, 0)}
    assert writes == {}, writes  # the lead holds what would be written: skipped
    contact = next(c for c in workspace.records("hubspot", "contacts")
                   if c["properties"].get("refsync_id") == lead["Refsync_Id__c"])
    assert contact["properties"]["jobtitle"] == "VP Sales"


def test_a_prospect_rejected_as_a_customer_is_not_protected_for_its_partner(
    workspace: Workspace,
) -> None:
    store = workspace.store
    rejected = next(r for r in store.list_referrals(limit=1000)
                    if r["status"] == "rejected" and "already a customer" in
                    (r["status_reason"] or ""))
    text = workspace.config.read_text()
    assert "protection_window_days: 90" in text or '"protection_window_days": 90' in text
    workspace.config.write_text(text.replace("protection_window_days: 90",
                                             "protection_window_days: 1000").replace(
        '"protection_window_days": 90', '"protection_window_days": 1000'))
    other = "part_demo003" if rejected["partner_id"] != "part_demo003" else "part_demo002"
    answer = requests.post(f"{workspace.sandbox.urls['partnerstack']}/api/v2/leads", auth=AUTH,
                           json={"partner_key": other, "email": rejected["email"],
                                 "name": "Liam Kowalski", "company": rejected["company"],
                                 "status": "new"}, timeout=10)
    assert answer.status_code < 300, answer.text

    report = workspace.engine().run()

    assert report.counts["duplicates"] == 0, report.counts
    assert report.counts["rejected"] == 1, report.counts
    newest = store.list_referrals(limit=1)[0]
    assert newest["email"] == rejected["email"] and newest["partner_id"] == other
    assert newest["status"] == "rejected"
    assert "already a customer" in newest["status_reason"]


def test_a_record_read_again_for_a_field_refsync_only_reads_does_not_revert_the_hub(
    workspace: Workspace,
) -> None:
    # titles are the CRMs' to say (remote_wins both ways); the edit is settled by a full read
    for name, remote in (("salesforce-lead", "Title"), ("hubspot-contacts", "jobtitle")):
        path = workspace.mapping(name)
        line = next(line for line in path.read_text().splitlines()
                    if line.startswith("  title: "))
        path.write_text(path.read_text().replace(
            line, f"  title: {{remote: {remote}, rule: remote_wins}}"))
    assert workspace.engine().run(full=True).counts["written"] == 0
    lead = _linked_lead(workspace)
    referral_id = lead["Refsync_Id__c"]
    # marketing retitles the contact in HubSpot; the write to Salesforce is refused this time
    contact = next(c for c in workspace.records("hubspot", "contacts")
                   if c["properties"].get("refsync_id") == referral_id)
    answer = requests.patch(
        f"{workspace.sandbox.urls['hubspot']}/crm/v3/objects/contacts/{contact['id']}",
        headers={"Authorization": "Bearer pat-sandbox-refsync"},
        json={"properties": {"jobtitle": "Chief Marketing Officer"}}, timeout=10)
    assert answer.status_code < 300, answer.text
    salesforce = workspace.sandbox.emulators["salesforce"]
    salesforce.faults.add([rule.model_copy(update={"match_record": referral_id, "times": 1})
                           for rule in salesforce.all_fault_presets()["partial_batch_failure"]])
    refused = workspace.engine().run()
    assert refused.counts["quarantined"] == 1, refused.counts
    assert workspace.store.get_referral(referral_id)["title"] == "Chief Marketing Officer"
    # sales changes the Lead's AnnualRevenue, which refsync only reads: the Lead is read
    # again, still holding the title refsync wrote there before; that is no change of title
    _touch_lead(workspace, lead["Id"], AnnualRevenue=90000.0)

    workspace.engine().run()

    referral = workspace.store.get_referral(referral_id)
    assert referral is not None
    assert referral["title"] == "Chief Marketing Officer"
    assert str(referral["amount"]) == "90000.00"
    lead_now = next(row for row in workspace.records("salesforce", "Lead")
                    if row["Id"] == lead["Id"])
    assert lead_now["Title"] == "Chief Marketing Officer"


def test_a_field_added_before_refsyncs_writes_were_read_back_is_filled_from_the_hub(
    backfilled: Workspace,
) -> None:
    # the link hashes name the mapping that wrote each record, and the state store keeps what
    # each version of a mapping writes: a record refsync wrote with the mapping before the edit
    # is still known to hold refsync's write, so its blank City is no change by sales
    space, store = backfilled, backfilled.store
    keys = {r["id"]: r["custom"]["partnerstack_key"] for r in store.list_referrals(limit=1000)}
    _add_field(space.mapping("salesforce-lead"), "  country:     {remote: Country, transform: "
               "[strip, {truncate: 80}]}\n", "  custom.partnerstack_key: {remote: City}")

    report = space.engine().run(full=True)

    assert report.counts["streams"]["salesforce.leads"].get("updated", 0) == 0, report.counts
    assert {r["id"]: r["custom"]["partnerstack_key"]
            for r in store.list_referrals(limit=1000)} == keys
    cities = {lead["Refsync_Id__c"]: lead["City"] for lead in space.records("salesforce", "Lead")
              if lead["Refsync_Id__c"]}
    assert cities and all(cities[referral] == keys[referral] for referral in cities)
    assert space.engine().run().counts["written"] == 0


def test_another_partners_rejected_referral_leaves_a_partners_second_contact_a_new_referral(
    workspace: Workspace,
) -> None:
    # matching by company name too; one partner's referral was rejected for an open deal
    store = workspace.store
    text = workspace.config.read_text()
    workspace.config.write_text(text.replace("  keys:\n  - email\n",
                                             "  keys:\n  - email\n  - company_name\n"))
    rejected = next(r for r in store.list_referrals(limit=1000) if r["status"] == "rejected"
                    and "open opportunity" in (r["status_reason"] or ""))
    # the deal is lost since: the company is open to partners again
    emulator = workspace.sandbox.emulators["salesforce"]
    with emulator.lock:
        for opportunity in list(emulator.store.records["Opportunity"].values()):
            if opportunity["StageName"] not in ("Closed Won", "Closed Lost"):
                emulator.store.update(emulator.store.objects["Opportunity"], opportunity,
                                      {"StageName": "Closed Lost"},
                                      format_datetime(emulator.store.now()))
    other = "part_demo003" if rejected["partner_id"] != "part_demo003" else "part_demo002"
    company = rejected["company"]
    statuses = []
    for contact in ("ada.first", "bo.second"):
        answer = requests.post(
            f"{workspace.sandbox.urls['partnerstack']}/api/v2/leads", auth=AUTH,
            json={"partner_key": other, "email": f"{contact}@{contact}-mail.example",
                  "name": contact.replace(".", " ").title(), "company": company,
                  "status": "new"}, timeout=10)
        assert answer.status_code < 300, answer.text
        workspace.engine().run()
        statuses.append(store.list_referrals(limit=1)[0]["status"])

    # the first is a new referral; the second, another contact at a company the partner
    # already referred, is one too (never a duplicate of the partner's own referral)
    assert statuses == ["submitted", "submitted"], statuses


def test_links_kept_by_an_earlier_refsync_still_say_what_refsync_wrote(
    workspace: Workspace,
) -> None:
    # an earlier refsync kept one hash a link: the written fields' hash salted with the whole
    # mapping; after an upgrade it still tells a record that holds refsync's write
    engine = workspace.engine()
    bindings = {(b.system, b.object): b for b in engine.bindings}
    records = {key: _remote_records(binding) for key, binding in bindings.items()}
    with workspace.store.transaction() as tx:
        for row in tx.connection.execute(select(link_table)).mappings().all():
            binding = bindings[(row["system"], row["object"])]
            record = records[(row["system"], row["object"])][row["external_id"]]
            earlier = binding.earlier_hash(binding.mapping.content_hash(record))
            tx.connection.execute(update(link_table).where(link_table.c.id == row["id"]).values(
                last_written_hash=earlier if row["last_written_hash"] else None,
                last_read_hash=earlier if row["last_read_hash"] else None))
    lead = _linked_lead(workspace)
    _touch_lead(workspace, lead["Id"], AnnualRevenue=42000.0)

    report = engine.run(full=True)

    assert report.counts["written"] == 0, report.counts  # every record holds its payload
    assert report.counts["updated"] == 1, report.counts  # the amount sales changed
    assert engine.run().counts["written"] == 0


def _remote_records(binding: Any) -> dict[str, dict[str, Any]]:
    """Every record of a stream as its connector reads it, by remote id."""
    pages = binding.connector.read(binding.object, list(binding.mapping.remote_fields), None)
    return {record.id: dict(record.data) for page in pages for record in page.records}


def test_a_change_to_a_field_refsync_only_read_survives_the_field_becoming_two_way(
    titles_read_from_hubspot: Workspace,
) -> None:
    space = titles_read_from_hubspot
    contact = next(c for c in space.records("hubspot", "contacts")
                   if c["properties"].get("refsync_id"))
    referral_id = contact["properties"]["refsync_id"]
    _retitle(space, contact["id"], "Head of Growth")
    space.engine().run()
    assert space.store.get_referral(referral_id)["title"] == "Head of Growth"
    # marketing retitles the contact again; before the next sync, the admin makes the title
    # two_way: HubSpot's change is newer than the hub's title, so it wins
    _retitle(space, contact["id"], "VP Growth")
    _set_line(space.mapping("hubspot-contacts"), "  title: ",
              "  title: {remote: jobtitle, transform: [strip]}")

    space.engine().run(full=True)

    assert space.store.get_referral(referral_id)["title"] == "VP Growth"
    written = next(c for c in space.records("hubspot", "contacts") if c["id"] == contact["id"])
    assert written["properties"]["jobtitle"] == "VP Growth"
    assert space.engine().run().counts["written"] == 0


def _retitle(space: Workspace, contact_id: str, title: str) -> None:
    time.sleep(0.01)
    answer = requests.patch(
        f"{space.sandbox.urls['hubspot']}/crm/v3/objects/contacts/{contact_id}",
        headers={"Authorization": "Bearer pat-sandbox-refsync"},
        json={"properties": {"jobtitle": title}}, timeout=10)
    assert answer.status_code < 300, answer.text
