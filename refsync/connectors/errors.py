"""Remote errors classified once, as data.

A connector turns a vendor response into :class:`ErrorFacts` (status, vendor code, message,
fields, ``Retry-After``), looks the facts up in an :class:`ErrorTable`, and gets back an
:class:`Classification`: the :class:`Action` the engine takes and a message written for the
person running refsync. :func:`to_exception` maps a classification onto the exception tree of
:mod:`refsync.errors`; per-record failures inside a batch become :class:`WriteError` values
instead of exceptions, so the rest of the batch goes on.

Rules are matched in order; the first rule whose every given criterion matches wins. A
connector puts its vendor rules in front of :data:`DEFAULT_RULES` with :meth:`ErrorTable.extended`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from refsync.errors import (
    AuthExpiredError,
    ConnectorError,
    FatalConnectorError,
    QuotaExhaustedError,
    RateLimitedError,
    RecordError,
    RetryableError,
)

__all__ = [
    "DEFAULT_RULES",
    "DEFAULT_TABLE",
    "NOT_TLS",
    "NO_ANSWER_CODES",
    "TLS_CODES",
    "UNKNOWN_OBJECT",
    "Action",
    "Classification",
    "ErrorFacts",
    "ErrorRule",
    "ErrorTable",
    "WriteError",
    "got_no_answer",
    "names_unknown_object",
    "to_exception",
]

NOT_TLS = "not_tls"
"""The code of a call to an ``https://`` URL whose server did not speak TLS (a plain-HTTP
server, or the port of another service)."""

TLS_CODES = frozenset({"ca_bundle", "tls_certificate", NOT_TLS})
"""Codes of a TLS connection that could not be set up: the configured CA bundle cannot be read
(``ca_bundle``), the server's certificate failed the check (``tls_certificate``), or the server
did not speak TLS (:data:`NOT_TLS`)."""

NO_ANSWER_CODES = frozenset({"timeout", "connection_error", *TLS_CODES})
"""Codes of a call that got no answer at all: the system was never reached."""

UNKNOWN_OBJECT = "UNKNOWN_OBJECT"
"""The code a connector gives an object (type) its system says does not exist, when the
system's own answer does not say so with a 404."""

_UNKNOWN_OBJECT_CODES = frozenset({"NOT_FOUND", "INVALID_TYPE", UNKNOWN_OBJECT})


class Action(StrEnum):
    """What the engine does about an error."""

    RETRY = "retry"
    RATE_LIMITED = "rate_limited"
    REFRESH_AUTH = "refresh_auth"
    QUOTA_EXHAUSTED = "quota_exhausted"
    RECORD_ERROR = "record_error"
    FATAL = "fatal"


@dataclass(frozen=True)
class ErrorFacts:
    """What a remote system said when a call or a record failed.

    Attributes:
        status: the HTTP status (``None`` for timeouts and connection errors).
        code: the vendor error code (``INVALID_SESSION_ID``, ``VALIDATION_ERROR``, a HubSpot
            ``policyName``), or ``timeout`` / ``connection_error`` for transport failures.
        message: the vendor's own message (internal detail; the user sees the rule's template).
        fields: remote fields the vendor named.
        retry_after: seconds the vendor asked us to wait, when it said.
    """

    status: int | None = None
    code: str | None = None
    message: str = ""
    fields: tuple[str, ...] = ()
    retry_after: float | None = None


@dataclass(frozen=True)
class ErrorRule:
    """One row of the table: criteria → action + user-facing message template.

    Criteria left as ``None`` match anything. ``status_range`` is inclusive. The template may
    use ``{system}``, ``{status}``, ``{code}``, ``{message}`` and ``{fields}``.
    """

    action: Action
    template: str
    status: int | None = None
    status_range: tuple[int, int] | None = None
    code: str | None = None
    message_contains: str | None = None

    def matches(self, facts: ErrorFacts) -> bool:
        """Return True when every criterion this rule sets matches ``facts``."""
        if self.status is not None and facts.status != self.status:
            return False
        if self.status_range is not None and (
            facts.status is None or not self.status_range[0] <= facts.status <= self.status_range[1]
        ):
            return False
        if self.code is not None and (facts.code or "").upper() != self.code.upper():
            return False
        return self.message_contains is None or self.message_contains.lower() in (
            facts.message.lower()
        )


@dataclass(frozen=True)
class Classification:
    """The outcome of a table lookup: the action and the message for the user."""

    action: Action
    message: str
    facts: ErrorFacts


