"""Every HubSpot call goes through here: signed in, paced, counted, classified and retried.

The official client (``hubspot-api-client``) sends its requests with urllib3, so the
``requests``-based :class:`~refsync.connectors.http.ApiSession` cannot wrap it. This module
gives those calls the same treatment instead:

* the call is paced by the credential's token bucket (and the search endpoints' own, lower
  per-second bucket), and the bucket is fed from the ``X-HubSpot-RateLimit-*`` headers of
  every answer, failures included;
* every HTTP attempt, retries included, is counted in the shared
  :class:`~refsync.connectors.usage.ApiCallCounter`;
* a failure (``ApiException`` with ``.status``, ``.body``, ``.headers``, or a urllib3
  transport error) is described as :class:`~refsync.connectors.errors.ErrorFacts`, looked up
  in :data:`HUBSPOT_TABLE` and raised as the matching exception of :mod:`refsync.errors`; a
  server certificate that fails the TLS check, or a server that does not speak TLS, is fatal
  at once, as for the other connectors;
* retries belong to refsync (:func:`~refsync.connectors.http.call_with_retry`): the client is
  built with urllib3 retries switched off, so a retried POST is never sent twice behind
  refsync's back;
* with OAuth, the access token is renewed shortly before it expires and again after each 401;
  every token obtained is registered with the log redactor at once.

Answers are read raw (``_preload_content=False``) and decoded as JSON: refsync needs a few
fields of each answer, and skipping the client's model layer keeps 10,000-record reads fast
and independent of the client's strict response models.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import hubspot
import hubspot.crm.associations.v4.exceptions as associations_exceptions
import hubspot.crm.objects.exceptions as objects_exceptions
import hubspot.crm.properties.exceptions as properties_exceptions
import urllib3.exceptions

from refsync import jsontext
from refsync.connectors.base import ConnectorContext
from refsync.connectors.errors import (
    DEFAULT_TABLE,
    UNKNOWN_OBJECT,
    Action,
    ErrorFacts,
    ErrorRule,
    ErrorTable,
    got_no_answer,
    to_exception,
)
from refsync.connectors.http import (
    HttpClient,
    call_with_retry,
    parse_retry_after,
    tls_failure,
)
from refsync.connectors.hubspot.settings import HubSpotSettings
from refsync.connectors.usage import TokenBucket
from refsync.errors import ConnectorError, FatalConnectorError, RecordError
from refsync.logging import register_secret

__all__ = [
    "HUBSPOT_TABLE",
    "ApiAnswer",
    "HubSpotTransport",
    "facts_from_hubspot_error",
    "first_detail_message",
    "hubspot_error_table",
    "no_answer_kind",
    "read_failure",
]

#: exception classes the client's sub-packages raise for non-2xx answers
_API_EXCEPTIONS: tuple[type[Exception], ...] = (
    associations_exceptions.ApiException,
    objects_exceptions.ApiException,
    properties_exceptions.ApiException,
)

# fmt: off
_HUBSPOT_RULES: tuple[ErrorRule, ...] = (
    ErrorRule(Action.QUOTA_EXHAUSTED,
              "{system} daily API allowance is spent (HubSpot DAILY limit): the run stops as "
              "partial and resumes when the allowance recovers at midnight in the portal's "
              "time zone", status=429, code="DAILY"),
    # what HubSpot answered, not what refsync does about it: the retry log line adds that
    # refsync waits, and the error of a call whose attempts run out says it stopped retrying
    ErrorRule(Action.RATE_LIMITED, "{system} ten-second rate limit reached",
              status=429, code="TEN_SECONDLY_ROLLING"),
    ErrorRule(Action.RATE_LIMITED, "{system} search rate limit reached",
              status=429, code="SECONDLY"),
    ErrorRule(Action.FATAL,
              "{system} refused the call for missing scopes ({message}): add the scopes refsync "
              "needs (crm.objects.contacts.read/write, crm.objects.deals.read/write, "
              "crm.schemas.*.read) to the app", status=403),
    ErrorRule(Action.RECORD_ERROR,
              "property {fields} does not exist in {system}: create it or fix the mapping",
              code="PROPERTY_DOESNT_EXIST"),
    ErrorRule(Action.RECORD_ERROR,
              "property {fields} is read-only in {system}: remove it from the mapping",
              code="READ_ONLY_VALUE"),
    ErrorRule(Action.RECORD_ERROR, "{system} refused the value of {fields}: {message}",
              code="INVALID_EMAIL"),
    ErrorRule(Action.RECORD_ERROR, "{system} refused the value of {fields}: {message}",
              code="INVALID_DATE"),
    ErrorRule(Action.RECORD_ERROR, "{system} refused the value of {fields}: {message}",
              code="INVALID_DECIMAL"),
    ErrorRule(Action.RECORD_ERROR, "{system} refused the value of {fields}: {message}",
              code="INVALID_BOOLEAN"),
    ErrorRule(Action.RECORD_ERROR,
              "{system} already holds another record with this unique value ({message}): merge "
              "the duplicates in {system}", code="CONFLICT"),
)
_STATIC_TOKEN_RULES: tuple[ErrorRule, ...] = (
    ErrorRule(Action.FATAL,
              "{system} rejected the private-app access token ({message}): create a new token "
              "for the private app and update access_token", status=401),
)
# fmt: on


def hubspot_error_table(*, oauth: bool) -> ErrorTable:
    """Return the classification table for HubSpot (a 401 refreshes OAuth tokens only)."""
    rules = _HUBSPOT_RULES if oauth else (*_STATIC_TOKEN_RULES, *_HUBSPOT_RULES)
    return DEFAULT_TABLE.extended(rules)


HUBSPOT_TABLE = hubspot_error_table(oauth=True)


@dataclass(frozen=True)
class ApiAnswer:
    """A successful HubSpot answer: status, headers and the decoded JSON body (or ``None``)."""

    status: int
    headers: Mapping[str, str]
    body: Any


def _decode(raw: bytes | str | None) -> Any:
    if not raw:
        return None
    try:
        return jsontext.loads(raw)
    except (TypeError, ValueError):
        return None


def first_detail_message(details: list[dict[str, Any]]) -> str:
    """The first detailed error's own message: it names the value and field refused, where the
    answer's top-level message ("Property values were not valid: [...]") wraps every detail
    in one JSON text."""
    return next((str(d["message"]) for d in details if d.get("message")), "")


def facts_from_hubspot_error(
    status: int | None, headers: Mapping[str, str], raw_body: bytes | str | None, now: datetime
) -> ErrorFacts:
    """Describe a failed HubSpot answer as error facts.

    The code is the 429 ``policyName``, else the first detailed error's ``code``, else the
    ``category``. A rate-limited answer without ``Retry-After`` waits for the burst window
    HubSpot announces in ``X-HubSpot-RateLimit-Interval-Milliseconds`` (one second for the
    search endpoints' ``SECONDLY`` policy).
    """
    lowered = {key.lower(): value for key, value in headers.items()}
    body = _decode(raw_body)
    code: str | None = None
    message = ""
    fields: tuple[str, ...] = ()
    if isinstance(body, dict):
        details = [d for d in body.get("errors") or [] if isinstance(d, dict)]
        code = body.get("policyName") or (details[0].get("code") if details else None)
        code = code or body.get("category") or body.get("status")
        message = first_detail_message(details) or str(body.get("message") or "")
        fields = tuple(str(d["in"]) for d in details if d.get("in"))
    elif raw_body:
        text = raw_body.decode("utf-8", "replace") if isinstance(raw_body, bytes) else raw_body
        message = text[:500]
    retry_after = parse_retry_after(lowered.get("retry-after"), now)
    if retry_after is None and status == 429 and code != "DAILY":
        if code == "SECONDLY":
            retry_after = 1.0
        else:
            interval_ms = lowered.get("x-hubspot-ratelimit-interval-milliseconds", "")
            retry_after = int(interval_ms) / 1000 if interval_ms.isdigit() else None
    return ErrorFacts(
        status=status,
        code=str(code) if code is not None else None,
        message=message,
        fields=fields,
        retry_after=retry_after,
    )


def _outcome(status: int) -> str:
    if status < 400:
        return "ok"
    if status == 429:
        return "rate_limited"
    if status < 500:
        return "client_error"
    return "server_error"


def _credential_key(settings: HubSpotSettings) -> str:
    """Identify the credential (its bucket) without putting the secret in the key."""
    if settings.access_token is not None:
        digest = hashlib.sha256(settings.access_token.get_secret_value().encode()).hexdigest()
        return f"hubspot:token:{digest[:16]}"
    return f"hubspot:oauth:{settings.client_id}"


class _OAuthTokens:
    """OAuth access tokens from the refresh-token grant, renewed before they expire."""

    def __init__(self, settings: HubSpotSettings, context: ConnectorContext) -> None:
        assert settings.client_id is not None
        assert settings.client_secret is not None
        assert settings.refresh_token is not None
        self._settings = settings
        self._context = context
        self._client_id = settings.client_id
        self._client_secret = settings.client_secret.get_secret_value()
        self._refresh_token = settings.refresh_token.get_secret_value()
        self._access_token: str | None = None
        self._expires_at: datetime | None = None
        session = context.new_session(timeout=settings.timeout)
        session.verify = settings.verify()
        self._http = HttpClient(
            session=session,
            base_url=settings.api_url,
            system=context.system,
            clock=context.clock,
            sleep=context.sleep,
            policy=context.retry_policy(settings.retry_policy()),
            logger=context.logger,
        )

    def needs_refresh(self) -> bool:
        """True when there is no token yet or it expires within the refresh margin."""
        if self._access_token is None or self._expires_at is None:
            return True
        margin = timedelta(seconds=self._settings.refresh_margin_seconds)
        return self._context.clock() >= self._expires_at - margin

    def refresh(self) -> str:
        """Fetch a new access token (``POST /oauth/v1/token``) and return it.

        Raises:
            FatalConnectorError: HubSpot refused the client id, secret or refresh token.
        """
        form = {
            "grant_type": "refresh_token",
            "client_id": self._client_id,
            "client_secret": self._client_secret,
            "refresh_token": self._refresh_token,
        }
        try:
            answer = self._http.json("POST", "/oauth/v1/token", data=form)
        except FatalConnectorError as error:
            if got_no_answer(error):  # a TLS failure says nothing of the credentials
                raise
            raise FatalConnectorError(
                f"{self._context.system} refused the OAuth refresh ({error.detail or error}): "
                "check client_id, client_secret and refresh_token, and that the app is still "
                "installed in the portal",
                system=self._context.system,
                status=error.status,
                code=error.code,
            ) from error
        if not isinstance(answer, dict) or not answer.get("access_token"):
            raise FatalConnectorError(
                f"{self._context.system} answered the OAuth refresh without an access token",
                system=self._context.system,
            )
        self._access_token = str(answer["access_token"])
        register_secret(self._access_token)
        self._refresh_token = str(answer.get("refresh_token") or self._refresh_token)
        register_secret(self._refresh_token, expires=False)
        lifetime = float(answer.get("expires_in") or 1800)
        self._expires_at = self._context.clock() + timedelta(seconds=lifetime)
        self._context.logger.info("hubspot_token_refreshed", system=self._context.system)
        return self._access_token


class HubSpotTransport:
    """The HubSpot client's APIs behind refsync's pacing, counting, classification and retries.

    Args:
        settings: the system's settings.
        context: injected clock, sleep, counter, rate limiters and logger.
    """

    def __init__(self, settings: HubSpotSettings, context: ConnectorContext) -> None:
        self.settings = settings
        self.context = context
        self.system = context.system
        self.table = hubspot_error_table(oauth=settings.uses_oauth)
        key = _credential_key(settings)
        self.bucket: TokenBucket = context.bucket(
            key,
            capacity=settings.rate_limit_max,
            interval_seconds=settings.rate_limit_interval_seconds,
            reserve=settings.daily_reserve,
        )
        self.search_bucket: TokenBucket = context.bucket(
            f"{key}:search", capacity=settings.search_per_second, interval_seconds=1.0
        )
        self._oauth = _OAuthTokens(settings, context) if settings.uses_oauth else None
        token = settings.access_token.get_secret_value() if settings.access_token else None
        # retry=False: urllib3 must neither retry nor wrap errors; refsync owns retries.
        client = hubspot.Client.create(
            access_token=token,
            host=settings.api_url,
            retry=False,
            ssl_ca_cert=str(settings.ca_bundle) if settings.ca_bundle is not None else None,
        )
        self.search_api: Any = client.crm.objects.search_api
        self.basic_api: Any = client.crm.objects.basic_api
        self.batch_api: Any = client.crm.objects.batch_api
        self.properties_api: Any = client.crm.properties.core_api
        self.associations_batch_api: Any = client.crm.associations.v4.batch_api
        self._apis = (self.search_api, self.basic_api, self.batch_api, self.properties_api,
                      self.associations_batch_api)

    # --- auth ------------------------------------------------------------------------------

    def _use_token(self, token: str) -> None:
        for api in self._apis:
            api.api_client.configuration.access_token = token

    def refresh_auth(self) -> None:
        """Renew the OAuth access token now (called after each 401 a call gets)."""
        if self._oauth is not None:
            self._use_token(self._oauth.refresh())

    def sign_in(self) -> None:
        """Make sure an OAuth access token is at hand (nothing to do for private-app tokens).

        Raises:
            FatalConnectorError: HubSpot refused the OAuth app credentials.
        """
        self._ensure_token()

    def _ensure_token(self) -> None:
        if self._oauth is not None and self._oauth.needs_refresh():
            self._use_token(self._oauth.refresh())

    # --- calls -----------------------------------------------------------------------------

    def call(
        self,
        operation: str,
        send: Callable[..., Any],
        *args: Any,
        search: bool = False,
        **kwargs: Any,
    ) -> ApiAnswer:
        """Call a client method under refsync's retry policy and return the decoded answer.

        Args:
            operation: a short name for logs (``search``, ``batch_upsert``...).
            send: the client method (e.g. ``transport.search_api.do_search``).
            *args: positional arguments of the method.
            search: the call goes to a search endpoint (paced by the search bucket).
            **kwargs: keyword arguments of the method.

        Raises:
            ConnectorError: the classified failure once retries are spent.
            RecordError: HubSpot refused the request's content (400 validation errors).
        """

        def once() -> ApiAnswer:
            self._ensure_token()
            if search:
                self.search_bucket.acquire()
            self.bucket.acquire()
            return self._send_once(operation, send, args, kwargs)

        return self._retrying(once, operation)

    def _retrying(self, once: Callable[[], ApiAnswer], operation: str) -> ApiAnswer:
        return call_with_retry(
            once,
            policy=self.context.retry_policy(self.settings.retry_policy()),
            sleep=self.context.sleep,
            refresh_auth=self.refresh_auth if self._oauth is not None else None,
            system=self.system,
            operation=operation,
            logger=self.context.logger,
        )

    def _check_ca_bundle(self) -> None:
        """After a TLS failure: a CA bundle that cannot be read is a setting to fix, not a
        transient failure."""
        bundle = self.settings.ca_bundle
        if bundle is not None and not os.access(bundle, os.R_OK):
            raise FatalConnectorError(
                f"{self.system}: cannot use the TLS CA bundle {bundle} (missing or unreadable): "
                "fix the ca_bundle setting (the path of a readable PEM file) or remove it to use "
                "the system's trust store",
                system=self.system,
                code="ca_bundle",
            )

    def _check_tls(self, error: Exception) -> None:
        """After a TLS failure: a server certificate that failed the check, or a server that
        does not speak TLS, is not transient."""
        fatal = tls_failure(error, system=self.system, url=self.settings.api_url,
                            ca_bundle=self.settings.ca_bundle)
        if fatal is not None:
            raise fatal from error

    def _no_answer(self, kind: str, said: object) -> ConnectorError | RecordError:
        """The classified error of a call that got no answer (``kind``: ``timeout`` or
        ``connection_error``, see :func:`no_answer_kind`)."""
        found = self.table.classify(ErrorFacts(status=None, code=kind, message=str(said)),
                                    system=self.system)
        return to_exception(found, system=self.system)

    def _send_once(
        self,
        operation: str,
        send: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> ApiAnswer:
        counter = self.context.api_calls
        try:
            raw = _unmasked(send)(
                *args, _preload_content=False, _request_timeout=self.settings.timeout, **kwargs
            )
        except _API_EXCEPTIONS as error:
            status = int(getattr(error, "status", 0) or 0)
            headers = dict(getattr(error, "headers", None) or {})
            if status == 0:  # the client reports TLS failures as status 0
                counter.record(self.system, "connection_error")
                self._check_ca_bundle()
                self._check_tls(error)
                raise self._no_answer("connection_error", getattr(error, "reason", error)) \
                    from error
            counter.record(self.system, _outcome(status))
            self.bucket.update_from_headers(headers)
            facts = facts_from_hubspot_error(
                status, headers, getattr(error, "body", None), self.context.clock()
            )
            found = self.table.classify(facts, system=self.system)
            self.context.logger.debug(
                "hubspot_call_failed",
                operation=operation,
                status=status,
                code=facts.code,
                action=str(found.action),
            )
            raise to_exception(found, system=self.system) from error
        except urllib3.exceptions.HTTPError as error:
            kind = no_answer_kind(error)
            counter.record(self.system, kind)
            raise self._no_answer(kind, error) from error
        try:
            data = raw.data
        finally:
            raw.release_conn()
        headers = dict(raw.headers)
        counter.record(self.system, _outcome(int(raw.status)))
        self.bucket.update_from_headers(headers)
        return ApiAnswer(status=int(raw.status), headers=headers, body=_decode(data))


def no_answer_kind(error: urllib3.exceptions.HTTPError) -> str:
    """``timeout`` for a connect or read timeout, ``connection_error`` for any other failure.

    In urllib3 2 a refused or unresolvable connection (``NewConnectionError``) is a subclass of
    ``ConnectTimeoutError``, though no time ran out: it is a connection error, as ``requests``
    reports it for the other connectors.
    """
    cause = error.reason if isinstance(error, urllib3.exceptions.MaxRetryError) else error
    timed_out = isinstance(cause, urllib3.exceptions.TimeoutError) and not isinstance(
        cause, urllib3.exceptions.NewConnectionError)
    return "timeout" if timed_out else "connection_error"


def _unmasked(send: Callable[..., Any]) -> Callable[..., Any]:
    """``send``, raising the client's own exception where the client masks it.

    For a TLS failure the client raises an ``ApiException`` without a body, then fails to
    decode that body and raises ``AttributeError`` instead; the ``ApiException`` is restored,
    caused by the TLS error it was raised for (which tells a failed certificate check apart).
    """

    def call(*args: Any, **kwargs: Any) -> Any:
        try:
            return send(*args, **kwargs)
        except AttributeError as error:
            masked = error.__context__
            if isinstance(masked, _API_EXCEPTIONS):
                raise masked from masked.__context__
            raise

    return call


_UNKNOWN_OBJECT_TYPE = "unable to infer object type"
"""How HubSpot's 400 answer begins when the object type named in the path does not exist."""


def read_failure(error: RecordError, *, system: str) -> ConnectorError:
    """Turn a 400 answer to a read into a fatal error.

    A read refused for its content points at the configuration (an unknown property or
    object type), not at one bad record. An unknown object type gets the code
    :data:`~refsync.connectors.errors.UNKNOWN_OBJECT`, so callers can tell it apart.
    """
    said = error.detail or error.message
    unknown_type = said.lower().startswith(_UNKNOWN_OBJECT_TYPE)
    return FatalConnectorError(
        f"{system} refused the read ({said}): check the object and property names in the "
        "mapping",
        system=system,
        status=400,
        code=UNKNOWN_OBJECT if unknown_type else error.code,
        detail=error.detail,
    )
