"""The PartnerStack connector (PRM): partnerships, leads, deals and customers via ``requests``.

PartnerStack's vendor API v2 speaks HTTP Basic auth (``public_key:secret_key``) and wraps every
answer in ``{"data": ..., "message": ..., "status": ...}``; lists come as
``data.items`` + ``data.has_more`` and page with ``starting_after=<key>`` (``limit`` up to 250).

Reading: items are listed in ``updated_at`` order with ``min_updated``/``max_updated`` (epoch
milliseconds, both inclusive) taken from the incremental window, so a full read (no cursor) and
an incremental read are the same query; records at the boundary are de-duplicated by the cursor.

Writing: PartnerStack has no upsert by external id. For each record the connector

1. updates (``PATCH``) the item whose remote ``key`` the record carries, if it carries one;
2. otherwise looks the key field up: a top-level field PartnerStack filters on (``email``,
   ``external_key``...) with one filtered list call, a custom field (``fields.refsync_id``)
   through an index built by listing the resource once per ``write()`` call;
3. updates the item found, or creates one.

A create whose answer is lost (timeout, dropped connection, 5xx) is never sent again blindly: the
retry looks the key up first and adopts the item if the lost attempt created it.

Discovery: PartnerStack has no describe endpoint, so :data:`PARTNERSTACK_OBJECTS` describes each
object statically (plus the custom fields named in the settings).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar, TypeVar

import requests
from pydantic import Field, SecretStr

from refsync import jsontext
from refsync.connectors.base import (
    REMOTE_ID_FIELD,
    CheckReport,
    ConnectorBase,
    ConnectorContext,
    ConnectorSettings,
    Finding,
    HttpConnectorSettings,
    Page,
    ReadRecord,
    WriteResult,
)
from refsync.connectors.cursor import Cursor
from refsync.connectors.errors import (
    DEFAULT_TABLE,
    UNKNOWN_OBJECT,
    Action,
    ErrorFacts,
    ErrorRule,
    ErrorTable,
    WriteError,
    got_no_answer,
    to_exception,
)
from refsync.connectors.http import parse_retry_after, transport_error
from refsync.connectors.schema import FieldSchema, ObjectSchema
from refsync.errors import ConnectorError, FatalConnectorError, RecordError, RetryableError

__all__ = [
    "DEFAULT_PARTNERSTACK_URL",
    "PARTNERSTACK_OBJECTS",
    "PARTNERSTACK_TABLE",
    "PartnerStackConnector",
    "PartnerStackSettings",
    "get_path",
    "request_body",
]

DEFAULT_PARTNERSTACK_URL = "https://api.partnerstack.com/api/v2"
_MAX_LIMIT = 250

T = TypeVar("T")


@dataclass(frozen=True)
class _ObjectSpec:
    """What refsync knows of one PartnerStack object without asking the API."""

    fields: dict[str, str]  # name → type
    required: tuple[str, ...]
    read_only: tuple[str, ...]
    filterable: tuple[str, ...]
    unique: tuple[str, ...] = ()


_SYSTEM = {"key": "string", "created_at": "datetime", "updated_at": "datetime"}
_READ_ONLY = ("key", "created_at", "updated_at")

#: Static description of the objects refsync reads and writes (PartnerStack has no describe).
PARTNERSTACK_OBJECTS: dict[str, _ObjectSpec] = {
    "partnerships": _ObjectSpec(
        fields={**_SYSTEM, "email": "string", "first_name": "string", "last_name": "string",
                "approved_status": "string", "group": "object", "meta": "object",
                "partner_key": "string"},
        required=("email",), read_only=_READ_ONLY, filterable=("email", "approved_status"),
        unique=("key", "email"),
    ),
    "leads": _ObjectSpec(
        fields={**_SYSTEM, "partner_key": "string", "email": "string", "name": "string",
                "company": "string", "status": "string", "fields": "object",
                "external_key": "string", "amount": "integer", "approved": "boolean"},
        required=("partner_key", "email"), read_only=_READ_ONLY,
        filterable=("partner_key", "email", "status", "external_key"), unique=("key",),
    ),
    "deals": _ObjectSpec(
        fields={**_SYSTEM, "partner_key": "string", "name": "string", "stage": "string",
                "amount": "integer", "currency": "string", "close_date": "string",
                "external_key": "string", "account_name": "string", "lost_reason": "string",
                "fields": "object"},
        required=("partner_key", "name"), read_only=_READ_ONLY,
        filterable=("partner_key", "stage", "external_key"), unique=("key",),
    ),
    "customers": _ObjectSpec(
        fields={**_SYSTEM, "customer_key": "string", "partner_key": "string", "email": "string",
                "name": "string", "meta": "object"},
        required=("customer_key", "email"), read_only=_READ_ONLY,
        filterable=("partner_key", "email", "customer_key"), unique=("key", "customer_key"),
    ),
}

# fmt: off
PARTNERSTACK_TABLE: ErrorTable = DEFAULT_TABLE.extended((
    ErrorRule(Action.FATAL,
              "{system} rejected the API keys: check public_key and secret_key (test and "
              "production keys are separate pairs)", status=401),
    ErrorRule(Action.RECORD_ERROR, "{system} has no such item any more ({message})",
              code="RECORD_NOT_FOUND"),
    ErrorRule(Action.RECORD_ERROR,
              "{system} holds several items with this key ({message}): remove the duplicates "
              "in PartnerStack", code="DUPLICATE_KEY"),
))
# fmt: on


class PartnerStackSettings(HttpConnectorSettings):
    """Settings of a ``partnerstack`` system."""

    public_key: str = Field(description="API public key")
    secret_key: SecretStr = Field(description="API secret key")
    custom_fields: dict[str, list[str]] = Field(
        default_factory=lambda: {"leads": ["refsync_id", "refsync_reason"],
                                 "deals": ["refsync_id"]},
        description="custom fields (under 'fields') per object, reported by discover()",
    )
    requests_per_minute: int = Field(default=300, ge=1, description="pace of API calls")

    @property
    def api_url(self) -> str:
        """The API root, without a trailing slash."""
        return (self.base_url or DEFAULT_PARTNERSTACK_URL).rstrip("/")

    def limit(self) -> int:
        """Items per list call."""
        return min(_MAX_LIMIT, self.page_size or _MAX_LIMIT)


class _RecordRefused(Exception):
    """One record was refused; carries the classified error (never retried)."""

    def __init__(self, error: WriteError) -> None:
        super().__init__(error.message)
        self.error = error


def get_path(item: Mapping[str, Any], name: str) -> Any:
    """Return ``item[name]``, following a dotted path (``fields.refsync_id``) into objects.

    A flat key spelled with the dot wins over the nested value.
    """
    if name in item:
        return item[name]
    value: Any = item
    for part in name.split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value


def request_body(record: Mapping[str, Any]) -> dict[str, Any]:
    """Turn a record (dotted names allowed) into a PartnerStack request body.

    ``fields.refsync_id`` becomes ``{"fields": {"refsync_id": ...}}``; the remote ``key`` is
    left out (it is the URL); datetimes become epoch milliseconds.
    """
    body: dict[str, Any] = {}
    for name, value in record.items():
        if name == "key":
            continue
        target = body
        *parents, leaf = name.split(".")
        for part in parents:
            nested = target.get(part)
            if not isinstance(nested, dict):
                nested = {}
                target[part] = nested
            target = nested
        if isinstance(value, Mapping) and isinstance(target.get(leaf), dict):
            target[leaf].update(value)
        else:
            target[leaf] = dict(value) if isinstance(value, Mapping) else value
    return json.loads(json.dumps(body, default=_json_value))


def _json_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return round(value.timestamp() * 1000)
    return str(value)


def _parse_time(value: Any) -> datetime | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value / 1000, tz=UTC)
    text = str(value).strip()
    if text.isdigit():
        return datetime.fromtimestamp(int(text) / 1000, tz=UTC)
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _floor_ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def _field_problems(errors: Mapping[str, Any]) -> list[str]:
    """``field: problem problem`` for each field PartnerStack named in ``errors``."""
    said = []
    for name, problems in errors.items():
        listed = problems if isinstance(problems, list) else [problems]
        text = " ".join(str(problem) for problem in listed if problem not in (None, ""))
        said.append(f"{name}: {text}" if text else str(name))
    return said


def _with_field_problems(message: str, errors: Mapping[str, Any]) -> str:
    """The envelope's message followed by the field problems it does not already say."""
    missing = [said for said in _field_problems(errors) if said not in message]
    if not missing:
        return message
    return f"{message} ({'; '.join(missing)})" if message else "; ".join(missing)