@dataclass(frozen=True)
class WriteError:
    """A classified failure of one record inside a batch write.

    Attributes:
        code: the vendor's code (``REQUIRED_FIELD_MISSING``, ``INVALID_OPTION``...).
        message: what went wrong and what to do, for the person reading the quarantine.
        fields: remote fields concerned.
        action: normally ``record_error`` (quarantine the record); ``retry`` when the record
            failed for a transient reason and may be sent again.
        detail: the vendor's own message.
    """

    code: str
    message: str
    fields: tuple[str, ...] = ()
    action: Action = Action.RECORD_ERROR
    detail: str = ""


# fmt: off
DEFAULT_RULES: tuple[ErrorRule, ...] = (
    ErrorRule(Action.RETRY, "{system} did not answer in time", code="timeout"),
    ErrorRule(Action.RETRY, "could not connect to {system}", code="connection_error"),
    ErrorRule(Action.QUOTA_EXHAUSTED,
              "{system} daily API allowance is spent: the run stops as partial and resumes "
              "when the allowance recovers (raise the limit or lower the sync frequency)",
              code="REQUEST_LIMIT_EXCEEDED", message_contains="TotalRequests"),
    ErrorRule(Action.RATE_LIMITED, "{system} asked refsync to slow down",
              code="REQUEST_LIMIT_EXCEEDED"),
    ErrorRule(Action.QUOTA_EXHAUSTED,
              "{system} daily API allowance is spent: the run stops as partial and resumes "
              "when the allowance recovers", status=429, code="DAILY"),
    ErrorRule(Action.RATE_LIMITED, "{system} asked refsync to slow down", status=429),
    ErrorRule(Action.REFRESH_AUTH, "{system} session expired",
              code="INVALID_SESSION_ID"),
    ErrorRule(Action.REFRESH_AUTH, "{system} rejected the credentials",
              status=401),
    ErrorRule(Action.FATAL,
              "{system} refused field(s) {fields}: check the field names in the mapping and in "
              "rules.customers_from / rules.open_opportunities_from, and that the integration "
              "user can see these fields (field-level security)", code="INVALID_FIELD"),
    ErrorRule(Action.FATAL,
              "{system} rejected the query refsync built ({message}): check the object and "
              "field names in the mapping", code="MALFORMED_QUERY"),
    ErrorRule(Action.FATAL,
              "{system} object or endpoint not found ({message}): check the object name and "
              "the base_url setting", code="NOT_FOUND"),
    ErrorRule(Action.FATAL,
              "{system} refused the request ({message}): grant the integration user the "
              "permission it needs, then run again", status=403),
    ErrorRule(Action.FATAL,
              "{system} endpoint not found ({message}): check the object name and the "
              "base_url setting", status=404),
    ErrorRule(Action.RETRY, "{system} timed out on its side", status=408),
    ErrorRule(Action.RETRY, "{system} had a temporary failure ({status})",
              status_range=(500, 599)),
    # Record-level validation: quarantine the record, keep going with the batch.
    ErrorRule(Action.RECORD_ERROR,
              "value of {fields} is not one of the allowed picklist values ({message}): add "
              "it to the value map of the mapping or to the picklist in {system}",
              code="INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST"),
    ErrorRule(Action.RECORD_ERROR,
              "value of {fields} is not one of the allowed options ({message}): add it to the "
              "value map of the mapping or to the property options in {system}",
              code="INVALID_OPTION"),
    ErrorRule(Action.RECORD_ERROR,
              "required field(s) {fields} missing: map a value for it or set a default",
              code="REQUIRED_FIELD_MISSING"),
    ErrorRule(Action.RECORD_ERROR,
              "value of {fields} is longer than {system} allows: shorten it with a "
              "truncate transform in the mapping", code="STRING_TOO_LONG"),
    ErrorRule(Action.RECORD_ERROR,
              "value of {fields} cannot be stored by {system} ({message}): change the "
              "mapping to write text, a number or true/false there", code="INVALID_VALUE"),
    ErrorRule(Action.RECORD_ERROR,
              "{system} duplicate rules blocked the record ({message}): merge the duplicates "
              "or relax the duplicate rule for the integration user", code="DUPLICATES_DETECTED"),
    ErrorRule(Action.RECORD_ERROR, "{system} validation rule rejected the record: {message}",
              code="FIELD_CUSTOM_VALIDATION_EXCEPTION"),
    ErrorRule(Action.RECORD_ERROR, "{system} rejected the record: {message}",
              code="VALIDATION_ERROR"),
    ErrorRule(Action.RECORD_ERROR, "{system} rejected the record as a conflict: {message}",
              status=409),
    ErrorRule(Action.RECORD_ERROR, "{system} rejected the record: {message}", status=422),
    ErrorRule(Action.FATAL,
              "{system} rejected a request refsync sent ({status} {code}: {message}): check the "
              "mapping and settings", status_range=(400, 499)),
)
# fmt: on


