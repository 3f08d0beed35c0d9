"""The refsync exception tree.

Every error refsync raises on purpose derives from :class:`RefsyncError`. Each carries a
user-facing ``message`` (what went wrong and what to do about it, safe to print) kept apart
from ``detail`` (internal context for logs and debugging)::

    RefsyncError
    ├── ConfigError            invalid configuration or mapping; carries every Problem found
    ├── StateError             the state store cannot be used
    │   ├── StoreLockedError   another daemon already owns this SQLite database
    │   └── LeaseLostError     a lease was taken over; this process must stop writing
    ├── RecordError            one record cannot be mapped or written; it is quarantined
    └── ConnectorError         talking to a remote system failed; ``action`` says what to do
        ├── RetryableError     5xx, timeouts: retry with backoff
        ├── RateLimitedError   429 / REQUEST_LIMIT_EXCEEDED: wait (``retry_after``), then retry
        ├── AuthExpiredError   401 / INVALID_SESSION_ID: sign in again, then retry (each time)
        ├── QuotaExhaustedError daily limit: checkpoint and stop the run as partial
        └── FatalConnectorError permission or configuration problem: stop and say what to fix

Retryability is carried by the type: callers test ``isinstance(err, RetryableError)``
rather than parsing messages.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

__all__ = [
    "AuthExpiredError",
    "ConfigError",
    "ConnectorError",
    "FatalConnectorError",
    "LeaseLostError",
    "Problem",
    "QuotaExhaustedError",
    "RateLimitedError",
    "RecordError",
    "RefsyncError",
    "RetryableError",
    "StateError",
    "StoreLockedError",
    "TickAlreadyRunError",
]


class RefsyncError(Exception):
    """Root of every error refsync raises deliberately.

    Args:
        message: what went wrong and what to do, written for the person running refsync.
        detail: internal context (ids, raw responses) for logs; never shown as the headline.
    """

    def __init__(self, message: str, *, detail: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a configuration or mapping file, with where it is and how to fix it."""

    file: str
    line: int
    column: int
    message: str
    fix: str = ""

    def __str__(self) -> str:
        text = f"{self.file}:{self.line}:{self.column}: {self.message}"
        return f"{text} — {self.fix}" if self.fix else text

    def as_dict(self) -> dict[str, object]:
        """Return the problem as a JSON-ready dict."""
        return {
            "file": self.file,
            "line": self.line,
            "column": self.column,
            "message": self.message,
            "fix": self.fix,
        }


class ConfigError(RefsyncError):
    """The configuration (or a file it names) is invalid; ``problems`` lists every issue found."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = list(problems)
        count = len(self.problems)
        summary = f"{count} problem{'s' if count != 1 else ''} in the configuration"
        super().__init__(summary, detail="\n".join(str(p) for p in self.problems))


class StateError(RefsyncError):
    """The state store cannot be opened, migrated or written."""


class StoreLockedError(StateError):
    """Another refsync daemon already holds this SQLite database."""


class LeaseLostError(StateError):
    """This process's lease was taken over; it must not write anything more."""


class TickAlreadyRunError(StateError):
    """Another daemon already ran this schedule tick of the job."""


class RecordError(RefsyncError):
    """One record cannot be mapped or written. It is quarantined; the batch goes on.

    Args:
        code: a stable machine-readable code (``unmapped_value``, ``REQUIRED_FIELD_MISSING``).
        field: the canonical or remote field concerned, when known.
    """

    def __init__(
        self, message: str, *, code: str, field: str | None = None, detail: str | None = None
    ) -> None:
        super().__init__(message, detail=detail)
        self.code = code
        self.field = field


class ConnectorError(RefsyncError):
    """A call to a remote system failed. ``action`` names what the engine should do."""

    action = "fatal"

    def __init__(
        self,
        message: str,
        *,
        system: str = "",
        status: int | None = None,
        code: str | None = None,
        detail: str | None = None,
    ) -> None:
        super().__init__(message, detail=detail)
        self.system = system
        self.status = status
        self.code = code


class RetryableError(ConnectorError):
    """A transient failure (5xx, timeout): retry with backoff."""

    action = "retry"


class RateLimitedError(RetryableError):
    """The system asked us to slow down; ``retry_after`` is in seconds when it said how long."""

    action = "rate_limited"

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: object) -> None:
        super().__init__(message, **kwargs)  # type: ignore[arg-type]
        self.retry_after = retry_after


class AuthExpiredError(RetryableError):
    """The session or token expired: sign in again and retry, after each expiry (within the
    retry policy's attempts)."""

    action = "refresh_auth"


class QuotaExhaustedError(ConnectorError):
    """The daily API allowance is spent: checkpoint and stop the run as partial."""

    action = "quota_exhausted"


class FatalConnectorError(ConnectorError):
    """A permission or configuration problem that retrying cannot fix."""

    action = "fatal"
