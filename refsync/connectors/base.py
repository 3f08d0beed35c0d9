"""What the engine consumes from a connector, and the values that cross that boundary.

The engine owns the loop; a connector only talks to its API through four calls::

    check()                                   -> CheckReport
    discover(object)                          -> ObjectSchema
    read(object, fields, cursor)              -> Iterator[Page]
    write(object, key_field, records)         -> list[WriteResult]

:class:`Connector` is a :class:`typing.Protocol`: test fakes need no inheritance.
:class:`ConnectorClass` is what the registry hands out: a class with a pydantic ``Settings``
model and a ``from_settings`` constructor. :class:`ConnectorContext` carries every injected
dependency (HTTP session factory, clock, sleep, call counter, rate limiters, logger), so a
connector never reaches for the wall clock or a global session.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol, TypeVar, runtime_checkable
from urllib.parse import urlsplit

import structlog
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from refsync.connectors.cursor import Cursor, CursorPolicy, IncrementalWindow
from refsync.connectors.errors import NOT_TLS, TLS_CODES, WriteError
from refsync.connectors.http import (
    ApiSession,
    EventLogger,
    RetryPolicy,
    Timeout,
    call_with_retry,
)
from refsync.connectors.schema import ObjectSchema
from refsync.connectors.usage import ApiCallCounter, DailyBudget, RateLimiters, TokenBucket
from refsync.errors import ConnectorError
from refsync.validation import InvalidValueError, path_exists

__all__ = [
    "REMOTE_ID_FIELD",
    "CheckReport",
    "Connector",
    "ConnectorBase",
    "ConnectorClass",
    "ConnectorContext",
    "ConnectorSettings",
    "EventLogger",
    "Finding",
    "HttpConnectorSettings",
    "Page",
    "ReadRecord",
    "WriteResult",
    "check_http_url",
    "utc_now",
]

T = TypeVar("T")

REMOTE_ID_FIELD = "_remote_id"
"""Set by the engine in a record passed to ``write()`` when it already knows the record's id in
that system. Connectors with upsert by external id (Salesforce, HubSpot) ignore it; those
without (PRMs, files) update that record instead of creating one. Never sent as a field."""


def utc_now() -> datetime:
    """Return the current time as an aware UTC datetime (the default injected clock)."""
    return datetime.now(UTC)


@dataclass(frozen=True)
class ReadRecord:
    """One record read from a remote system, in the remote system's field names.

    Attributes:
        id: the remote id (Salesforce Id, HubSpot object id, a file's id column).
        modstamp: when the remote system last changed it (``None`` when the source keeps no
            change time, such as an append-only file).
        data: field name → value, remote names, as read.
        deleted: True when the remote system reports the record deleted or archived.
    """

    id: str
    modstamp: datetime | None
    data: dict[str, Any]
    deleted: bool = False


@dataclass(frozen=True)
class Page:
    """A batch of records and the cursor to persist once they are committed."""

    records: list[ReadRecord]
    cursor: Cursor


@dataclass(frozen=True)
class WriteResult:
    """The outcome of writing one record; results come back in input order.

    Attributes:
        key: the record's value of the key field (the refsync id), to match results to inputs.
        ok: True when the remote system accepted the record.
        created: True when the write created the record, False when it updated one.
        remote_id: the remote id of the written record.
        error: the classified failure when ``ok`` is False.
    """

    key: str | None
    ok: bool
    created: bool = False
    remote_id: str | None = None
    error: WriteError | None = None

    @classmethod
    def success(cls, key: str | None, *, remote_id: str | None, created: bool) -> WriteResult:
        """Build the result of an accepted record."""
        return cls(key=key, ok=True, created=created, remote_id=remote_id)

    @classmethod
    def failure(cls, key: str | None, error: WriteError) -> WriteResult:
        """Build the result of a refused record."""
        return cls(key=key, ok=False, error=error)


@dataclass(frozen=True)
class Finding:
    """One thing ``check()`` found, with what to do about it."""

    severity: Literal["error", "warning", "info"]
    message: str
    fix: str = ""


@dataclass(frozen=True)
class CheckReport:
    """Whether a connector can work: credentials, permissions, API budget.

    Attributes:
        system: the configured system name.
        auth_ok: the credentials were accepted.
        permissions_ok: the integration user can read and write what refsync needs.
        api_budget: the daily allowance the remote system reported, when it did.
        findings: problems and notes, each with a fix.
        reachable: False when the system could not be reached at all (refused or unresolvable
            connection, timeout, TLS failure): nothing else about it could be checked.
    """

    system: str
    auth_ok: bool
    permissions_ok: bool
    api_budget: DailyBudget | None = None
    findings: list[Finding] = field(default_factory=list)
    reachable: bool = True

    @property
    def ok(self) -> bool:
        """True when the connector can be used (no ``error`` finding)."""
        return (
            self.reachable
            and self.auth_ok
            and self.permissions_ok
            and all(f.severity != "error" for f in self.findings)
        )

    @classmethod
    def unreachable(cls, system: str, error: ConnectorError, *, url_setting: str = "base_url"
                    ) -> CheckReport:
        """The report of a check whose system could not be reached.

        Its one finding says what failed and gives the fix of a connection problem: the URL's
        scheme and port for a server that did not speak TLS, the ``ca_bundle`` setting for
        another TLS failure, else the URL setting and the network path.

        Args:
            system: the configured system name.
            error: the failure, for which
                :func:`~refsync.connectors.errors.got_no_answer` holds.
            url_setting: the setting naming the host that was called.
        """
        if error.code == NOT_TLS:
            fix = f"check the scheme (https:// or http://) and the port of {url_setting}"
        elif error.code in TLS_CODES:
            fix = "check the ca_bundle setting"
        else:
            fix = (f"check {url_setting} (host and port) and that the system is up and "
                   "reachable from this machine (network, firewall, proxy)")
        return cls(system=system, auth_ok=False, permissions_ok=False, reachable=False,
                   findings=[Finding("error", error.message, fix)])


class ConnectorSettings(BaseModel):
    """Settings every connector accepts in its system's ``settings:`` block.

    Connector classes subclass this (``extra="forbid"`` so a misspelt key is reported with
    its position instead of ignored).
    """

    model_config = ConfigDict(extra="forbid")

    page_size: int | None = Field(default=None, ge=1, description="records per page read")
    settle_lag_seconds: float = Field(
        default=5.0, ge=0, description="changes younger than this are left for the next run"
    )
    lookback_seconds: float = Field(
        default=0.0, ge=0, description="re-read this far behind the cursor (late indexing)"
    )

    @field_validator("*", mode="after")
    @classmethod
    def _no_empty_secret(cls, value: Any) -> Any:
        if isinstance(value, SecretStr) and not value.get_secret_value().strip():
            raise InvalidValueError(
                "is empty, and no system accepts an empty credential",
                "give it a value: set the environment variable it names (a ${VAR:-} "
                "reference lets an unset or empty variable through; ${VAR} refuses one), or put "
                "the credential in the file its file: reference reads")
        return value

    def cursor_policy(self) -> CursorPolicy:
        """Return the incremental-read policy these settings describe."""
        return CursorPolicy(
            settle_lag=timedelta(seconds=self.settle_lag_seconds),
            lookback=timedelta(seconds=self.lookback_seconds),
        )


_ENV_REFERENCE_WITHOUT_BRACES = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)")


def check_http_url(value: str | None) -> str | None:
    """Return ``value`` if it is an ``http``/``https`` URL with a host (``None`` passes).

    Raises:
        ValueError: with the fix: a ``$NAME`` written without braces (which refsync does not
            read from the environment) is told to be written ``${NAME}``.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        raise ValueError(
            "is empty: give the URL (https://host), or remove the setting to use the "
            "default host"
        )
    parts = urlsplit(text)
    if parts.scheme in ("http", "https") and parts.hostname and "$" not in parts.netloc:
        return text
    if _ENV_REFERENCE_WITHOUT_BRACES.search(text):
        braced = _ENV_REFERENCE_WITHOUT_BRACES.sub(r"${\1}", text)
        raise ValueError(
            f"is not a URL: to read it from the environment, write {braced} (with braces)"
        )
    raise InvalidValueError(
        "must be a URL starting with https:// or http:// and naming a host",
        "write it like https://api.example.com, or remove the setting to use the default host"
    )


class HttpConnectorSettings(ConnectorSettings):
    """Settings shared by connectors that speak HTTP."""

    base_url: str | None = Field(
        default=None, description="override the API host (sandbox, proxy, regional host)"
    )
    ca_bundle: Path | None = Field(
        default=None,
        description="CA bundle to verify TLS with (a PEM file, or a directory of certificates)",
    )
    connect_timeout: float = Field(default=10.0, gt=0)
    read_timeout: float = Field(default=60.0, gt=0)
    max_attempts: int = Field(default=5, ge=1, description="attempts per call, retries included")
    backoff_seconds: float = Field(default=1.0, ge=0, description="first retry wait; doubles")
    daily_reserve: int = Field(
        default=0, ge=0, description="daily API calls left unused for other integrations"
    )

    _base_url_is_a_url = field_validator("base_url")(check_http_url)

    @field_validator("ca_bundle", mode="before")
    @classmethod
    def _ca_bundle_is_given(cls, value: Any) -> Any:
        if isinstance(value, str) and not value.strip():
            raise ValueError(
                "is empty: give the path of the CA bundle (PEM) to trust, or remove the "
                "setting to use the system's trust store"
            )
        if isinstance(value, str) and "-----BEGIN" in value:
            raise InvalidValueError(
                "holds a certificate, not the path of a CA bundle file",
                "save the certificate to a file and write that file's path; a relative path "
                "is read from the config file's directory")
        return value

    @field_validator("ca_bundle")
    @classmethod
    def _ca_bundle_is_readable(cls, value: Path | None) -> Path | None:
        if value is None:
            return None
        if not path_exists(value):
            raise ValueError(
                "names no file: give the path of the CA bundle (PEM) to trust; a relative path "
                "is read from the config file's directory"
            )
        if not os.access(value, os.R_OK):
            raise ValueError(
                "cannot be read by this user: make the file readable by the user refsync "
                "runs as"
            )
        return value

    def verify(self) -> str | bool:
        """What to verify TLS certificates with: the CA bundle, else the system's trust store."""
        return str(self.ca_bundle) if self.ca_bundle is not None else True

    @property
    def timeout(self) -> Timeout:
        """``(connect, read)`` timeout for every call."""
        return (self.connect_timeout, self.read_timeout)

    def retry_policy(self) -> RetryPolicy:
        """Return the retry policy these settings describe."""
        return RetryPolicy(max_attempts=self.max_attempts, base_delay=self.backoff_seconds)


CONNECTOR_LOGGER = "refsync.connectors"
_SYSTEM_LOGGER: EventLogger = structlog.get_logger(CONNECTOR_LOGGER)
"""Stands for "the connectors' logger bound to the context's system" until it is built."""


@dataclass
class ConnectorContext:
    """Dependencies injected into a connector.

    Attributes:
        system: the configured system name (``crm``, ``prm``...), used in messages and metrics.
        clock: current time, aware UTC.
        sleep: waits a number of seconds (tests pass a recorder).
        api_calls: the shared API call counter.
        rate_limiters: token buckets per credential, shared by connectors using one credential.
        logger: structured logger; by default the ``refsync.connectors`` logger with
            ``system`` bound (and whatever :func:`refsync.logging.log_context` binds, such as
            the run id).
        configure_session: called on every new HTTP session (mount adapters, set proxies).
        interactive: a person waits on the calls (``refsync check --online``): a call that
            gets no answer (refused or unresolvable connection, timeout) is not retried, so a
            system that cannot be reached is reported at once (see :meth:`retry_policy`).
    """

    system: str
    clock: Callable[[], datetime] = utc_now
    sleep: Callable[[float], None] = time.sleep
    api_calls: ApiCallCounter = field(default_factory=ApiCallCounter)
    rate_limiters: RateLimiters | None = None
    logger: EventLogger = field(default=_SYSTEM_LOGGER)
    configure_session: Callable[[ApiSession], None] | None = None
    interactive: bool = False

    def __post_init__(self) -> None:
        if self.rate_limiters is None:
            self.rate_limiters = RateLimiters(self.clock, self.sleep)
        if self.logger is _SYSTEM_LOGGER:
            # a lazy proxy: the logging configuration in force when a line is written applies
            self.logger = structlog.get_logger(CONNECTOR_LOGGER, system=self.system)

    def new_session(self, *, timeout: Timeout, bucket: TokenBucket | None = None) -> ApiSession:
        """Return an HTTP session with timeouts, call counting and pacing for this system."""
        session = ApiSession(
            system=self.system, timeout=timeout, counter=self.api_calls, bucket=bucket
        )
        if self.configure_session is not None:
            self.configure_session(session)
        return session

    def retry_policy(self, configured: RetryPolicy) -> RetryPolicy:
        """The retry policy of this context's calls: the ``configured`` one, giving up at once
        on a call that got no answer when the context is :attr:`interactive`."""
        return configured.without_no_answer_retries() if self.interactive else configured

    def bucket(
        self, credential_key: str, *, capacity: float, interval_seconds: float, reserve: int = 0
    ) -> TokenBucket:
        """Return the token bucket shared by every connector using ``credential_key``."""
        assert self.rate_limiters is not None  # set in __post_init__
        return self.rate_limiters.for_credential(
            credential_key,
            capacity=capacity,
            interval_seconds=interval_seconds,
            daily_reserve=reserve,
            system=self.system,
        )


@runtime_checkable
class Connector(Protocol):
    """The four calls the engine makes on a connector."""

    def check(self) -> CheckReport:
        """Verify credentials, permissions and the API budget left."""
        ...

    def discover(self, object_name: str) -> ObjectSchema:
        """Describe an object: fields, types, required, writable, unique, picklist values."""
        ...

    def read(
        self, object_name: str, fields: Sequence[str], cursor: Cursor | None
    ) -> Iterator[Page]:
        """Yield pages of records changed since ``cursor`` (all records when ``None``).

        Records come in ascending ``(modstamp, id)`` order; each page's cursor may be
        persisted once the page is committed.
        """
        ...

    def write(
        self, object_name: str, key_field: str, records: Sequence[Mapping[str, Any]]
    ) -> list[WriteResult]:
        """Upsert ``records`` by ``key_field``; one result per record, in input order."""
        ...


class ConnectorClass(Protocol):
    """A connector class as registered under the ``refsync.connectors`` entry-point group."""

    Settings: ClassVar[type[ConnectorSettings]]

    def from_settings(self, settings: Any, context: ConnectorContext) -> Connector:
        """Build a connector from validated settings and injected dependencies."""
        ...


class ConnectorBase:
    """Optional base class with behaviour shared by connectors (not required by the engine).

    Provides the settings, context, the incremental window of a read and retried calls.
    """

    Settings: ClassVar[type[ConnectorSettings]] = ConnectorSettings

    def __init__(self, settings: ConnectorSettings, context: ConnectorContext) -> None:
        self.settings = settings
        self.context = context

    @property
    def system(self) -> str:
        """The configured system name."""
        return self.context.system

    _settles: bool = True

    def incremental_window(self, cursor: Cursor | None) -> IncrementalWindow:
        """Open the read window of one run, capped at now minus the settle lag (no lag inside
        :meth:`read_current`)."""
        policy = self.settings.cursor_policy()
        if not self._settles:
            policy = replace(policy, settle_lag=timedelta(0))
        return IncrementalWindow(cursor, policy, self.context.clock())

    def read_current(self, object_name: str, fields: Sequence[str]) -> Iterator[Page]:
        """Every record of ``object_name`` as it is now, changes of the last moments included.

        For lookups that keep no cursor (existing customers, open deals): the settle lag only
        protects a cursor's high-water mark from changes indexed late, and a lookup that
        ignored the last seconds would miss an account made a customer just now.
        """
        self._settles = False
        try:
            yield from self.read(object_name, fields, None)
        finally:
            self._settles = True

    if TYPE_CHECKING:  # every connector defines it (:class:`Connector`); read_current uses it

        def read(
            self, object_name: str, fields: Sequence[str], cursor: Cursor | None
        ) -> Iterator[Page]: ...

    def retried(
        self,
        call: Callable[[], T],
        *,
        policy: RetryPolicy | None = None,
        refresh_auth: Callable[[], None] | None = None,
        operation: str = "call",
    ) -> T:
        """Run ``call`` under the retry policy, sleeping through the injected sleep.

        ``policy`` (the default one when not given) is adjusted by the context (see
        :meth:`ConnectorContext.retry_policy`). Each retry is logged with ``operation`` (a
        short name of the call).
        """
        return call_with_retry(
            call,
            policy=self.context.retry_policy(policy or RetryPolicy()),
            sleep=self.context.sleep,
            refresh_auth=refresh_auth,
            system=self.system,
            operation=operation,
            logger=self.context.logger,
        )
