"""Object types and property definitions of the HubSpot emulator.

The defaults mirror a fresh HubSpot portal (contacts, companies, deals and their usual
properties) plus the custom properties refsync writes: ``refsync_id`` (unique, on contacts and
deals), ``refsync_status`` and ``refsync_partner_key`` (on contacts).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "DEAL_STAGES",
    "DEFAULT_ASSOCIATION_TYPES",
    "LIFECYCLE_STAGES",
    "NUMERIC_TYPES",
    "REFSYNC_STATUSES",
    "ObjectSchema",
    "PropertyDef",
    "default_schemas",
]

LIFECYCLE_STAGES = (
    "subscriber", "lead", "marketingqualifiedlead", "salesqualifiedlead", "opportunity",
    "customer", "evangelist", "other",
)
DEAL_STAGES = (
    "appointmentscheduled", "qualifiedtobuy", "presentationscheduled", "decisionmakerboughtin",
    "contractsent", "closedwon", "closedlost",
)
REFSYNC_STATUSES = (
    "submitted", "accepted", "qualified", "opportunity", "won", "lost", "rejected", "duplicate",
    "expired",
)

#: property types whose values are compared as numbers (datetimes as epoch milliseconds)
NUMERIC_TYPES = frozenset({"number", "datetime", "date"})

#: (from type, to type) → HubSpot-defined default association type id
DEFAULT_ASSOCIATION_TYPES: dict[tuple[str, str], int] = {
    ("contacts", "companies"): 279,
    ("companies", "contacts"): 280,
    ("deals", "contacts"): 3,
    ("contacts", "deals"): 4,
    ("deals", "companies"): 341,
    ("companies", "deals"): 342,
}

_FIELD_TYPES = {
    "string": "text",
    "number": "number",
    "datetime": "date",
    "date": "date",
    "enumeration": "select",
    "bool": "booleancheckbox",
}


@dataclass(frozen=True)
class PropertyDef:
    """One property of an object type, as the properties API describes it.

    Attributes:
        name: internal name used in the API.
        type: ``string``, ``number``, ``date``, ``datetime``, ``enumeration`` or ``bool``.
        label: label shown in HubSpot.
        options: allowed values of an enumeration.
        has_unique_value: whether two records may not share a value (usable as ``idProperty``).
        read_only: whether API writes are refused (``modificationMetadata.readOnlyValue``).
        calculated: whether HubSpot computes the value.
        field_type: UI field type; derived from ``type`` when empty.
        group_name: the property group.
    """

    name: str
    type: str = "string"
    label: str = ""
    options: tuple[str, ...] = ()
    has_unique_value: bool = False
    read_only: bool = False
    calculated: bool = False
    field_type: str = ""
    group_name: str = "sandbox"

    def to_api(self) -> dict[str, Any]:
        """Serialize like ``GET /crm/v3/properties/{type}`` does."""
        return {
            "name": self.name,
            "label": self.label or self.name.replace("_", " ").title(),
            "type": self.type,
            "fieldType": self.field_type or _FIELD_TYPES.get(self.type, "text"),
            "description": "",
            "groupName": self.group_name,
            "options": [
                {
                    "label": value.replace("_", " ").title(),
                    "value": value,
                    "displayOrder": order,
                    "hidden": False,
                }
                for order, value in enumerate(self.options)
            ],
            "displayOrder": -1,
            "calculated": self.calculated,
            "externalOptions": False,
            "hasUniqueValue": self.has_unique_value,
            "hidden": False,
            "hubspotDefined": not self.name.startswith("refsync_") and self.group_name != "custom",
            "modificationMetadata": {
                "archivable": not self.read_only,
                "readOnlyDefinition": self.read_only or not self.name.startswith("refsync_"),
                "readOnlyValue": self.read_only,
            },
            "formField": not self.read_only,
            "createdAt": "2024-01-01T00:00:00.000Z",
            "updatedAt": "2024-01-01T00:00:00.000Z",
            "archived": False,
        }


@dataclass
class ObjectSchema:
    """An object type: its ids, its properties and the properties a read returns by default.

    Attributes:
        name: plural API name (``contacts``).
        type_id: HubSpot object type id (``0-1``; custom objects ``2-<n>``).
        singular: singular name used in messages (``CONTACT``).
        properties: definitions keyed by name.
        default_read: properties returned when a read names none.
        search_text: properties the free-text ``query`` of a search looks into.
    """

    name: str
    type_id: str
    singular: str
    properties: dict[str, PropertyDef] = field(default_factory=dict)
    default_read: tuple[str, ...] = ()
    search_text: tuple[str, ...] = ()

    unique_properties: tuple[str, ...] = ()
    """Names of the properties with ``hasUniqueValue`` (kept up to date by :meth:`add`)."""

    def add(self, *defs: PropertyDef) -> None:
        """Add (or replace) property definitions."""
        for definition in defs:
            self.properties[definition.name] = definition
        self.unique_properties = tuple(
            p.name for p in self.properties.values() if p.has_unique_value)


def _system_properties(last_modified: str) -> list[PropertyDef]:
    props = [
        PropertyDef("hs_object_id", "number", "Record ID", read_only=True, group_name="system"),
        PropertyDef("createdate", "datetime", "Create date", read_only=True, group_name="system"),
        PropertyDef("hs_lastmodifieddate", "datetime", "Last modified date", read_only=True,
                    calculated=True, group_name="system"),
    ]
    if last_modified != "hs_lastmodifieddate":
        props.append(PropertyDef(last_modified, "datetime", "Last modified date", read_only=True,
                                 calculated=True, group_name="system"))
    return props


def _refsync_id() -> PropertyDef:
    return PropertyDef("refsync_id", "string", "Refsync ID", has_unique_value=True,
                       group_name="refsync")


def default_schemas() -> dict[str, ObjectSchema]:
    """The object types of a fresh sandbox portal."""
    contacts = ObjectSchema(
        "contacts", "0-1", "CONTACT",
        default_read=("createdate", "email", "firstname", "hs_object_id", "lastmodifieddate",
                      "lastname"),
        search_text=("email", "firstname", "lastname", "phone", "company"),
    )
    contacts.add(
        *_system_properties("lastmodifieddate"),
        PropertyDef("email", "string", "Email", has_unique_value=True,
                    group_name="contactinformation"),
        PropertyDef("firstname", "string", "First name", group_name="contactinformation"),
        PropertyDef("lastname", "string", "Last name", group_name="contactinformation"),
        PropertyDef("company", "string", "Company name", group_name="contactinformation"),
        PropertyDef("phone", "string", "Phone number", field_type="phonenumber",
                    group_name="contactinformation"),
        PropertyDef("jobtitle", "string", "Job title", group_name="contactinformation"),
        PropertyDef("country", "string", "Country", group_name="contactinformation"),
        PropertyDef("website", "string", "Website URL", group_name="contactinformation"),
        PropertyDef("lifecyclestage", "enumeration", "Lifecycle stage", LIFECYCLE_STAGES,
                    field_type="radio", group_name="contactinformation"),
        _refsync_id(),
        PropertyDef("refsync_status", "enumeration", "Refsync status", REFSYNC_STATUSES,
                    group_name="refsync"),
        PropertyDef("refsync_partner_key", "string", "Refsync partner key", group_name="refsync"),
    )
    companies = ObjectSchema(
        "companies", "0-2", "COMPANY",
        default_read=("createdate", "domain", "hs_lastmodifieddate", "hs_object_id", "name"),
        search_text=("name", "domain", "website", "phone"),
    )
    companies.add(
        *_system_properties("hs_lastmodifieddate"),
        PropertyDef("name", "string", "Company name", group_name="companyinformation"),
        PropertyDef("domain", "string", "Company domain name", group_name="companyinformation"),
        PropertyDef("website", "string", "Website URL", group_name="companyinformation"),
        PropertyDef("phone", "string", "Phone number", group_name="companyinformation"),
        PropertyDef("industry", "string", "Industry", group_name="companyinformation"),
        PropertyDef("country", "string", "Country", group_name="companyinformation"),
        PropertyDef("lifecyclestage", "enumeration", "Lifecycle stage", LIFECYCLE_STAGES,
                    field_type="radio", group_name="companyinformation"),
    )
    deals = ObjectSchema(
        "deals", "0-3", "DEAL",
        default_read=("amount", "closedate", "createdate", "dealname", "dealstage",
                      "hs_lastmodifieddate", "hs_object_id", "pipeline"),
        search_text=("dealname",),
    )
    deals.add(
        *_system_properties("hs_lastmodifieddate"),
        PropertyDef("dealname", "string", "Deal name", group_name="dealinformation"),
        PropertyDef("amount", "number", "Amount", group_name="dealinformation"),
        PropertyDef("dealstage", "enumeration", "Deal stage", DEAL_STAGES, field_type="radio",
                    group_name="dealinformation"),
        PropertyDef("pipeline", "enumeration", "Pipeline", ("default",),
                    group_name="dealinformation"),
        PropertyDef("closedate", "datetime", "Close date", group_name="dealinformation"),
        PropertyDef("hs_is_closed", "bool", "Is closed", read_only=True, calculated=True,
                    group_name="dealinformation"),
        PropertyDef("deal_currency_code", "string", "Currency", group_name="dealinformation"),
        _refsync_id(),
    )
    return {schema.name: schema for schema in (contacts, companies, deals)}
