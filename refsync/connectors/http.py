"""Shared HTTP plumbing for connectors: timeouts, call counting, pacing, classification, retries.

* :class:`ApiSession` is a ``requests.Session`` that puts a timeout on every call (client
  libraries such as simple-salesforce set none), counts each call by outcome, paces calls
  through the credential's :class:`~refsync.connectors.usage.TokenBucket` and feeds the
  bucket the usage headers of every response.
* :func:`facts_from_response` / :func:`raise_for_response` turn a failed response into the
  exception the :mod:`~refsync.connectors.errors` table says; :func:`transport_error` does the
  same for a call that got no answer, and makes a TLS connection that cannot be set up fatal
  (:func:`tls_failure`: a certificate that fails the check, a server that does not speak
  TLS): retrying cannot fix it.
* :func:`call_with_retry` retries what the type says is retryable (tenacity), honours
  ``Retry-After``, refreshes credentials after each expired session, logs every retry with
  its wait, and sleeps through an injected ``sleep`` so tests assert the waits instead of
  waiting. A :class:`RetryPolicy` may give up at once on a call that got no answer (for an
  interactive check).
* :class:`HttpClient` bundles all of it for connectors speaking plain ``requests``.
"""

from __future__ import annotations

import email.utils
import json
import os
import ssl
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar
from urllib.parse import urlsplit

import requests
import structlog
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt

from refsync.connectors.errors import (
    DEFAULT_TABLE,
    NOT_TLS,
    ErrorFacts,
    ErrorTable,
    got_no_answer,
    to_exception,
)
from refsync.connectors.usage import ApiCallCounter, TokenBucket
from refsync.errors import (
    AuthExpiredError,
    ConnectorError,
    FatalConnectorError,
    RateLimitedError,
    RecordError,
    RetryableError,
)

__all__ = [
    "ApiSession",
    "EventLogger",
    "FactsExtractor",
    "HttpClient",
    "RetryPolicy",
    "call_with_retry",
    "certificate_failure",
    "facts_from_exception",
    "facts_from_response",
    "log_retry",
    "not_a_tls_server",
    "parse_retry_after",
    "plaintext_failure",
    "raise_for_response",
    "tls_failure",
    "transport_error",
    "untrusted_certificate",
]

T = TypeVar("T")

Timeout = float | tuple[float, float]


class EventLogger(Protocol):
    """The logging calls connectors make (structlog bound loggers satisfy it)."""

    def debug(self, event: str, **kw: Any) -> Any:
        """Log a debug event."""

    def info(self, event: str, **kw: Any) -> Any:
        """Log an informational event."""

    def warning(self, event: str, **kw: Any) -> Any:
        """Log a warning event."""


def _outcome(status: int) -> str:
    if status < 400:
        return "ok"
    if status == 429:
        return "rate_limited"
    if status < 500:
        return "client_error"
    return "server_error"


class ApiSession(requests.Session):
    """A session with a default timeout, per-system call counting and rate pacing.

    A CA bundle set on ``verify`` is honoured even when ``REQUESTS_CA_BUNDLE`` is set; one
    that cannot be read raises :class:`FatalConnectorError` naming the ``ca_bundle`` setting.

    Args:
        system: the configured system name, used as the counter label.
        timeout: ``(connect, read)`` seconds applied when a call gives no timeout.
        counter: where calls are counted (shared with the metrics exporter).
        bucket: the credential's token bucket; ``None`` disables pacing.
    """

    def __init__(
        self,
        *,
        system: str,
        timeout: Timeout = (10.0, 60.0),
        counter: ApiCallCounter | None = None,
        bucket: TokenBucket | None = None,
    ) -> None:
        super().__init__()
        self.system = system
        self.default_timeout = timeout
        self.counter = counter if counter is not None else ApiCallCounter()
        self.bucket = bucket

    def request(
        self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any
    ) -> requests.Response:
        """Send one request with a timeout, after taking a token; count its outcome."""
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = self.default_timeout
        if kwargs.get("verify") is None and self.verify is not True:
            # requests lets REQUESTS_CA_BUNDLE override a session's own CA bundle; the bundle
            # configured for this system must win.
            kwargs["verify"] = self.verify
        if self.bucket is not None:
            self.bucket.acquire()
        try:
            response = super().request(method, url, *args, **kwargs)
        except requests.Timeout:
            self.counter.record(self.system, "timeout")
            raise
        except requests.ConnectionError:
            self.counter.record(self.system, "connection_error")
            raise
        except requests.RequestException:
            raise
        except OSError as error:  # requests reports an unreadable CA bundle this way
            raise _tls_bundle_error(self.system, kwargs.get("verify"), error) from error
        self.counter.record(self.system, _outcome(response.status_code))
        if self.bucket is not None:
            self.bucket.update_from_headers(response.headers)
        return response


