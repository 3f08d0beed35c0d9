"""validate_against(): a mapping checked against hand-built discover() results."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from refsync.connectors.schema import FieldSchema, ObjectSchema
from refsync.mapping import CompiledMapping, load_mapping, validate_against
from refsync.mapping.schema_check import remote_type_family

STANDARD_STATUSES = ["Open - Not Contacted", "Working - Contacted", "Closed - Converted",
                     "Closed - Not Converted"]


def lead_schema(**changes: FieldSchema | None) -> ObjectSchema:
    fields = {
        "Id": FieldSchema("Id", "id", writable=False, unique=True),
        "Refsync_Id__c": FieldSchema("Refsync_Id__c", "string", unique=True, external_id=True,
                                     length=36),
        "Email": FieldSchema("Email", "email", length=80),
        "FirstName": FieldSchema("FirstName", "string", length=40),
        "LastName": FieldSchema("LastName", "string", required=True, length=80),
        "Company": FieldSchema("Company", "string", required=True, length=255),
        "Website": FieldSchema("Website", "url", length=255),
        "Phone": FieldSchema("Phone", "phone", length=40),
        "Title": FieldSchema("Title", "string", length=128),
        "Country": FieldSchema("Country", "string", length=80),
        "Partner_Key__c": FieldSchema("Partner_Key__c", "string", length=64),
        "AnnualRevenue": FieldSchema("AnnualRevenue", "currency"),
        "CreatedDate": FieldSchema("CreatedDate", "datetime", writable=False),
        "Description": FieldSchema("Description", "textarea", length=32000),
        "Status": FieldSchema("Status", "picklist", required=True,
                              picklist_values=STANDARD_STATUSES),
    }
    for name, value in changes.items():
        if value is None:
            del fields[name]
        else:
            fields[name] = value
    return ObjectSchema("Lead", fields)


@pytest.fixture(scope="module")
def lead_mapping() -> CompiledMapping:
    return load_mapping("builtin:salesforce-lead")


def test_shipped_lead_mapping_fits_a_standard_org(lead_mapping: CompiledMapping) -> None:
    assert validate_against(lead_mapping, lead_schema()) == []


def test_unknown_remote_field_with_suggestion(lead_mapping: CompiledMapping) -> None:
    schema = lead_schema(Partner_Key__c=None, Partner_Key_c=FieldSchema("Partner_Key_c", "string"))
    (problem,) = validate_against(lead_mapping, schema)
    assert problem.message == "Lead has no field 'Partner_Key__c'"
    assert problem.fix == "did you mean 'Partner_Key_c'?"
    assert problem.file == "builtin:salesforce-lead"
    line = lead_mapping.source.position(("fields", "partner_id", "remote"))[0]  # type: ignore[union-attr]
    assert problem.line == line


def test_written_field_must_be_writable(lead_mapping: CompiledMapping) -> None:
    schema = lead_schema(Title=FieldSchema("Title", "string", writable=False))
    (problem,) = validate_against(lead_mapping, schema)
    assert "Lead.Title is read-only" in problem.message
    assert problem.fix == "set direction: in for this field"


def test_read_only_field_is_fine_when_only_read(lead_mapping: CompiledMapping) -> None:
    # CreatedDate is not writable and the mapping only reads it
    assert not [p for p in validate_against(lead_mapping, lead_schema())
                if "CreatedDate" in p.message]


def test_picklist_values_of_the_value_map(lead_mapping: CompiledMapping) -> None:
    schema = lead_schema(Status=FieldSchema(
        "Status", "picklist", picklist_values=["Open - Not Contacted", "Working-Contacted",
                                               "Closed - Converted", "Closed - Not Converted"]))
    (problem,) = validate_against(lead_mapping, schema)
    assert problem.message == "'Working - Contacted' is not a picklist value of Lead.Status"
    assert problem.fix == "did you mean 'Working-Contacted'?"


def test_types_must_fit(lead_mapping: CompiledMapping) -> None:
    schema = lead_schema(Country=FieldSchema("Country", "double"),
                         AnnualRevenue=FieldSchema("AnnualRevenue", "boolean"))
    problems = validate_against(lead_mapping, schema)
    messages = sorted(p.message for p in problems)
    assert messages == [
        "Lead.AnnualRevenue is a boolean field, but 'amount' holds decimal values",
        "Lead.Country is a double field, but 'country' holds text values",
    ]
    country = next(p for p in problems if "Country" in p.message)
    assert country.fix == "add the to_decimal or to_int transform"


def test_required_field_not_written(tmp_path: Path) -> None:
    path = tmp_path / "m.yaml"
    path.write_text("system: salesforce\nobject: Lead\nkey_field: Refsync_Id__c\nfields:\n"
                    "  email: {remote: Email}\n", encoding="utf-8")
    problems = validate_against(load_mapping(path), lead_schema())
    assert sorted(p.message for p in problems) == [
        "Lead.Company is required when creating a record, but no field writes it",
        "Lead.LastName is required when creating a record, but no field writes it",
        "Lead.Status is required when creating a record, but no field writes it",
    ]
    assert {p.line for p in problems} == {4}


def test_key_field_must_be_an_upsert_key(lead_mapping: CompiledMapping) -> None:
    schema = lead_schema(Refsync_Id__c=FieldSchema("Refsync_Id__c", "string", writable=False))
    messages = [p.message for p in validate_against(lead_mapping, schema)]
    assert any("neither an external id nor unique" in m for m in messages)
    assert "Lead.Refsync_Id__c is read-only" in messages
    missing = validate_against(lead_mapping, lead_schema(Refsync_Id__c=None))
    assert [p.message for p in missing] == ["Lead has no field 'Refsync_Id__c'"]


def test_truncate_longer_than_the_field(lead_mapping: CompiledMapping) -> None:
    schema = lead_schema(Description=FieldSchema("Description", "textarea", length=255))
    (problem,) = validate_against(lead_mapping, schema)
    assert problem.message == "truncate: 32000 is longer than Lead.Description allows (255)"
    assert problem.fix == "write {truncate: 255}"


def test_status_without_value_map_needs_every_status_in_the_picklist() -> None:
    mapping = load_mapping("builtin:hubspot-contacts")
    fields = {name: FieldSchema(name, "string") for name in (
        "email", "firstname", "lastname", "company", "phone", "jobtitle", "country",
        "refsync_partner_key")}
    fields["refsync_id"] = FieldSchema("refsync_id", "string", unique=True)
    fields["refsync_status"] = FieldSchema("refsync_status", "enumeration",
                                           picklist_values=["submitted", "accepted"])
    (problem,) = validate_against(mapping, ObjectSchema("contacts", fields))
    assert problem.message.startswith("contacts.refsync_status has no picklist values for "
                                      "qualified, opportunity")
    full = replace(fields["refsync_status"], picklist_values=[
        "submitted", "accepted", "qualified", "opportunity", "won", "lost", "rejected",
        "duplicate", "expired"])
    assert validate_against(mapping, ObjectSchema("contacts", {**fields,
                                                               "refsync_status": full})) == []


def test_nested_paths_inside_object_fields_are_accepted() -> None:
    mapping = load_mapping("builtin:partnerstack-leads")
    fields = {name: FieldSchema(name, "string") for name in (
        "key", "partner_key", "email", "name", "company", "status")}
    fields["created_at"] = FieldSchema("created_at", "number", writable=False)
    fields["fields"] = FieldSchema("fields", "object")
    assert validate_against(mapping, ObjectSchema("leads", fields)) == []
    fields["fields"] = FieldSchema("fields", "string")
    messages = [p.message for p in validate_against(mapping, ObjectSchema("leads", fields))]
    assert messages == ["leads has no field 'fields.refsync_id'",
                        "leads has no field 'fields.refsync_reason'"]


def test_type_families() -> None:
    assert remote_type_family("Currency") == "number"
    assert remote_type_family("enumeration") == "picklist"
    assert remote_type_family("something-new") is None
