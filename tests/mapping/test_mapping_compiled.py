"""Compiled mappings: records in, records out, directions, dotted paths and content hashes."""

from __future__ import annotations

import textwrap
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from refsync.domain import Referral, ReferralStatus
from refsync.errors import RecordError
from refsync.mapping import CompiledMapping, MappedRecord, load_mapping

RID = "6f1c1d2e-0000-4000-8000-000000000001"


@pytest.fixture(scope="module")
def lead_mapping() -> CompiledMapping:
    return load_mapping("builtin:salesforce-lead")


def lead(**overrides: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "attributes": {"type": "Lead"},
        "Id": "00Q000000000001",
        "Refsync_Id__c": RID.upper(),
        "Email": " Jane.Doe@Acme.COM ",
        "FirstName": "Jane",
        "LastName": "Doe",
        "Company": "Acme",
        "Website": "https://www.acme.com/",
        "Phone": "(415) 555-0100",
        "Title": "CTO",
        "Country": "US",
        "Partner_Key__c": "partner-7",
        "AnnualRevenue": 2500000.0,
        "CreatedDate": "2026-01-05T10:00:00.000+0000",
        "Description": "should not be read: notes flow out only",
        "Status": "Working - Contacted",
    }
    record.update(overrides)
    return record


def test_salesforce_lead_to_canonical(lead_mapping: CompiledMapping) -> None:
    mapped = lead_mapping.to_canonical(lead())
    assert mapped.ok
    assert mapped.values == {
        "id": RID,
        "email": "jane.doe@acme.com",
        "first_name": "Jane",
        "last_name": "Doe",
        "company": "Acme",
        "domain": "acme.com",
        "phone": "+14155550100",
        "title": "CTO",
        "country": "US",
        "partner_id": "partner-7",
        "amount": Decimal("2500000.0"),
        "submitted_at": datetime(2026, 1, 5, 10, 0, tzinfo=UTC),
        "status": ReferralStatus.ACCEPTED,
    }
    referral = Referral.model_validate(mapped.referral_fields())
    assert referral.status is ReferralStatus.ACCEPTED


def test_field_errors_are_collected_and_the_rest_still_maps(lead_mapping: CompiledMapping) -> None:
    mapped = lead_mapping.to_canonical(lead(Status="Nurturing", Email="not-an-email",
                                            AnnualRevenue="lots"))
    assert not mapped.ok
    by_field = {e.field: e.code for e in mapped.errors}
    assert by_field == {"email": "invalid_email", "amount": "invalid_number",
                        "status": "unmapped_value"}
    assert mapped.values["company"] == "Acme"
    assert "status" not in mapped.values
    with pytest.raises(RecordError) as info:
        lead_mapping.to_canonical(lead(Status="Nurturing"), strict=True)
    assert info.value.code == "unmapped_value"


def test_key_field_must_hold_a_uuid(lead_mapping: CompiledMapping) -> None:
    unlinked = lead_mapping.to_canonical(lead(Refsync_Id__c=None))
    assert unlinked.ok and unlinked.values["id"] is None
    bad = lead_mapping.to_canonical(lead(Refsync_Id__c="12345"))
    assert [(e.field, e.code) for e in bad.errors] == [("id", "invalid_refsync_id")]


def test_defaults_fill_blank_values_both_ways(lead_mapping: CompiledMapping) -> None:
    assert lead_mapping.to_canonical(lead(LastName=None)).values["last_name"] == "(unknown)"
    payload = lead_mapping.to_remote({"id": RID, "status": "submitted"})
    assert payload["LastName"] == "(unknown)"
    assert payload["Company"] == "(unknown)"