def _tls_bundle_error(system: str, verify: Any, error: OSError) -> FatalConnectorError:
    bundle = verify if isinstance(verify, str) else "the CA bundle"
    return FatalConnectorError(
        f"{system or 'the system'}: cannot use the TLS CA bundle {bundle} "
        f"({error.strerror or type(error).__name__}): fix the ca_bundle setting (the path of "
        "a readable PEM file) or remove it to use the system's trust store",
        system=system,
        code="ca_bundle",
    )


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Return the seconds a ``Retry-After`` header asks for (delta-seconds or an HTTP date).

    Returns ``None`` for a missing or unreadable header, and never a negative number.
    """
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())


def facts_from_response(response: requests.Response, now: datetime) -> ErrorFacts:
    """Extract status, vendor code, message, fields and ``Retry-After`` from a failed response.

    Understands the Salesforce error array (``[{errorCode, message, fields}]``), the HubSpot
    error object (``{category, message, errors[{code}], policyName}``) and plain
    ``{message, code}`` envelopes; anything else keeps the raw text as the message.
    """
    retry_after = parse_retry_after(response.headers.get("Retry-After"), now)
    try:
        body: Any = response.json()
    except (ValueError, json.JSONDecodeError):
        body = None
    code: str | None = None
    message = ""
    fields: tuple[str, ...] = ()
    if isinstance(body, list) and body and isinstance(body[0], dict):
        first = body[0]
        code = first.get("errorCode") or first.get("statusCode")
        message = str(first.get("message", ""))
        fields = tuple(str(f) for f in first.get("fields") or ())
    elif isinstance(body, dict):
        nested = body.get("errors") if isinstance(body.get("errors"), list) else []
        nested_first = nested[0] if nested and isinstance(nested[0], dict) else {}
        code = (
            body.get("policyName")
            or nested_first.get("code")
            or body.get("category")
            or body.get("errorCode")
            or body.get("code")
            or body.get("error")
        )
        message = str(body.get("message") or nested_first.get("message") or "")
        in_field = nested_first.get("in")
        fields = (str(in_field),) if in_field else ()
    else:
        message = response.text[:500]
    return ErrorFacts(
        status=response.status_code,
        code=str(code) if code is not None else None,
        message=message,
        fields=fields,
        retry_after=retry_after,
    )


def facts_from_exception(error: requests.RequestException) -> ErrorFacts:
    """Describe a transport failure (timeout, refused connection) as error facts."""
    code = "timeout" if isinstance(error, requests.Timeout) else "connection_error"
    return ErrorFacts(status=None, code=code, message=str(error))


def _wrapped(error: BaseException) -> Iterator[BaseException]:
    """``error`` and every error it wraps.

    ``requests``, urllib3 and the HubSpot client wrap the :mod:`ssl` error several times (as
    cause, context, ``reason`` or argument); every link is followed.
    """
    pending: list[BaseException] = [error]
    seen: set[int] = set()
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        linked = (current.__cause__, current.__context__, getattr(current, "reason", None),
                  *current.args)
        pending.extend(link for link in linked if isinstance(link, BaseException))


def certificate_failure(error: BaseException) -> ssl.SSLCertVerificationError | None:
    """The failed certificate check behind a transport error, or ``None`` if it is not one."""
    return next((wrapped for wrapped in _wrapped(error)
                 if isinstance(wrapped, ssl.SSLCertVerificationError)), None)


_PLAINTEXT_REASONS = frozenset({"WRONG_VERSION_NUMBER", "PACKET_LENGTH_TOO_LONG",
                                "UNKNOWN_PROTOCOL"})
"""What OpenSSL says when the first bytes the server sends back are not a TLS record (most
often a plain-HTTP server answering the TLS greeting with an HTTP error)."""


def plaintext_failure(error: BaseException) -> ssl.SSLError | None:
    """The TLS error behind a transport error that says the server did not speak TLS, or
    ``None`` if it is not one.

    Other TLS errors (a connection dropped during the handshake) may be transient: they are
    not matched here.
    """
    return next((wrapped for wrapped in _wrapped(error) if isinstance(wrapped, ssl.SSLError)
                 and getattr(wrapped, "reason", None) in _PLAINTEXT_REASONS), None)


def _server(url: str | None) -> str:
    """``scheme://host:port`` of ``url`` (no credentials, no path), or "the server"."""
    parts = urlsplit(url or "")
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}" if parts.netloc else "the server"


