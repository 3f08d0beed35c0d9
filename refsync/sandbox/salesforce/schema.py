"""Salesforce object and field definitions of the emulator, and their ``describe`` output.

Standard objects carry the fields refsync and its demo use; custom fields (``*__c``) can be
declared through seed metadata. ``Refsync_Id__c`` (external id, unique) and ``Partner_Key__c``
exist on Lead and Opportunity by default, so the shipped mappings work out of the box.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "DATETIME_TYPES",
    "NUMBER_TYPES",
    "STRING_TYPES",
    "FieldDef",
    "ObjectDef",
    "SchemaError",
    "field_from_metadata",
    "standard_objects",
]

STRING_TYPES = frozenset(
    {"string", "email", "phone", "url", "picklist", "textarea", "id", "reference"}
)
NUMBER_TYPES = frozenset({"double", "currency", "percent", "int"})
DATETIME_TYPES = frozenset({"datetime"})
_KNOWN_TYPES = STRING_TYPES | NUMBER_TYPES | {"boolean", "date", "datetime"}


class SchemaError(ValueError):
    """Invalid custom field metadata."""


@dataclass
class FieldDef:
    """One field of an sObject, as ``describe`` reports it."""

    name: str
    type: str
    label: str = ""
    length: int = 0
    nillable: bool = True
    createable: bool = True
    updateable: bool = True
    external_id: bool = False
    unique: bool = False
    custom: bool = False
    required: bool = False
    picklist: tuple[str, ...] = ()
    restricted: bool = False
    default: Any = None
    reference_to: tuple[str, ...] = ()

    @property
    def display_label(self) -> str:
        """The label, or one made from the name when none was given (``Partner_Tier__c`` →
        ``Partner Tier``), as ``describe`` and error messages show it."""
        return self.label or self.name.removesuffix("__c").replace("_", " ")

    def describe(self) -> dict[str, Any]:
        """Return the field as in ``GET .../sobjects/{Object}/describe``."""
        return {
            "name": self.name,
            "label": self.display_label,
            "type": self.type,
            "length": self.length,
            "nillable": self.nillable,
            "createable": self.createable,
            "updateable": self.updateable,
            "externalId": self.external_id,
            "unique": self.unique,
            "custom": self.custom,
            "idLookup": self.name == "Id" or self.external_id,
            "calculated": False,
            "defaultedOnCreate": self.default is not None or not self.createable,
            "restrictedPicklist": self.restricted,
            "picklistValues": [
                {"value": v, "label": v, "active": True, "defaultValue": v == self.default}
                for v in self.picklist
            ],
            "referenceTo": list(self.reference_to),
            "soapType": _SOAP_TYPES.get(self.type, "xsd:string"),
        }


_SOAP_TYPES = {
    "id": "tns:ID", "reference": "tns:ID", "boolean": "xsd:boolean", "datetime": "xsd:dateTime",
    "date": "xsd:date", "double": "xsd:double", "currency": "xsd:double",
    "percent": "xsd:double", "int": "xsd:int",
}


@dataclass
class ObjectDef:
    """One sObject type: its name, id prefix and fields (looked up case-insensitively)."""

    name: str
    label: str
    key_prefix: str
    fields: dict[str, FieldDef] = field(default_factory=dict)
    _by_lower: dict[str, FieldDef] = field(default_factory=dict, repr=False)

    def add(self, definition: FieldDef) -> None:
        """Add or replace a field."""
        self.fields[definition.name] = definition
        self._by_lower[definition.name.lower()] = definition

    def get(self, name: str) -> FieldDef | None:
        """Return the field called ``name`` in any letter case, or None."""
        return self._by_lower.get(name.lower())

    def describe(self) -> dict[str, Any]:
        """Return the object as in ``GET .../sobjects/{Object}/describe`` (URLs added by caller)."""
        return {
            "name": self.name,
            "label": self.label,
            "labelPlural": self.label + "s",
            "keyPrefix": self.key_prefix,
            "custom": False,
            "createable": True,
            "updateable": True,
            "deletable": True,
            "queryable": True,
            "replicateable": True,
            "fields": [f.describe() for f in self.fields.values()],
        }


_RO: dict[str, Any] = {"createable": False, "updateable": False}


def _system_fields() -> list[FieldDef]:
    return [
        FieldDef("Id", "id", "Record ID", 18, nillable=False, **_RO),
        FieldDef("IsDeleted", "boolean", "Deleted", nillable=False, default=False, **_RO),
        FieldDef("CreatedDate", "datetime", "Created Date", nillable=False, **_RO),
        FieldDef("LastModifiedDate", "datetime", "Last Modified Date", nillable=False, **_RO),
        FieldDef("SystemModstamp", "datetime", "System Modstamp", nillable=False, **_RO),
    ]


def _refsync_fields() -> list[FieldDef]:
    return [
        FieldDef("Refsync_Id__c", "string", "refsync ID", 36, external_id=True, unique=True,
                 custom=True),
        FieldDef("Partner_Key__c", "string", "Partner Key", 80, custom=True),
    ]


LEAD_STATUSES = (
    "Open - Not Contacted", "Working - Contacted", "Closed - Converted", "Closed - Not Converted",
)
OPPORTUNITY_STAGES = (
    "Prospecting", "Qualification", "Proposal/Price Quote", "Negotiation/Review",
    "Closed Won", "Closed Lost",
)
LEAD_SOURCES = ("Web", "Phone Inquiry", "Partner Referral", "Purchased List", "Other")
ACCOUNT_TYPES = (
    "Prospect", "Customer - Direct", "Customer - Channel", "Channel Partner / Reseller",
    "Installation Partner", "Technology Partner", "Other",
)


def standard_objects() -> dict[str, ObjectDef]:
    """Return fresh definitions of Lead, Contact, Account and Opportunity."""
    lead = ObjectDef("Lead", "Lead", "00Q")
    for f in [
        *_system_fields(),
        FieldDef("FirstName", "string", "First Name", 40),
        FieldDef("LastName", "string", "Last Name", 80, nillable=False, required=True),
        FieldDef("Company", "string", "Company", 255, nillable=False, required=True),
        FieldDef("Title", "string", "Title", 128),
        FieldDef("Email", "email", "Email", 80),
        FieldDef("Phone", "phone", "Phone", 40),
        FieldDef("Website", "url", "Website", 255),
        FieldDef("City", "string", "City", 40),
        FieldDef("Country", "string", "Country", 80),
        FieldDef("Status", "picklist", "Lead Status", 255, nillable=False, required=True,
                 picklist=LEAD_STATUSES, restricted=True, default="Open - Not Contacted"),
        FieldDef("LeadSource", "picklist", "Lead Source", 255, picklist=LEAD_SOURCES),
        FieldDef("NumberOfEmployees", "int", "Employees"),
        FieldDef("AnnualRevenue", "currency", "Annual Revenue", 18),
        FieldDef("Description", "textarea", "Description", 32000),
        FieldDef("IsConverted", "boolean", "Converted", nillable=False, default=False, **_RO),
        FieldDef("ConvertedDate", "date", "Converted Date", **_RO),
        FieldDef("ConvertedAccountId", "reference", "Converted Account ID", 18,
                 reference_to=("Account",), **_RO),
        FieldDef("ConvertedContactId", "reference", "Converted Contact ID", 18,
                 reference_to=("Contact",), **_RO),
        FieldDef("ConvertedOpportunityId", "reference", "Converted Opportunity ID", 18,
                 reference_to=("Opportunity",), **_RO),
        *_refsync_fields(),
    ]:
        lead.add(f)

    account = ObjectDef("Account", "Account", "001")
    for f in [
        *_system_fields(),
        FieldDef("Name", "string", "Account Name", 255, nillable=False, required=True),
        FieldDef("Type", "picklist", "Account Type", 255, picklist=ACCOUNT_TYPES),
        FieldDef("Website", "url", "Website", 255),
        FieldDef("Industry", "picklist", "Industry", 255,
                 picklist=("Technology", "Finance", "Healthcare", "Manufacturing", "Retail",
                           "Education", "Other")),
        FieldDef("Phone", "phone", "Account Phone", 40),
        FieldDef("BillingCountry", "string", "Billing Country", 80),
        FieldDef("NumberOfEmployees", "int", "Employees"),
        FieldDef("AnnualRevenue", "currency", "Annual Revenue", 18),
        FieldDef("Description", "textarea", "Account Description", 32000),
    ]:
        account.add(f)

    contact = ObjectDef("Contact", "Contact", "003")
    for f in [
        *_system_fields(),
        FieldDef("AccountId", "reference", "Account ID", 18, reference_to=("Account",)),
        FieldDef("FirstName", "string", "First Name", 40),
        FieldDef("LastName", "string", "Last Name", 80, nillable=False, required=True),
        FieldDef("Email", "email", "Email", 80),
        FieldDef("Phone", "phone", "Business Phone", 40),
        FieldDef("Title", "string", "Title", 128),
        FieldDef("MailingCountry", "string", "Mailing Country", 80),
        FieldDef("LeadSource", "picklist", "Lead Source", 255, picklist=LEAD_SOURCES),
        FieldDef("Description", "textarea", "Contact Description", 32000),
    ]:
        contact.add(f)

    opportunity = ObjectDef("Opportunity", "Opportunity", "006")
    for f in [
        *_system_fields(),
        FieldDef("AccountId", "reference", "Account ID", 18, reference_to=("Account",)),
        FieldDef("Name", "string", "Name", 120, nillable=False, required=True),
        FieldDef("StageName", "picklist", "Stage", 255, nillable=False, required=True,
                 picklist=OPPORTUNITY_STAGES, restricted=True),
        FieldDef("Amount", "currency", "Amount", 18),
        FieldDef("Probability", "percent", "Probability (%)", 3),
        FieldDef("CloseDate", "date", "Close Date", nillable=False, required=True),
        FieldDef("Type", "picklist", "Opportunity Type", 255,
                 picklist=("New Customer", "Existing Customer - Upgrade",
                           "Existing Customer - Replacement")),
        FieldDef("LeadSource", "picklist", "Lead Source", 255, picklist=LEAD_SOURCES),
        FieldDef("Description", "textarea", "Description", 32000),
        FieldDef("IsClosed", "boolean", "Closed", nillable=False, default=False, **_RO),
        FieldDef("IsWon", "boolean", "Won", nillable=False, default=False, **_RO),
        *_refsync_fields(),
    ]:
        opportunity.add(f)
    return {o.name: o for o in (lead, account, contact, opportunity)}


def field_from_metadata(spec: dict[str, Any]) -> FieldDef:
    """Build a custom field from seed metadata (``{"name": "X__c", "type": "string", ...}``).

    Raises:
        SchemaError: the name does not end in ``__c``, or the type is unknown.
    """
    name = spec.get("name")
    if not isinstance(name, str) or not name.endswith("__c"):
        raise SchemaError(f"custom field names must end in __c: {name!r}")
    field_type = spec.get("type", "string")
    if field_type not in _KNOWN_TYPES - {"id"}:
        raise SchemaError(f"{name}: unknown field type {field_type!r}")
    picklist = tuple(
        v["value"] if isinstance(v, dict) else str(v) for v in spec.get("picklistValues", [])
    )
    default_length = 255 if field_type in STRING_TYPES else 0
    return FieldDef(
        name=name,
        type=field_type,
        label=str(spec.get("label", "")),
        length=int(spec.get("length", default_length)),
        nillable=not spec.get("required", False),
        required=bool(spec.get("required", False)),
        external_id=bool(spec.get("externalId", False)),
        unique=bool(spec.get("unique", False)),
        custom=True,
        picklist=picklist,
        restricted=bool(spec.get("restrictedPicklist", False)),
        default=spec.get("defaultValue"),
    )
