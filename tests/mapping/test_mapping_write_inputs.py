"""What writing a record reads of the hub (``written_from``), and content hashes that never move.

A push reads only the hub fields a mapping writes from; writing must give the same payload and
errors from those fields alone as from the whole referral. Content hashes are stored in links,
so a change to how they are computed would make every record look changed after an upgrade.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from refsync.mapping import load_mapping
from refsync.mapping.compiled import compile_mapping
from refsync.mapping.spec import MappingSpec

_BUILTINS = {name: load_mapping(f"builtin:{name}") for name in (
    "salesforce-lead", "hubspot-contacts", "hubspot-deals", "partnerstack-leads")}

_HUB_FIELDS = ["id", "email", "first_name", "last_name", "company", "phone", "status", "amount",
               "closed_at", "partner_id", "notes", "title", "country", "domain", "currency",
               "submitted_at", "status_reason", "custom", "provenance", "email_norm", "version"]

anything = st.none() | st.booleans() | st.integers() | st.floats() | st.text() \
    | st.decimals() | st.datetimes() | st.lists(st.text(), max_size=2) \
    | st.sampled_from(["submitted", "won", "Pat Doe", " pat@acme.example ", "+1 415 555 0100",
                       str(uuid.UUID(int=7))])


def test_written_from_names_the_fields_a_mapping_writes() -> None:
    lead = _BUILTINS["salesforce-lead"]
    assert lead.written_from is not None
    assert {"id", "custom", "email", "status", "notes", "domain"} <= set(lead.written_from)
    assert "amount" not in lead.written_from  # read only (direction in)
    assert "provenance" not in lead.written_from
    # partnerstack's last name is written by joining other fields: any field may be read
    assert _BUILTINS["partnerstack-leads"].written_from is None


def test_custom_fields_are_written_from_custom() -> None:
    spec = MappingSpec.model_validate({
        "system": "salesforce", "object": "Lead", "key_field": "Refsync_Id__c",
        "fields": {"email": {"remote": "Email"},
                   "custom.tier": {"remote": "Tier__c", "direction": "out"}}})
    mapping = compile_mapping(spec)
    assert mapping.written_from == ("custom", "email", "id")
    row = {"id": str(uuid.UUID(int=3)), "email": "pat@acme.example", "custom": {"tier": "gold"},
           "company": "Acme"}
    assert mapping.to_remote(row) == {"Refsync_Id__c": str(uuid.UUID(int=3)),
                                      "Email": "pat@acme.example", "Tier__c": "gold"}


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from(_HUB_FIELDS), anything),
       st.dictionaries(st.sampled_from(["partnerstack_key", "tier"]), anything, max_size=2))
def test_writing_from_the_written_fields_alone_gives_the_same_result(
    row: dict[str, Any], custom: dict[str, Any],
) -> None:
    row = {**row, "custom": custom}
    for mapping in _BUILTINS.values():
        if mapping.written_from is None:
            continue
        whole = mapping.to_remote_result(row)
        cut = mapping.to_remote_result(
            {name: value for name, value in row.items() if name in mapping.written_from})
        assert list(cut.values.items()) == list(whole.values.items())
        assert [(e.code, e.field, e.message) for e in cut.errors] == \
            [(e.code, e.field, e.message) for e in whole.errors]


def test_content_hashes_stay_what_they_were() -> None:
    """Digests computed before the hashing path was made faster; they must never change."""
    records = {
        "salesforce-lead": {
            "Refsync_Id__c": "0F8FAD5B-D9CB-469F-A165-70867728950E", "Email": " Pat@Acme.example ",
            "FirstName": "Pat", "LastName": "  ", "Company": "Acme", "Website": None,
            "Phone": "+14155550100", "Title": None, "Partner_Key__c": "part_1",
            "Description": "", "Status": "Working - Contacted", "AnnualRevenue": 1200.0,
            "CreatedDate": "2024-01-05T10:00:00.000+0000"},
        "hubspot-contacts": {
            "refsync_id": "0f8fad5b-d9cb-469f-a165-70867728950e", "email": "pat@acme.example",
            "firstname": "Pat", "lastname": "Doe", "company": None, "phone": "",
            "refsync_status": "submitted", "refsync_partner_key": "part_1"},
        "hubspot-deals": {
            "refsync_id": "0f8fad5b-d9cb-469f-a165-70867728950e", "amount": "1200.50",
            "closedate": "1704448800000", "dealstage": "closedwon", "dealname": "Acme"},
        "partnerstack-leads": {
            "key": "lead_1", "email": "pat@acme.example", "name": "Pat Doe",
            "company": "Acme Ltd", "partner_key": "part_1", "status": "new",
            "created_at": 1704448800000, "fields": {"refsync_id": None, "refsync_reason": "x"}},
    }
    expected = {
        "salesforce-lead": "14766b354114da3cb61c54692e180ac9d662e0219c2cd076af4d187249419005",
        "hubspot-contacts": "3a1ada652818d2950a2cadaf6c81ec005e36ad041b53db4a6302cbca7f996447",
        "hubspot-deals": "70ba0ca4f41d4fb051d696051f5c9d22510c27934297fdbd3326117995e3a0d8",
        "partnerstack-leads": "b1e1507dc4386f19dc89b21db8bb43da067b7e45d7caf5561f3f1847967d33ee",
    }
    assert {name: _BUILTINS[name].content_hash(record)
            for name, record in records.items()} == expected


def test_written_payloads_and_their_hashes_stay_what_they_were() -> None:
    referral = {"id": "0f8fad5b-d9cb-469f-a165-70867728950e", "email": "pat@acme.example",
                "first_name": " Pat ", "last_name": None, "company": "Acme", "phone": None,
                "status": "won", "partner_id": "part_1", "amount": Decimal("1200.50"),
                "closed_at": datetime(2024, 1, 5, 10, 0), "custom": {}}
    written = {name: mapping.to_remote(referral) for name, mapping in _BUILTINS.items()}
    assert written["salesforce-lead"] == {
        "Refsync_Id__c": referral["id"], "Email": "pat@acme.example", "FirstName": "Pat",
        "LastName": "(unknown)", "Company": "Acme", "Website": None, "Phone": None,
        "Title": None, "Country": None, "Partner_Key__c": "part_1", "Description": None,
        "Status": "Closed - Converted"}
    assert written["hubspot-deals"] == {
        "refsync_id": referral["id"], "dealname": "Acme (partner referral)", "amount": 1200.5,
        "closedate": "2024-01-05T10:00:00Z", "dealstage": "closedwon"}
    assert {name: _BUILTINS[name].content_hash(payload)
            for name, payload in written.items()} == {
        "salesforce-lead": "3bee2a016f1bdfef51fb7aa0fc0cd504abc142d53fbd6da4876ff29b22b9ab20",
        "hubspot-contacts": "a8391bb1a47541ceddf1801b37af6f56e33469eae46e0d980c19bd0971375db3",
        "hubspot-deals": "48d2c1f4dceb7699e7e4348bfb6febb3ea4c4461f7eeb6fb1cff7875eabb004d",
        "partnerstack-leads": "5c36e0559b2afa73e2bc3934c2235a997981721e742337835a8b0e96b0aa400c",
    }