def untrusted_certificate(
    system: str, url: str | None, ca_bundle: object, failure: ssl.SSLCertVerificationError
) -> FatalConnectorError:
    """The fatal error of a server whose TLS certificate failed the check.

    A certificate that cannot be verified (signed by a CA the bundle does not hold, expired,
    issued for another host) stays so however often the call is repeated: the message names
    the server and what the check said, and points at the ``ca_bundle`` setting.

    Args:
        system: the configured system name.
        url: the URL called; only its scheme, host and port are named.
        ca_bundle: the configured CA bundle (a path), or ``True``/``None`` for the system's
            trust store.
        failure: the failed check (see :func:`certificate_failure`).
    """
    server = _server(url)
    said = str(failure.verify_message or failure.reason or failure).rstrip(".")
    if isinstance(ca_bundle, str | os.PathLike):
        fix = (f"check the ca_bundle setting ({os.fspath(ca_bundle)}): it must hold the "
               "certificate of the CA that signed the server's certificate, or be removed to "
               "use the system's trust store")
    else:
        fix = ("check the ca_bundle setting: set it to the certificate of the CA that signed "
               "the server's certificate, or check that base_url names the right host")
    return FatalConnectorError(
        f"{system or 'the system'}: the TLS certificate of {server} could not be verified "
        f"({said}): {fix}",
        system=system,
        code="tls_certificate",
        detail=str(failure),
    )


def not_a_tls_server(system: str, url: str | None, failure: ssl.SSLError) -> FatalConnectorError:
    """The fatal error of a server that did not speak TLS when called with ``https://``.

    Most often a plain-HTTP server (a sandbox, a local proxy) addressed with ``https://``, or
    the port of another service: the answer stays the same however often the call is repeated.

    Args:
        system: the configured system name.
        url: the URL called; only its scheme, host and port are named.
        failure: the TLS error (see :func:`plaintext_failure`).
    """
    said = str(failure.reason or failure).lower().replace("_", " ")
    return FatalConnectorError(
        f"{system or 'the system'}: the server at {_server(url)} did not speak TLS ({said}): "
        "check the scheme and the port of that URL in the settings (http:// for a server "
        "without TLS, or the port that serves https://)",
        system=system,
        code=NOT_TLS,
        detail=str(failure),
    )