def test_to_remote_from_a_referral(lead_mapping: CompiledMapping) -> None:
    referral = Referral(
        id=uuid.UUID(RID), email="jane@acme.com", first_name="Jane", last_name="Doe",
        company="Acme", domain="acme.com", phone="+14155550100", partner_id="partner-7",
        status=ReferralStatus.WON, amount=Decimal("99"), notes="x" * 40000,
        submitted_at=datetime(2026, 1, 5, tzinfo=UTC),
    )
    payload = lead_mapping.to_remote(referral)
    assert payload == {
        "Refsync_Id__c": RID,
        "Email": "jane@acme.com",
        "FirstName": "Jane",
        "LastName": "Doe",
        "Company": "Acme",
        "Website": "acme.com",
        "Phone": "+14155550100",
        "Title": None,
        "Country": None,
        "Partner_Key__c": "partner-7",
        "Description": "x" * 32000,
        "Status": "Closed - Converted",
    }
    # in-only fields (amount, submitted_at) are never written


def test_to_remote_reports_unmappable_values(tmp_path: Path) -> None:
    path = tmp_path / "m.yaml"
    path.write_text(textwrap.dedent("""
        system: s
        object: o
        key_field: key
        fields:
          email: {remote: mail, transform: [email]}
          status: {remote: stage, values: {open: submitted, done: won}}
        """), encoding="utf-8")
    mapping = load_mapping(path)
    result = mapping.to_remote_result({"email": "nope", "status": "lost"})
    assert {(e.field, e.code) for e in result.errors} == {
        ("id", "missing_refsync_id"), ("email", "invalid_email"), ("status", "unmapped_value")}
    with pytest.raises(RecordError):
        mapping.to_remote({"id": RID, "status": "lost"})
    assert mapping.to_remote({"id": RID, "status": ReferralStatus.WON}) == {
        "key": RID, "mail": None, "stage": "done"}


def test_custom_fields_flat_or_nested(tmp_path: Path) -> None:
    path = tmp_path / "m.yaml"
    path.write_text(
        "system: s\nobject: o\nkey_field: key\nfields:\n"
        "  custom.lead_source: {remote: source}\n"
        "  custom.score: {remote: score, transform: [to_int]}\n", encoding="utf-8")
    mapping = load_mapping(path)
    assert mapping.to_remote({"id": RID, "custom": {"lead_source": "web", "score": "7"}}) == {
        "key": RID, "source": "web", "score": 7}
    assert mapping.to_remote({"id": RID, "custom.lead_source": "event"})["source"] == "event"
    referral = Referral(custom={"lead_source": "ads"})
    assert mapping.to_remote(referral)["source"] == "ads"
    mapped = mapping.to_canonical({"key": RID, "source": "web", "score": "12"})
    assert mapped.values == {"id": RID, "custom.lead_source": "web", "custom.score": 12}
    assert mapped.referral_fields() == {"id": RID, "custom": {"lead_source": "web", "score": 12}}


def test_partnerstack_dotted_key_and_name_split_join() -> None:
    mapping = load_mapping("builtin:partnerstack-leads")
    record = {
        "key": "lead_abc", "partner_key": "part_1", "email": "Li@Example.org",
        "name": "Li Wei Chen", "company": " Example ", "status": "in_progress",
        "created_at": 1767607200000, "fields": {"refsync_id": RID, "other": "x"},
    }
    mapped = mapping.to_canonical(record)
    assert mapped.ok, mapped.errors
    assert mapped.values["id"] == RID
    assert (mapped.values["first_name"], mapped.values["last_name"]) == ("Li Wei", "Chen")
    assert mapped.values["status"] is ReferralStatus.OPPORTUNITY
    assert mapped.values["custom.partnerstack_key"] == "lead_abc"
    payload = mapping.to_remote(mapped.values)
    assert payload == {
        "fields": {"refsync_id": RID, "refsync_reason": None}, "partner_key": "part_1",
        "email": "li@example.org",
        "name": "Li Wei Chen", "company": "Example", "status": "in_progress",
    }
    assert "fields" in mapping.remote_fields and "created_at" in mapping.remote_fields