def _facts(response: requests.Response, now: datetime, *, record_level: bool) -> ErrorFacts:
    """Describe a failed PartnerStack answer (the envelope with ``message`` and ``errors``).

    A validation answer's ``errors`` (field → problems) are kept in the message, so the
    quarantine says which fields PartnerStack refused and why.
    """
    try:
        body: Any = response.json()
    except ValueError:
        body = None
    status = response.status_code
    message = ""
    fields: tuple[str, ...] = ()
    if isinstance(body, dict):
        message = str(body.get("message") or "")
        errors = body.get("errors")
        if isinstance(errors, dict):
            fields = tuple(str(name) for name in errors)
            message = _with_field_problems(message, errors)
    else:
        message = response.text[:500]
    code: str | None = None
    if status == 400:
        code = "VALIDATION_ERROR" if record_level else "INVALID_REQUEST"
    elif status == 404:
        code = "RECORD_NOT_FOUND" if record_level else "NOT_FOUND"
    return ErrorFacts(
        status=status,
        code=code,
        message=message,
        fields=fields,
        retry_after=parse_retry_after(response.headers.get("Retry-After"), now),
    )


class PartnerStackConnector(ConnectorBase):
    """Reads and writes PartnerStack partnerships, leads, deals and customers.

    Args:
        settings: the validated ``settings:`` block.
        context: injected clock, sleep, counters, rate limiters, logger and session hook.
    """

    Settings: ClassVar[type[ConnectorSettings]] = PartnerStackSettings

    def __init__(self, settings: PartnerStackSettings, context: ConnectorContext) -> None:
        super().__init__(settings, context)
        self.ps_settings = settings
        bucket = context.bucket(
            f"partnerstack:{settings.public_key}",
            capacity=settings.requests_per_minute,
            interval_seconds=60.0,
            reserve=settings.daily_reserve,
        )
        self.session = context.new_session(timeout=settings.timeout, bucket=bucket)
        self.session.verify = settings.verify()
        self.session.auth = (settings.public_key, settings.secret_key.get_secret_value())
        self.session.headers["Accept"] = "application/json"
        self.table = PARTNERSTACK_TABLE

    @classmethod
    def from_settings(cls, settings: Any, context: ConnectorContext) -> PartnerStackConnector:
        """Build the connector from :class:`PartnerStackSettings` (or a dict validated into one)."""
        if not isinstance(settings, PartnerStackSettings):
            settings = PartnerStackSettings.model_validate(settings)
        return cls(settings, context)

    # --- HTTP ----------------------------------------------------------------------------

    def _once(self, method: str, path: str, *, record_level: bool = False, **kwargs: Any) -> Any:
        """Send one request; return the envelope's ``data`` or raise the classified error."""
        url = f"{self.ps_settings.api_url}/{path.lstrip('/')}"
        try:
            response = self.session.request(method, url, **kwargs)
        except requests.RequestException as error:
            raise transport_error(error, system=self.system, verify=self.session.verify,
                                  table=self.table) from error
        if response.ok:
            body = jsontext.loads(response.content) if response.content else None
            return body.get("data") if isinstance(body, dict) else None
        facts = _facts(response, self.context.clock(), record_level=record_level)
        found = self.table.classify(facts, system=self.system)
        if found.action is Action.RECORD_ERROR and record_level:
            raise _RecordRefused(self.table.write_error(facts, system=self.system))
        failure = to_exception(found, system=self.system)
        if isinstance(failure, RecordError):  # a refused read or lookup: a configuration problem
            raise FatalConnectorError(
                found.message, system=self.system, status=facts.status, code=facts.code,
                detail=facts.message,
            )
        raise failure

    def _retried(self, call: Callable[[], T], operation: str) -> T:
        return self.retried(call, policy=self.ps_settings.retry_policy(), operation=operation)

    def _call(self, method: str, path: str, *, record_level: bool = False, **kwargs: Any) -> Any:
        return self._retried(lambda: self._once(method, path, record_level=record_level, **kwargs),
                             f"{method} {path}")

    def _spec(self, object_name: str) -> _ObjectSpec:
        spec = PARTNERSTACK_OBJECTS.get(object_name)
        if spec is None:
            raise FatalConnectorError(
                f"{self.system}: PartnerStack object {object_name!r} is not supported; use one "
                f"of {', '.join(PARTNERSTACK_OBJECTS)}",
                system=self.system,
                code=UNKNOWN_OBJECT,
            )
        return spec

    def _list(self, object_name: str, params: dict[str, Any]) -> Iterator[list[dict[str, Any]]]:
        """Yield the item lists of every page of a list query."""
        query = dict(params)
        while True:
            data = self._call("GET", f"/{object_name}", params=query) or {}
            items = [item for item in data.get("items") or [] if isinstance(item, dict)]
            yield items
            if not data.get("has_more") or not items:
                return
            query["starting_after"] = items[-1]["key"]

    # --- check / discover ----------------------------------------------------------------

    def check(self) -> CheckReport:
        """Verify the key pair by listing one partnership."""
        try:
            self._call("GET", "/partnerships", params={"limit": 1})
        except ConnectorError as error:
            if got_no_answer(error):
                return CheckReport.unreachable(self.system, error)
            auth = error.status != 401
            return CheckReport(
                system=self.system,
                auth_ok=auth,
                permissions_ok=False,
                findings=[Finding("error", error.message, "fix the keys or the base_url setting")],
            )
        return CheckReport(system=self.system, auth_ok=True, permissions_ok=True)

    def discover(self, object_name: str) -> ObjectSchema:
        """Describe an object from the static schema and the configured custom fields.

        PartnerStack publishes no describe endpoint, so the field list is refsync's own.
        """
        spec = self._spec(object_name)
        fields = {
            name: FieldSchema(
                name=name,
                type=kind,
                required=name in spec.required,
                writable=name not in spec.read_only,
                unique=name in spec.unique,
                external_id=name == "key",
            )
            for name, kind in spec.fields.items()
        }
        for custom in self.ps_settings.custom_fields.get(object_name, []):
            path = f"fields.{custom}"
            is_key = custom == "refsync_id"
            fields[path] = FieldSchema(
                name=path, type="string", unique=is_key, external_id=is_key
            )
        return ObjectSchema(name=object_name, fields=fields)

    # --- read ----------------------------------------------------------------------------

    def read(
        self, object_name: str, fields: Sequence[str], cursor: Cursor | None
    ) -> Iterator[Page]:
        """Yield items changed inside the incremental window, in ``(updated_at, key)`` order."""
        self._spec(object_name)
        window = self.incremental_window(cursor)
        params: dict[str, Any] = {
            "order_by": "updated_at",
            "limit": self.ps_settings.limit(),
            "max_updated": _floor_ms(window.upper),
        }
        if window.lower is not None:
            params["min_updated"] = _floor_ms(window.lower)
        for items in self._list(object_name, params):
            records: list[ReadRecord] = []
            for item in items:
                stamp = _parse_time(item.get("updated_at"))
                if stamp is None or not window.accept(stamp, str(item["key"])):
                    continue
                data = {name: get_path(item, name) for name in fields} if fields else dict(item)
                records.append(ReadRecord(id=str(item["key"]), modstamp=stamp, data=data))
            if records:
                yield Page(records=records, cursor=window.cursor)

    # --- write ---------------------------------------------------------------------------

    def write(
        self, object_name: str, key_field: str, records: Sequence[Mapping[str, Any]]
    ) -> list[WriteResult]:
        """Update or create each record, matched by its remote ``key`` or by ``key_field``.

        See the module docstring for the lookup rules; results come back in input order.
        """
        spec = self._spec(object_name)
        finder = _Finder(self, object_name, key_field, spec)
        return [self._write_one(object_name, key_field, record, finder) for record in records]

    def _write_one(
        self, object_name: str, key_field: str, record: Mapping[str, Any], finder: _Finder
    ) -> WriteResult:
        remote_hint = record.get(REMOTE_ID_FIELD)
        record = {name: value for name, value in record.items() if name != REMOTE_ID_FIELD}
        key_value = get_path(record, key_field)
        key = None if key_value in (None, "") else str(key_value)
        remote = record.get("key") or remote_hint
        if key is None and not remote:
            facts = ErrorFacts(
                code="REQUIRED_FIELD_MISSING", message=f"missing {key_field}", fields=(key_field,)
            )
            return WriteResult.failure(None, self.table.write_error(facts, system=self.system))
        body = request_body(record)
        try:
            target = str(remote) if remote else finder.find(key) if key is not None else None
            if target is not None:
                item = self._call(
                    "PATCH", f"/{object_name}/{target}", record_level=True, json=body
                )
                return WriteResult.success(key, remote_id=str(item["key"]), created=False)
            assert key is not None
            item, created = self._create(object_name, key, body, finder)
            finder.remember(key, str(item["key"]))
            return WriteResult.success(key, remote_id=str(item["key"]), created=created)
        except _RecordRefused as refused:
            return WriteResult.failure(key, refused.error)
        except RetryableError as error:
            return WriteResult.failure(
                key,
                WriteError(
                    code=error.code or "retry",
                    message=error.message,
                    action=Action.RETRY,
                    detail=error.detail or "",
                ),
            )

    def _create(
        self, object_name: str, key: str, body: dict[str, Any], finder: _Finder
    ) -> tuple[dict[str, Any], bool]:
        """Create an item; a retry first checks whether the lost attempt already created it."""
        attempts = 0

        def attempt() -> tuple[dict[str, Any], bool]:
            nonlocal attempts
            attempts += 1
            if attempts > 1:
                existing = finder.find(key, fresh=True)
                if existing is not None:
                    self.context.logger.info(
                        "partnerstack_create_adopted", system=self.system, remote_id=existing
                    )
                    return {"key": existing}, True
            item = self._once("POST", f"/{object_name}", record_level=True, json=body)
            return dict(item), True

        return self._retried(attempt, f"POST /{object_name}")


