"""The Salesforce connector (REST API through simple-salesforce).

* Sign-in: OAuth client credentials (needs the org's My Domain URL) or JWT bearer; a session
  that expires (``INVALID_SESSION_ID``) is renewed once and the call retried.
* Reading: ``queryAll`` (so deletes are seen) on ``SystemModstamp``, ordered by
  ``(SystemModstamp, Id)``, bounded by the shared (modstamp, id) cursor.
* Writing: sObject Collections upsert by the external-id field, 200 records a call, with
  ``allOrNone: false`` so a refused record fails alone.
* Errors from simple-salesforce are translated once, through the classification table.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar

import requests
from pydantic import Field, SecretStr, field_validator, model_validator
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import SalesforceError

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
    check_http_url,
)
from refsync.connectors.cursor import Cursor
from refsync.connectors.errors import DEFAULT_TABLE, ErrorFacts, got_no_answer, to_exception
from refsync.connectors.http import ApiSession, transport_error
from refsync.connectors.salesforce_auth import SalesforceToken, request_token
from refsync.connectors.schema import FieldSchema, ObjectSchema
from refsync.connectors.usage import DailyBudget
from refsync.errors import ConnectorError, FatalConnectorError, QuotaExhaustedError
from refsync.logging import register_secret
from refsync.validation import InvalidValueError, path_exists

__all__ = [
    "COLLECTION_LIMIT",
    "SalesforceConnector",
    "SalesforceSettings",
    "fields_named_in",
    "read_key_file",
]

T = TypeVar("T")

COLLECTION_LIMIT = 200
_LOW_BUDGET_SHARE = 0.1


class SalesforceSettings(HttpConnectorSettings):
    """Settings of a ``salesforce`` system."""

    auth: Literal["client_credentials", "jwt"] = "client_credentials"
    login_url: str | None = Field(
        default=None,
        description="where to sign in: your My Domain URL (defaults to base_url, then "
        "https://login.salesforce.com)",
    )
    consumer_key: str = Field(description="the connected app's consumer key")
    consumer_secret: SecretStr | None = None
    username: str | None = Field(default=None, description="integration user (JWT only)")
    private_key: SecretStr | None = Field(default=None, description="PEM key (JWT only)")
    private_key_file: Path | None = None
    api_version: str = "62.0"
    calls_per_second: float = Field(default=20.0, gt=0, description="pacing of API calls")
    objects: list[str] = Field(
        default_factory=list, description="objects check() verifies access to"
    )
    page_size: int | None = Field(default=2000, ge=1)

    _login_url_is_a_url = field_validator("login_url")(check_http_url)

    @field_validator("private_key_file")
    @classmethod
    def _a_path_not_a_key(cls, value: Path | None) -> Path | None:
        if value is not None and _looks_like_key(str(value)):
            raise ValueError(
                "holds a key, not the path of a key file: write the path of the PEM file, or "
                "give the key itself as private_key: ${SALESFORCE_PRIVATE_KEY}"
            )
        if value is not None and not (path_exists(value) and value.is_file()):
            raise ValueError(
                "names no file: give the path of the connected app's PEM key file (a relative "
                "path is read from the config file's directory)"
            )
        if value is not None and not os.access(value, os.R_OK):
            raise ValueError("cannot be read by this user: make the key file readable by the "
                             "user refsync runs as")
        return value

    @model_validator(mode="after")
    def _credentials_for_flow(self) -> SalesforceSettings:
        if self.auth == "client_credentials" and self.consumer_secret is None:
            raise InvalidValueError(
                "auth client_credentials needs consumer_secret",
                "set consumer_secret: ${SALESFORCE_CONSUMER_SECRET} (the connected app's "
                "secret, from the environment or a file), or choose another auth")
        if self.auth == "jwt" and (
            not self.username or (self.private_key is None and self.private_key_file is None)
        ):
            missing = [name for name, absent in (
                ("username", not self.username),
                ("private_key or private_key_file",
                 self.private_key is None and self.private_key_file is None)) if absent]
            raise InvalidValueError(
                f"auth jwt needs {' and '.join(missing)}",
                "set username (the integration user) and private_key_file (the path of the "
                "connected app's PEM key), or private_key: ${SALESFORCE_PRIVATE_KEY}")
        return self

    @property
    def effective_login_url(self) -> str:
        """The sign-in host actually used."""
        return (self.login_url or self.base_url or "https://login.salesforce.com").rstrip("/")


class SalesforceConnector(ConnectorBase):
    """Reads and writes Salesforce objects.

    Args:
        settings: the validated ``settings:`` block.
        context: injected session hook, clock, sleep, counters and logger.
    """

    Settings: ClassVar[type[ConnectorSettings]] = SalesforceSettings

    def __init__(self, settings: SalesforceSettings, context: ConnectorContext) -> None:
        super().__init__(settings, context)
        self.sf_settings = settings
        bucket = context.bucket(
            f"salesforce:{settings.effective_login_url}:{settings.consumer_key}",
            capacity=settings.calls_per_second,
            interval_seconds=1.0,
            reserve=settings.daily_reserve,
        )
        self.session: ApiSession = context.new_session(timeout=settings.timeout, bucket=bucket)
        self.session.verify = settings.verify()
        self._client: Salesforce | None = None

    @classmethod
    def from_settings(cls, settings: Any, context: ConnectorContext) -> SalesforceConnector:
        """Build the connector from :class:`SalesforceSettings` (or a dict validated into one)."""
        if not isinstance(settings, SalesforceSettings):
            settings = SalesforceSettings.model_validate(settings)
        return cls(settings, context)

    # --- plumbing ------------------------------------------------------------------------

    def _private_key(self) -> str | None:
        """The JWT key: ``private_key``, else the contents of ``private_key_file``."""
        settings = self.sf_settings
        if settings.private_key is not None:
            return settings.private_key.get_secret_value()
        if settings.private_key_file is None:
            return None
        key = read_key_file(settings.private_key_file, system=self.system)
        register_secret(key, expires=False)
        return key

    def _sign_in(self) -> Salesforce:
        settings = self.sf_settings
        private_key = self._private_key() if settings.auth == "jwt" else None
        token: SalesforceToken = request_token(
            self.session,
            token_url=f"{settings.effective_login_url}/services/oauth2/token",
            flow=settings.auth,
            consumer_key=settings.consumer_key,
            consumer_secret=(
                settings.consumer_secret.get_secret_value() if settings.consumer_secret else None
            ),
            username=settings.username,
            private_key=private_key,
            audience=settings.effective_login_url,
            clock=self.context.clock,
            system=self.system,
        )
        self.context.logger.info("salesforce.signed_in", system=self.system)
        self._client = Salesforce(
            instance_url=settings.base_url or token.instance_url,
            session_id=token.access_token,
            session=self.session,
            version=settings.api_version,
        )
        return self._client

    def _refresh(self) -> None:
        self._client = None
        self._sign_in()

    def _call(self, operation: Callable[[Salesforce], T], name: str) -> T:
        """Run one API operation, translated through the error table, retried per policy.

        ``name`` says which operation it is in the log line of a retry.
        """

        def once() -> T:
            client = self._client or self._sign_in()
            try:
                return operation(client)
            except SalesforceError as error:
                raise self._translate(error) from error
            except requests.RequestException as error:
                raise transport_error(error, system=self.system,
                                      verify=self.session.verify) from error

        return self.retried(
            once, policy=self.sf_settings.retry_policy(), refresh_auth=self._refresh,
            operation=name,
        )

    def _describe(self, object_name: str) -> Any:
        return self._call(lambda sf: sf.restful(f"sobjects/{object_name}/describe"),
                          f"describe {object_name}")

    def _query_more(self, next_url: str, headers: dict[str, str]) -> Any:
        return self._call(
            lambda sf: sf.query_more(next_url, identifier_is_url=True, headers=headers),
            "query_more",
        )

    def _upsert_collection(self, path: str, body: dict[str, Any]) -> Any:
        # Retrying is safe: an upsert by external id applied twice changes nothing more.
        return self._call(lambda sf: sf.restful(path, method="PATCH", json=body),
                          f"upsert {path.split('/')[2]}")

    def _translate(self, error: SalesforceError) -> Exception:
        content = error.content
        head: Any = content[0] if isinstance(content, list) and content else {}
        first: dict[str, Any] = head if isinstance(head, dict) else {}
        message = str(first.get("message") or content)
        facts = ErrorFacts(
            status=error.status,
            code=first.get("errorCode"),
            message=message,
            fields=tuple(str(f) for f in first.get("fields") or ()) or fields_named_in(message),
        )
        return to_exception(DEFAULT_TABLE.classify(facts, system=self.system), system=self.system)

    # --- check / discover ----------------------------------------------------------------

    def check(self) -> CheckReport:
        """Sign in, read the daily API allowance, and verify access to the configured objects."""
        findings: list[Finding] = []
        try:
            limits = self._call(lambda sf: sf.restful("limits"), "limits")
        except ConnectorError as error:
            if got_no_answer(error):
                return CheckReport.unreachable(self.system, error, url_setting=self._url_settings())
            # Only a refused sign-in or session says the credentials are wrong; a spent
            # allowance says nothing either way.
            signed_in = isinstance(error, QuotaExhaustedError) or (
                error.status is not None and error.status not in (400, 401)
            )
            return CheckReport(
                system=self.system,
                auth_ok=signed_in,
                permissions_ok=False,
                findings=[Finding("error", error.message, "fix the cause and run check again")],
            )
        daily = (limits or {}).get("DailyApiRequests", {})
        budget = DailyBudget(
            limit=int(daily.get("Max", 0)), remaining=int(daily.get("Remaining", 0))
        )
        if budget.limit and budget.remaining < budget.limit * _LOW_BUDGET_SHARE:
            findings.append(
                Finding(
                    "warning",
                    f"only {budget.remaining} of {budget.limit} daily API calls left",
                    "sync less often, or raise the org's API allowance",
                )
            )
        permissions_ok = True
        for object_name in self.sf_settings.objects:
            try:
                describe = self._describe(object_name)
            except ConnectorError as error:
                permissions_ok = False
                findings.append(Finding("error", error.message,
                                        f"grant the integration user access to {object_name}"))
                continue
            missing = [
                right for right in ("queryable", "createable", "updateable")
                if describe is not None and describe.get(right) is False
            ]
            if missing:
                permissions_ok = False
                findings.append(
                    Finding(
                        "error",
                        f"the integration user cannot "
                        f"{', '.join(m.removesuffix('able') for m in missing)} {object_name}",
                        f"grant Read, Create and Edit on {object_name} in its permission set",
                    )
                )
        return CheckReport(
            system=self.system,
            auth_ok=True,
            permissions_ok=permissions_ok,
            api_budget=budget,
            findings=findings,
        )

    def _url_settings(self) -> str:
        """The settings naming the hosts called: where to look when none answers."""
        return "login_url and base_url" if self.sf_settings.login_url else "base_url"

    def discover(self, object_name: str) -> ObjectSchema:
        """Describe ``object_name``: fields, types, required, writable, picklist values."""
        describe = self._describe(object_name) or {}
        fields: dict[str, FieldSchema] = {}
        for spec in describe.get("fields", []):
            picklist = [
                v["value"] for v in spec.get("picklistValues") or [] if v.get("active", True)
            ]
            createable = bool(spec.get("createable"))
            fields[spec["name"]] = FieldSchema(
                name=spec["name"],
                type=str(spec.get("type", "string")).lower(),
                required=createable
                and not spec.get("nillable", True)
                and not spec.get("defaultedOnCreate", False),
                writable=createable or bool(spec.get("updateable")),
                unique=bool(spec.get("unique")),
                external_id=bool(spec.get("externalId")),
                picklist_values=picklist or None,
                length=int(spec["length"]) if spec.get("length") else None,
            )
        return ObjectSchema(name=str(describe.get("name", object_name)), fields=fields)

    # --- read ----------------------------------------------------------------------------

    def read(
        self, object_name: str, fields: Sequence[str], cursor: Cursor | None
    ) -> Iterator[Page]:
        """Yield pages of records changed since ``cursor``, deleted ones included."""
        window = self.incremental_window(cursor)
        selected = list(dict.fromkeys([*fields, "Id", "SystemModstamp", "IsDeleted"]))
        conditions = [f"SystemModstamp <= {_soql_datetime(window.upper)}"]
        if window.lower is not None:
            conditions.insert(0, f"SystemModstamp >= {_soql_datetime(window.lower)}")
        soql = (
            f"SELECT {', '.join(selected)} FROM {object_name} "
            f"WHERE {' AND '.join(conditions)} ORDER BY SystemModstamp, Id"
        )
        page_size = self.sf_settings.page_size or 2000
        headers = {"Sforce-Query-Options": f"batchSize={min(2000, max(200, page_size))}"}
        result = self._call(lambda sf: sf.query(soql, include_deleted=True, headers=headers),
                            f"query {object_name}")
        page: list[ReadRecord] = []
        while True:
            for row in result.get("records", []):
                stamp = _parse_datetime(row["SystemModstamp"])
                if not window.accept(stamp, row["Id"]):
                    continue
                data = {name: row.get(name) for name in fields} if fields else {
                    k: v for k, v in row.items() if k != "attributes"
                }
                page.append(
                    ReadRecord(
                        id=str(row["Id"]),
                        modstamp=stamp,
                        data=data,
                        deleted=bool(row.get("IsDeleted")),
                    )
                )
                if len(page) >= page_size:
                    yield Page(records=page, cursor=window.cursor)
                    page = []
            next_url = result.get("nextRecordsUrl")
            if result.get("done", True) or not next_url:
                break
            result = self._query_more(str(next_url), headers)
        if page:
            yield Page(records=page, cursor=window.cursor)

    # --- write ---------------------------------------------------------------------------

    def write(
        self, object_name: str, key_field: str, records: Sequence[Mapping[str, Any]]
    ) -> list[WriteResult]:
        """Upsert by ``key_field`` with sObject Collections, 200 records a call."""
        results: list[WriteResult] = []
        path = f"composite/sobjects/{object_name}/{key_field}"
        for start in range(0, len(records), COLLECTION_LIMIT):
            chunk = records[start : start + COLLECTION_LIMIT]
            body = {
                "allOrNone": False,
                "records": [
                    {"attributes": {"type": object_name}, **_json_ready(record)} for record in chunk
                ],
            }
            answer = self._upsert_collection(path, body)
            if not isinstance(answer, list) or len(answer) != len(chunk):
                raise FatalConnectorError(
                    f"{self.system} answered a Collections upsert with "
                    f"{len(answer) if isinstance(answer, list) else 'no'} results for "
                    f"{len(chunk)} records: cannot tell which were written",
                    system=self.system,
                    detail=str(answer)[:500],
                )
            for record, outcome in zip(chunk, answer, strict=True):
                key_value = record.get(key_field)
                key = None if key_value is None else str(key_value)
                if outcome.get("success"):
                    results.append(
                        WriteResult.success(
                            key, remote_id=outcome.get("id"), created=bool(outcome.get("created"))
                        )
                    )
                    continue
                errors = outcome.get("errors") or [{}]
                first = errors[0]
                message = str(first.get("message", ""))
                facts = ErrorFacts(
                    code=first.get("statusCode"),
                    message=message,
                    fields=tuple(str(f) for f in first.get("fields") or ())
                    or fields_named_in(message),
                )
                results.append(
                    WriteResult.failure(key, DEFAULT_TABLE.write_error(facts, system=self.system))
                )
        return results


_FIELD_IN_MESSAGE = re.compile(
    r"No such column '([^']+)'"
    r"|for field '([^']+)'"
    r"|Field name provided, ([A-Za-z0-9_.]+) is not"
)


def fields_named_in(message: str) -> tuple[str, ...]:
    """The fields a Salesforce error message names when its ``fields`` list is empty.

    ``INVALID_FIELD`` answers to a query name the field only in the text ("No such column
    'AccountType' on entity 'Account'").
    """
    found = (next(group for group in match.groups() if group)
             for match in _FIELD_IN_MESSAGE.finditer(message))
    return tuple(dict.fromkeys(found))


def _looks_like_key(text: str) -> bool:
    return "-----BEGIN" in text or "\n" in text


def read_key_file(path: Path, *, system: str) -> str:
    """Read the PEM key ``private_key_file`` names.

    Raises:
        FatalConnectorError: the file is missing or unreadable; the message names the setting
            and the fix, and never quotes what was read (nor a value that is key material).
    """
    shown = "(a value that is not a path)" if _looks_like_key(str(path)) else str(path)
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        problem = "does not exist"
    except PermissionError:
        problem = "cannot be read by the user refsync runs as"
    except IsADirectoryError:
        problem = "is a directory"
    except (OSError, UnicodeDecodeError) as error:
        problem = f"cannot be read ({type(error).__name__})"
    raise FatalConnectorError(
        f"{system}: private_key_file {shown} {problem}: set private_key_file to the path of the "
        "connected app's PEM key file, readable by the user refsync runs as",
        system=system,
        code="private_key_file",
    )


def _soql_datetime(value: dt.datetime) -> str:
    """Format a bound for SOQL: unquoted ISO-8601 in UTC, milliseconds, ``Z``.

    Truncating to the millisecond only widens the lower bound and narrows the upper one, so
    nothing is skipped (the cursor filters what the wider lower bound lets through again).
    """
    utc = value.astimezone(dt.UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def _parse_datetime(value: str) -> dt.datetime:
    """Parse Salesforce's ``2026-01-01T00:00:00.000+0000`` (or ``Z``) datetimes."""
    text = value.replace("Z", "+00:00")
    if len(text) > 5 and text[-5] in "+-" and text[-3] != ":":
        text = f"{text[:-2]}:{text[-2:]}"
    parsed = dt.datetime.fromisoformat(text)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def _json_ready(record: Mapping[str, Any]) -> dict[str, Any]:
    """Return the record as JSON values; the engine's remote-id hint is not a field."""
    ready: dict[str, Any] = {}
    for name, value in record.items():
        if name == REMOTE_ID_FIELD:
            continue
        if value is None or value.__class__ is str:  # the common cases, sent as they are
            ready[name] = value
        elif isinstance(value, dt.datetime):
            ready[name] = value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")
        elif isinstance(value, dt.date):
            ready[name] = value.isoformat()
        else:
            ready[name] = value
    return ready