def test_hubspot_contacts_status_without_a_value_map() -> None:
    mapping = load_mapping("builtin:hubspot-contacts")
    payload = mapping.to_remote({"id": RID, "status": ReferralStatus.QUALIFIED,
                                 "partner_id": "p-1", "phone": "+44 20 7946 0958"})
    assert payload["refsync_status"] == "qualified"
    assert payload["phone"] == "+442079460958"
    result = mapping.to_remote_result({"id": RID, "status": "closed"})
    assert [e.code for e in result.errors] == ["invalid_status"]
    # status and partner flow out only, so they are not read
    assert "status" not in mapping.to_canonical({"refsync_status": "won"}).values


def test_hubspot_deals_template_and_stage_map() -> None:
    mapping = load_mapping("builtin:hubspot-deals")
    payload = mapping.to_remote({"id": RID, "company": "Acme", "amount": Decimal("1200.50"),
                                 "status": "opportunity",
                                 "closed_at": datetime(2026, 3, 1, tzinfo=UTC)})
    assert payload == {"refsync_id": RID, "dealname": "Acme (partner referral)",
                       "amount": 1200.5, "closedate": "2026-03-01T00:00:00Z",
                       "dealstage": "appointmentscheduled"}
    mapped = mapping.to_canonical({"refsync_id": RID, "amount": "1200.50",
                                   "closedate": "1772323200000", "dealstage": "contractsent",
                                   "dealname": "ignored"})
    assert mapped.values == {"id": RID, "amount": Decimal("1200.50"),
                             "closed_at": datetime(2026, 3, 1, tzinfo=UTC),
                             "status": ReferralStatus.OPPORTUNITY}
    assert [e.code for e in mapping.to_remote_result({"id": RID, "status": "accepted"}).errors] \
        == ["unmapped_value"]


def test_coalesce_reads_alternatives(tmp_path: Path) -> None:
    path = tmp_path / "m.yaml"
    path.write_text(
        "system: s\nobject: o\nkey_field: key\nfields:\n"
        "  phone: {remote: Phone, transform: [{coalesce: [MobilePhone, extra.phone]}, phone]}\n",
        encoding="utf-8")
    mapping = load_mapping(path)
    mapped = mapping.to_canonical({"Phone": "", "MobilePhone": None,
                                   "extra": {"phone": "+1 415 555 0100"}})
    assert mapped.values["phone"] == "+14155550100"
    assert set(mapping.remote_fields) == {"key", "Phone", "MobilePhone", "extra"}


# --- echo suppression ------------------------------------------------------------------------


def test_hash_of_what_we_wrote_equals_hash_of_it_read_back(lead_mapping: CompiledMapping) -> None:
    referral = Referral(id=uuid.UUID(RID), email="jane@acme.com", last_name="Doe",
                        company="Acme", status=ReferralStatus.ACCEPTED, notes="hello")
    written = lead_mapping.to_remote(referral)
    # what Salesforce returns for the same values: extra fields, "" vs None, attributes
    read_back = {**written, "attributes": {"type": "Lead"}, "Id": "00Q1", "Title": "",
                 "AnnualRevenue": 5.0, "CreatedDate": "2026-01-05T10:00:00.000+0000"}
    assert lead_mapping.content_hash(read_back) == lead_mapping.content_hash(written)
    changed = {**read_back, "Status": "Closed - Not Converted"}
    assert lead_mapping.content_hash(changed) != lead_mapping.content_hash(written)
    edited_out_field = {**read_back, "Description": "edited in Salesforce"}
    assert lead_mapping.content_hash(edited_out_field) != lead_mapping.content_hash(written)


def test_hash_ignores_number_and_datetime_formats() -> None:
    mapping = load_mapping("builtin:hubspot-deals")
    written = mapping.to_remote({"id": RID, "company": "Acme", "amount": Decimal("1200.00"),
                                 "status": "won",
                                 "closed_at": datetime(2026, 3, 1, 12, 30, tzinfo=UTC)})
    hubspot_echo = {"refsync_id": RID, "dealname": "Acme (partner referral)",
                    "amount": "1200", "dealstage": "closedwon",
                    "closedate": "2026-03-01T12:30:00.000Z", "hs_lastmodifieddate": "x"}
    assert mapping.content_hash(hubspot_echo) == mapping.content_hash(written)
    epoch_echo = {**hubspot_echo, "closedate": "1772368200000"}
    assert mapping.content_hash(epoch_echo) == mapping.content_hash(written)
    assert mapping.content_hash({**hubspot_echo, "amount": "1200.01"}) != \
        mapping.content_hash(written)