class _Finder:
    """Looks items up by the key field for one ``write()`` call."""

    def __init__(
        self, connector: PartnerStackConnector, object_name: str, key_field: str, spec: _ObjectSpec
    ) -> None:
        self._connector = connector
        self._object = object_name
        self._key_field = key_field
        self._by_filter = key_field in spec.filterable
        self._index: dict[str, list[str]] | None = None

    def _build_index(self) -> dict[str, list[str]]:
        index: dict[str, list[str]] = {}
        params = {"limit": _MAX_LIMIT, "order_by": "created_at"}
        for items in self._connector._list(self._object, params):
            for item in items:
                value = get_path(item, self._key_field)
                if value not in (None, ""):
                    index.setdefault(str(value), []).append(str(item["key"]))
        return index

    def find(self, key: str, *, fresh: bool = False) -> str | None:
        """Return the remote key of the item holding ``key``, or ``None``.

        Raises:
            _RecordRefused: several items hold the key.
        """
        if self._by_filter:
            params = {self._key_field: key, "limit": 2}
            data = self._connector._call("GET", f"/{self._object}", params=params) or {}
            matches = [str(item["key"]) for item in data.get("items") or []]
        else:
            if self._index is None or fresh:
                self._index = self._build_index()
            matches = self._index.get(key, [])
        if len(matches) > 1:
            facts = ErrorFacts(
                code="DUPLICATE_KEY",
                message=f"{len(matches)} {self._object} have {self._key_field} = {key}",
                fields=(self._key_field,),
            )
            raise _RecordRefused(
                self._connector.table.write_error(facts, system=self._connector.system)
            )
        return matches[0] if matches else None

    def remember(self, key: str, remote: str) -> None:
        """Record a created item so a later record with the same key updates it."""
        if self._index is not None:
            self._index[key] = [remote]
