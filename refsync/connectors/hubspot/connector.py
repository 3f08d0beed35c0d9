"""The HubSpot connector: CRM objects (contacts, deals, custom objects) via the CRM v3 API.

The HubSpot calls stay behind refsync's own connector interface, so the transport can move to
HubSpot's date-versioned paths without touching the engine. See :mod:`.reading` for how
incremental reads survive the search API's 10,000-result cap and :mod:`.writing` for how a
partially failed batch is split into per-record results.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any, ClassVar

from refsync.connectors.base import (
    CheckReport,
    ConnectorBase,
    ConnectorContext,
    ConnectorSettings,
    Finding,
    Page,
    WriteResult,
)
from refsync.connectors.cursor import Cursor
from refsync.connectors.errors import got_no_answer, names_unknown_object
from refsync.connectors.hubspot.reading import LIST_POSITION_PREFIX, list_pages, search_pages
from refsync.connectors.hubspot.settings import HubSpotSettings
from refsync.connectors.hubspot.transport import HubSpotTransport, read_failure
from refsync.connectors.hubspot.writing import upsert_records
from refsync.connectors.schema import FieldSchema, ObjectSchema
from refsync.errors import ConnectorError, RecordError

__all__ = ["ASSOCIATION_READ_BATCH", "HubSpotConnector", "schema_from_properties"]

ASSOCIATION_READ_BATCH = 1_000
"""Ids one associations batch read may name (HubSpot refuses more since February 2025)."""


def schema_from_properties(
    object_name: str, properties: Sequence[Mapping[str, Any]]
) -> ObjectSchema:
    """Build an :class:`ObjectSchema` from the properties API's ``results``.

    Enumeration options become picklist values, ``hasUniqueValue`` marks a field unique (and
    usable as an upsert key), and read-only or calculated properties are not writable.
    """
    fields: dict[str, FieldSchema] = {}
    for item in properties:
        name = str(item.get("name") or "")
        if not name:
            continue
        metadata = item.get("modificationMetadata") or {}
        read_only = bool(metadata.get("readOnlyValue")) or bool(item.get("calculated"))
        options = [
            str(option["value"])
            for option in item.get("options") or []
            if isinstance(option, dict) and "value" in option and not option.get("hidden")
        ]
        kind = str(item.get("type") or "string").lower()
        unique = bool(item.get("hasUniqueValue"))
        fields[name] = FieldSchema(
            name=name,
            type=kind,
            required=False,
            writable=not read_only,
            unique=unique or name == "hs_object_id",
            external_id=unique,
            picklist_values=options if kind == "enumeration" else None,
            length=None,
        )
    return ObjectSchema(name=object_name, fields=fields)


def _properties_fix(error: ConnectorError, object_name: str) -> str:
    """What to do when HubSpot answered a properties read of ``object_name`` with ``error``.

    Only a 403 (the token lacks a scope) asks for scopes, and only an unknown object type for
    another name; any other answer's message says what it is.
    """
    if error.status == 403:
        return "grant the app the crm.schemas and crm.objects scopes"
    if names_unknown_object(error):
        return f"check {object_name!r} in check_objects: it must name a HubSpot object type"
    return "fix the cause and run check again"


class HubSpotConnector(ConnectorBase):
    """Reads and writes HubSpot CRM objects.

    Args:
        settings: the validated ``settings:`` block.
        context: injected clock, sleep, counters, rate limiters and logger.
    """

    Settings: ClassVar[type[ConnectorSettings]] = HubSpotSettings

    def __init__(self, settings: HubSpotSettings, context: ConnectorContext) -> None:
        super().__init__(settings, context)
        self.hubspot_settings = settings
        self.transport = HubSpotTransport(settings, context)

    @classmethod
    def from_settings(cls, settings: Any, context: ConnectorContext) -> HubSpotConnector:
        """Build the connector from :class:`HubSpotSettings` (or a dict validated into one)."""
        if not isinstance(settings, HubSpotSettings):
            settings = HubSpotSettings.model_validate(settings)
        return cls(settings, context)

    # --- check / discover ----------------------------------------------------------------

    def _properties(self, object_name: str) -> list[dict[str, Any]]:
        try:
            answer = self.transport.call(
                "properties", self.transport.properties_api.get_all, object_name, archived=False
            )
        except RecordError as error:
            raise read_failure(error, system=self.system) from error
        body = answer.body if isinstance(answer.body, dict) else {}
        return [item for item in body.get("results") or [] if isinstance(item, dict)]

    def discover(self, object_name: str) -> ObjectSchema:
        """Describe an object type from the properties API (``GET /crm/v3/properties/{type}``)."""
        return schema_from_properties(object_name, self._properties(object_name))

    def check(self) -> CheckReport:
        """Sign in, read each object's properties and verify the key property is unique.

        The daily budget comes from the ``X-HubSpot-RateLimit-Daily*`` headers, which HubSpot
        sends for private-app tokens only.
        """
        settings = self.hubspot_settings
        objects = settings.check_objects
        key_property = settings.key_property
        findings: list[Finding] = []
        try:
            self.transport.sign_in()
        except ConnectorError as error:
            if got_no_answer(error):
                return CheckReport.unreachable(self.system, error)
            findings.append(Finding("error", error.message, "fix the OAuth app credentials"))
            return CheckReport(
                system=self.system, auth_ok=False, permissions_ok=False, findings=findings
            )
        auth_ok = True
        permissions_ok = True
        for object_name in objects:
            try:
                schema = self.discover(object_name)
            except ConnectorError as error:
                if got_no_answer(error):
                    return CheckReport.unreachable(self.system, error)
                if error.status == 401:
                    auth_ok = False
                    findings.append(Finding("error", error.message, "fix the credentials"))
                    break
                permissions_ok = False
                findings.append(
                    Finding("error", f"cannot read {object_name} properties: {error.message}",
                            _properties_fix(error, object_name))
                )
                continue
            key = schema.fields.get(key_property)
            if key is None:
                findings.append(
                    Finding("error", f"{object_name} has no property {key_property!r}",
                            f"create a single-line text property {key_property!r} on "
                            f"{object_name} with 'require unique values' switched on")
                )
            elif not key.unique:
                findings.append(
                    Finding("error", f"{object_name}.{key_property} does not require unique values",
                            "switch on 'require unique values' for it: batch upserts need it")
                )
        return CheckReport(
            system=self.system,
            auth_ok=auth_ok,
            permissions_ok=permissions_ok and auth_ok,
            api_budget=self.transport.bucket.daily,
            findings=findings,
        )

    # --- read / write --------------------------------------------------------------------

    def read(
        self, object_name: str, fields: Sequence[str], cursor: Cursor | None
    ) -> Iterator[Page]:
        """Yield pages changed since ``cursor``; every record when it is ``None``.

        A cursor without a modstamp, or one holding a list position, continues a full read.
        """
        window = self.incremental_window(cursor)
        position = cursor.position if cursor is not None else None
        if cursor is None or cursor.modstamp is None or (
            position is not None and position.startswith(LIST_POSITION_PREFIX)
        ):
            yield from list_pages(
                self.transport, self.hubspot_settings, object_name, fields, window, position
            )
            return
        yield from search_pages(self.transport, self.hubspot_settings, object_name, fields, window)

    def associated_ids(
        self, from_object: str, to_object: str, ids: Sequence[str]
    ) -> dict[str, list[str]]:
        """The ids of the ``to_object`` records associated with each of ``ids``.

        One ``POST /crm/v4/associations/{from}/{to}/batch/read`` per 1,000 ids; a record with
        more associations than one answer holds is asked again from its ``paging.next.after``.
        Ids without associations map to an empty list (HubSpot reports them as errors of a 207
        answer, which are not failures here).

        Raises:
            ConnectorError: the classified failure once retries are spent (a refused read,
                e.g. an unknown object type, is fatal).
        """
        found: dict[str, list[str]] = {str(record_id): [] for record_id in ids}
        pending: list[dict[str, str]] = [{"id": record_id} for record_id in found]
        while pending:
            batch, pending = pending[:ASSOCIATION_READ_BATCH], pending[ASSOCIATION_READ_BATCH:]
            try:
                answer = self.transport.call(
                    "associations_read",
                    self.transport.associations_batch_api.get_page,
                    from_object,
                    to_object,
                    batch_input_public_fetch_associations_batch_request={"inputs": batch},
                )
            except RecordError as error:
                raise read_failure(error, system=self.system) from error
            body = answer.body if isinstance(answer.body, dict) else {}
            for result in body.get("results") or []:
                if not isinstance(result, dict):
                    continue
                from_id = str((result.get("from") or {}).get("id", ""))
                targets = found.setdefault(from_id, [])
                targets.extend(str(link["toObjectId"]) for link in result.get("to") or []
                               if isinstance(link, dict) and link.get("toObjectId") is not None)
                after = ((result.get("paging") or {}).get("next") or {}).get("after")
                if after:
                    pending.append({"id": from_id, "after": str(after)})
        return found

    def write(
        self, object_name: str, key_field: str, records: Sequence[Mapping[str, Any]]
    ) -> list[WriteResult]:
        """Upsert by ``key_field`` (a unique property) with ``batch/upsert``, 100 a call."""
        return upsert_records(
            self.transport,
            self.transport.table,
            object_name,
            key_field,
            records,
            self.hubspot_settings.batch_size,
        )