def tls_failure(
    error: BaseException, *, system: str, url: str | None, ca_bundle: object
) -> FatalConnectorError | None:
    """The fatal error of a TLS connection that cannot be set up, or ``None`` if ``error`` is
    not one.

    A certificate that fails the check (:func:`untrusted_certificate`) and a server that does
    not speak TLS (:func:`not_a_tls_server`) stay so however often the call is repeated.

    Args:
        error: the transport error, as ``requests``, urllib3 or a client library raised it.
        system: the configured system name.
        url: the URL called.
        ca_bundle: the configured CA bundle (a path), or ``True``/``None`` for the system's
            trust store.
    """
    certificate = certificate_failure(error)
    if certificate is not None:
        return untrusted_certificate(system, url, ca_bundle, certificate)
    plaintext = plaintext_failure(error)
    if plaintext is not None:
        return not_a_tls_server(system, url, plaintext)
    return None


def transport_error(
    error: requests.RequestException,
    *,
    system: str,
    verify: object,
    table: ErrorTable = DEFAULT_TABLE,
) -> ConnectorError | RecordError:
    """The exception for a call that got no answer.

    A TLS connection that cannot be set up is fatal (:func:`tls_failure`); a timeout or a
    refused connection is classified by ``table`` (retried by default).

    Args:
        error: what ``requests`` raised.
        system: the configured system name.
        verify: the session's ``verify`` (the CA bundle, or ``True``).
        table: the classification table of the connector.
    """
    url = getattr(error.request, "url", None)
    fatal = tls_failure(error, system=system, url=url if isinstance(url, str) else None,
                        ca_bundle=verify)
    if fatal is not None:
        return fatal
    found = table.classify(facts_from_exception(error), system=system)
    return to_exception(found, system=system)


FactsExtractor = Callable[[requests.Response, datetime], ErrorFacts]