def test_hash_covers_the_key_and_nested_paths() -> None:
    mapping = load_mapping("builtin:partnerstack-leads")
    written = mapping.to_remote({"id": RID, "email": "a@b.co", "status": "submitted"})
    other = {**written, "fields": {"refsync_id": str(uuid.uuid4())}}
    assert mapping.content_hash(written) != mapping.content_hash(other)
    assert len(mapping.content_hash(written)) == 64


# --- round trips and robustness --------------------------------------------------------------

names = st.text(alphabet=st.characters(whitelist_categories=("L",)), min_size=1, max_size=12)


@settings(max_examples=100, deadline=None)
@given(first=names, last=names, company=names,
       status=st.sampled_from(["submitted", "accepted", "qualified", "lost"]),
       amount=st.decimals(places=2, min_value=0, max_value=10**9))
def test_to_remote_then_to_canonical_round_trips(
    first: str, last: str, company: str, status: str, amount: Decimal
) -> None:
    mapping = load_mapping("builtin:salesforce-lead")
    canonical = {"id": RID, "first_name": first, "last_name": last, "company": company,
                 "status": status, "email": f"{first}@example.com".lower()}
    back = mapping.to_canonical(mapping.to_remote(canonical))
    assert back.ok
    for name, value in canonical.items():
        assert back.values[name] == value


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(
    st.sampled_from(["Refsync_Id__c", "Email", "Phone", "Website", "AnnualRevenue",
                     "CreatedDate", "Status", "LastName", "Partner_Key__c", "Title"]),
    st.none() | st.booleans() | st.integers() | st.floats() | st.text()
    | st.lists(st.text(), max_size=2) | st.dictionaries(st.text(max_size=3), st.text(),
                                                        max_size=2)))
def test_to_canonical_never_raises_on_arbitrary_records(record: dict[str, Any]) -> None:
    mapped = load_mapping("builtin:salesforce-lead").to_canonical(record)
    assert isinstance(mapped, MappedRecord)
    assert all(isinstance(e, RecordError) and e.field for e in mapped.errors)
    content = load_mapping("builtin:salesforce-lead").content_hash(record)
    assert len(content) == 64


_BUILTINS = {name: load_mapping(f"builtin:{name}") for name in (
    "salesforce-lead", "hubspot-contacts", "hubspot-deals", "partnerstack-leads")}

anything = st.none() | st.booleans() | st.integers() | st.floats() | st.text() \
    | st.decimals() | st.datetimes() | st.lists(st.text(), max_size=2)


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(
    st.sampled_from(["id", "email", "first_name", "last_name", "company", "phone", "status",
                     "amount", "closed_at", "partner_id", "notes", "custom"]),
    anything))
def test_to_remote_result_never_raises_on_arbitrary_canonical_values(
    record: dict[str, Any],
) -> None:
    for mapping in _BUILTINS.values():
        result = mapping.to_remote_result(record)
        assert all(isinstance(e, RecordError) and e.field for e in result.errors)


def test_to_remote_refuses_a_key_that_is_not_a_uuid(lead_mapping: CompiledMapping) -> None:
    result = lead_mapping.to_remote_result({"id": "lead-7", "status": "submitted"})
    assert [(e.field, e.code) for e in result.errors] == [("id", "invalid_refsync_id")]
    assert "Refsync_Id__c" not in result.values
    assert lead_mapping.to_remote({"id": RID.upper(), "status": "submitted"})["Refsync_Id__c"] \
        == RID