@dataclass(frozen=True)
class ErrorTable:
    """An ordered list of :class:`ErrorRule`; the first match decides.

    Anything no rule matches is fatal: an unknown failure must be looked at, not retried forever.
    """

    rules: Sequence[ErrorRule] = field(default_factory=lambda: DEFAULT_RULES)

    def extended(self, rules: Iterable[ErrorRule]) -> ErrorTable:
        """Return a table trying ``rules`` first, then this table's rules."""
        return ErrorTable((*rules, *self.rules))

    def classify(self, facts: ErrorFacts, *, system: str) -> Classification:
        """Look ``facts`` up and render the user-facing message."""
        for rule in self.rules:
            if rule.matches(facts):
                return Classification(rule.action, _render(rule.template, facts, system), facts)
        return Classification(Action.FATAL, _unexpected(facts, system), facts)

    def write_error(self, facts: ErrorFacts, *, system: str) -> WriteError:
        """Classify a per-record failure inside a batch write."""
        found = self.classify(facts, system=system)
        action = found.action
        if action not in (Action.RECORD_ERROR, Action.RETRY, Action.RATE_LIMITED):
            # A record cannot refresh auth or spend a quota on its own: anything else is
            # about this record and quarantines it.
            action = Action.RECORD_ERROR
        return WriteError(
            code=facts.code or str(facts.status or "error"),
            message=found.message,
            fields=facts.fields,
            action=action,
            detail=facts.message,
        )


DEFAULT_TABLE = ErrorTable()


def _unexpected(facts: ErrorFacts, system: str) -> str:
    """The message of a failure no rule knows: what the vendor said, without empty parts."""
    said = " ".join(str(part) for part in (facts.status, facts.code) if part is not None)
    detail = ": ".join(part for part in (said, facts.message) if part)
    return f"{system} failed unexpectedly ({detail})" if detail else \
        f"{system} failed unexpectedly"


def _render(template: str, facts: ErrorFacts, system: str) -> str:
    return template.format(
        system=system,
        status=facts.status if facts.status is not None else "",
        code=facts.code or "",
        message=facts.message,
        fields=", ".join(facts.fields) if facts.fields else "(unnamed field)",
    )


def got_no_answer(error: ConnectorError) -> bool:
    """True when the call never reached the system: a refused or unresolvable connection, a
    timeout, or a TLS connection that could not be set up (see :data:`NO_ANSWER_CODES`)."""
    return error.status is None and error.code in NO_ANSWER_CODES


def names_unknown_object(error: ConnectorError) -> bool:
    """True when the system answered that the object (type) asked for does not exist."""
    return error.status == 404 or (error.code or "").upper() in _UNKNOWN_OBJECT_CODES


def to_exception(found: Classification, *, system: str) -> ConnectorError | RecordError:
    """Return the exception of :mod:`refsync.errors` matching a classification."""
    facts = found.facts
    common: dict[str, object] = {
        "system": system,
        "status": facts.status,
        "code": facts.code,
        "detail": facts.message,
    }
    if found.action is Action.RECORD_ERROR:
        return RecordError(
            found.message,
            code=facts.code or str(facts.status or "record_error"),
            field=facts.fields[0] if facts.fields else None,
            detail=facts.message,
        )
    if found.action is Action.RATE_LIMITED:
        return RateLimitedError(found.message, retry_after=facts.retry_after, **common)
    exception_type: type[ConnectorError] = {
        Action.RETRY: RetryableError,
        Action.REFRESH_AUTH: AuthExpiredError,
        Action.QUOTA_EXHAUSTED: QuotaExhaustedError,
        Action.FATAL: FatalConnectorError,
    }[found.action]
    return exception_type(
        found.message,
        system=system,
        status=facts.status,
        code=facts.code,
        detail=facts.message,
    )