def raise_for_response(
    response: requests.Response,
    *,
    system: str,
    now: datetime,
    table: ErrorTable = DEFAULT_TABLE,
    extract: FactsExtractor = facts_from_response,
) -> None:
    """Raise the classified exception for a non-2xx response; return for a success.

    ``extract`` reads a vendor's error body when :func:`facts_from_response` does not fit.
    """
    if response.ok:
        return
    found = table.classify(extract(response, now), system=system)
    raise to_exception(found, system=system)


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded retries with exponential backoff.

    Args:
        max_attempts: attempts in all, the first one included.
        base_delay: the wait before the second attempt; doubled for each further one.
        max_delay: the longest backoff wait.
        max_retry_after: the longest ``Retry-After`` honoured; a longer request is capped here
            (the next attempt will be refused again and the run ends as partial).
        retry_no_answer: False to give up at once on a call that got no answer (refused or
            unresolvable connection, timeout): an interactive check reports such a system at
            once instead of waiting out the backoff. Other failures are retried all the same.
    """

    max_attempts: int = 5
    base_delay: float = 1.0
    max_delay: float = 60.0
    max_retry_after: float = 300.0
    retry_no_answer: bool = True

    def without_no_answer_retries(self) -> RetryPolicy:
        """This policy, giving up at once on a call that got no answer."""
        return replace(self, retry_no_answer=False)

    def retries(self, error: BaseException) -> bool:
        """True when this policy retries ``error`` (while attempts are left)."""
        if not isinstance(error, RetryableError):
            return False
        return self.retry_no_answer or not got_no_answer(error)

    def wait_seconds(self, attempt: int, error: BaseException | None) -> float:
        """Return how long to wait after failed attempt number ``attempt`` (1-based)."""
        if isinstance(error, AuthExpiredError):
            return 0.0
        if isinstance(error, RateLimitedError) and error.retry_after is not None:
            return min(error.retry_after, self.max_retry_after)
        return float(min(self.max_delay, self.base_delay * 2 ** (attempt - 1)))


def call_with_retry(
    call: Callable[[], T],
    *,
    policy: RetryPolicy,
    sleep: Callable[[float], None],
    refresh_auth: Callable[[], None] | None = None,
    system: str = "",
    operation: str = "call",
    logger: EventLogger | None = None,
) -> T:
    """Run ``call``, retrying :class:`RetryableError` as ``policy`` allows (see
    :meth:`RetryPolicy.retries`).

    An :class:`AuthExpiredError` triggers ``refresh_auth`` and an immediate retry, each time
    it follows a successful refresh, within ``policy.max_attempts``: a session can expire again
    during a long call's retries. A call refused as expired on every one of several attempts
    (or with no way to refresh) becomes a :class:`FatalConnectorError` telling the user to fix
    the credentials; so does a refresh that is refused (``refresh_auth`` raises it). A call
    whose attempts run out on an expiry otherwise (after other failures, or with one attempt
    allowed) refreshes all the same, so the next call starts signed in, and raises that
    :class:`AuthExpiredError`, spent like any retryable error. Other errors propagate
    unchanged.

    A call still rate-limited when its attempts run out raises a :class:`RateLimitedError`
    whose message says so (how many attempts were refused, and that refsync stopped
    retrying), not the message of a rate limit refsync waits out.

    Every retry is logged before its wait (see :func:`log_retry`), with ``system`` and
    ``operation``; ``logger`` defaults to the connectors' logger.
    """
    expiries = 0  # attempts refused as expired
    attempts = 0
    rate_limited = 0  # attempts refused by a rate limit
    log = logger if logger is not None else structlog.get_logger("refsync.connectors")

    def attempt() -> T:
        nonlocal expiries, attempts, rate_limited
        attempts += 1
        try:
            return call()
        except RateLimitedError:
            rate_limited += 1
            raise
        except AuthExpiredError as error:
            expiries += 1
            refused_every_time = 1 < policy.max_attempts <= expiries
            if refresh_auth is None or refused_every_time:
                raise _credentials_refused(error, system=system,
                                           refreshes=expiries - 1) from error
            refresh_auth()
            raise

    def wait(state: RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome is not None else None
        return policy.wait_seconds(state.attempt_number, error)

    def before_sleep(state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome is not None else None
        wait_s = state.next_action.sleep if state.next_action is not None else 0.0
        log_retry(log, system=system, operation=operation, error=error,
                  attempt=state.attempt_number, max_attempts=policy.max_attempts, wait_s=wait_s)

    retrying = Retrying(
        stop=stop_after_attempt(policy.max_attempts),
        wait=wait,
        retry=retry_if_exception(policy.retries),
        sleep=sleep,
        before_sleep=before_sleep,
        reraise=True,
    )
    try:
        return retrying(attempt)
    except _RateLimitOutlasted:
        raise  # a nested call's attempts ran out: its message already says so
    except RateLimitedError as error:
        raise _rate_limit_outlasted(error, system=system, refused=rate_limited,
                                    attempts=attempts) from error


class _RateLimitOutlasted(RateLimitedError):
    """A call still rate-limited when its attempts ran out (see :func:`call_with_retry`).

    A type of its own so that an enclosing retry loop (a retried call that makes retried calls
    of its own) neither words it again nor logs it as a rate limit it waits out.
    """


def _rate_limit_outlasted(
    error: RateLimitedError, *, system: str, refused: int, attempts: int
) -> RateLimitedError:
    """The error of a call whose attempts ran out on a rate limit.

    The table's message says what the system answered; this one adds how often and that
    refsync stopped retrying, so the log line and the run's reason do not say it is waiting.
    """
    if attempts <= 1:
        when = "on the only attempt allowed (max_attempts: 1); refsync did not retry"
    elif refused >= attempts:
        when = f"on every one of {attempts} attempts; refsync stopped retrying"
    else:
        when = (f"on {refused} of {attempts} attempts, the last one included; refsync stopped "
                "retrying")
    return _RateLimitOutlasted(
        f"{error.message} {when}: check whether another integration uses the same "
        f"{system or 'system'} rate limit",
        retry_after=error.retry_after,
        system=error.system or system,
        status=error.status,
        code=error.code,
        detail=error.detail,
    )


def _credentials_refused(
    error: AuthExpiredError, *, system: str, refreshes: int
) -> FatalConnectorError:
    """The fatal error of a call refused as expired however often refsync signed in again."""
    again = {0: "", 1: " even after signing in again"}.get(
        refreshes, f" even after signing in again {refreshes} times")
    return FatalConnectorError(
        f"{system or 'the system'} rejected the credentials{again}: check the client id, "
        "secret or key in the settings and that the integration user is active",
        system=system,
        status=error.status,
        code=error.code,
        detail=error.detail,
    )


def log_retry(
    logger: EventLogger,
    *,
    system: str,
    operation: str,
    error: BaseException | None,
    attempt: int,
    max_attempts: int,
    wait_s: float,
) -> None:
    """Log that a failed call is retried after ``wait_s`` seconds (``call retried``).

    A rate limit or an expired session (routine, the remote system asked for it) is logged at
    info, any other failure at warning; both carry the status, the vendor code and the
    message (for a rate limit, followed by "; waiting"), so a slow run can be explained from
    the log alone.
    """
    routine = isinstance(error, RateLimitedError | AuthExpiredError)
    emit = logger.info if routine else logger.warning
    reason = getattr(error, "message", None) or (str(error) if error else None)
    if isinstance(error, RateLimitedError) and not isinstance(error, _RateLimitOutlasted):
        reason = f"{reason}; waiting"
    emit(
        "call retried",
        system=system,
        operation=operation,
        status=getattr(error, "status", None),
        code=getattr(error, "code", None),
        action=getattr(error, "action", None),
        reason=reason,
        attempt=attempt,
        max_attempts=max_attempts,
        wait_s=round(wait_s, 3),
    )


class HttpClient:
    """Classified, retried, paced HTTP calls to one system's API.

    Args:
        session: the (usually :class:`ApiSession`) session to send through.
        base_url: prefix joined to relative paths (the override that points at a sandbox or proxy).
        system: the configured system name for messages and counters.
        clock: injected clock (reading ``Retry-After`` dates).
        sleep: injected sleep for retry waits.
        policy: the retry policy.
        table: the error classification table.
        refresh_auth: re-authenticates the session after an expired one (see
            :func:`call_with_retry`).
        extract: reads the vendor's error bodies into :class:`ErrorFacts`.
        logger: where retries are logged (the connectors' logger by default).
    """

    def __init__(
        self,
        *,
        session: requests.Session,
        base_url: str,
        system: str,
        clock: Callable[[], datetime],
        sleep: Callable[[float], None],
        policy: RetryPolicy | None = None,
        table: ErrorTable = DEFAULT_TABLE,
        refresh_auth: Callable[[], None] | None = None,
        extract: FactsExtractor = facts_from_response,
        logger: EventLogger | None = None,
    ) -> None:
        self.session = session
        self.logger = logger
        self.extract = extract
        self.base_url = base_url.rstrip("/")
        self.system = system
        self.clock = clock
        self.sleep = sleep
        self.policy = policy or RetryPolicy()
        self.table = table
        self.refresh_auth = refresh_auth

    def url(self, path: str) -> str:
        """Return the absolute URL of ``path`` (absolute URLs pass through)."""
        if path.startswith(("http://", "https://")):
            return path
        return f"{self.base_url}/{path.lstrip('/')}"

    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        """Send a request, raising the classified exception once retries are spent."""

        def once() -> requests.Response:
            try:
                response = self.session.request(method, self.url(path), **kwargs)
            except requests.RequestException as error:
                raise transport_error(error, system=self.system, verify=self.session.verify,
                                      table=self.table) from error
            raise_for_response(
                response,
                system=self.system,
                now=self.clock(),
                table=self.table,
                extract=self.extract,
            )
            return response

        return call_with_retry(
            once,
            policy=self.policy,
            sleep=self.sleep,
            refresh_auth=self.refresh_auth,
            system=self.system,
            operation=f"{method} {path}",
            logger=self.logger,
        )

    def json(self, method: str, path: str, **kwargs: Any) -> Any:
        """Send a request and return its decoded JSON body (``None`` for an empty body)."""
        response = self.request(method, path, **kwargs)
        return response.json() if response.content else None
