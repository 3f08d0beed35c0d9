"""Expired sessions: refsync signs in again after each 401 that follows a successful sign-in,
within the retry policy's attempts; a refused sign-in is fatal at once.

One code path (:func:`~refsync.connectors.http.call_with_retry`) serves every connector: the
HTTP client directly, Salesforce through a new sign-in, HubSpot through an OAuth refresh.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests
import responses

from refsync.connectors.base import ConnectorContext
from refsync.connectors.http import ApiSession, HttpClient, RetryPolicy, call_with_retry
from refsync.connectors.hubspot import HubSpotConnector, HubSpotSettings
from refsync.errors import AuthExpiredError, FatalConnectorError, RetryableError
from refsync.sandbox.faults import FaultRule
from refsync.sandbox.runner import RunningSandbox, start_sandbox
from refsync.testing.fakes import ManualClock, SleepRecorder
from refsync.testing.salesforce import SalesforcePeer, running_salesforce

API = "https://api.example.test"
EXPIRED = [{"errorCode": "INVALID_SESSION_ID", "message": "Session expired or invalid"}]
SF_TOKEN_ROUTE = "POST /services/oauth2/token"
HS_TOKEN_ROUTE = "POST /oauth/v1/token"


# --- the shared retry loop ------------------------------------------------------------------


def _client(clock: ManualClock, sleeps: SleepRecorder, refresh: Any) -> HttpClient:
    return HttpClient(session=ApiSession(system="crm"), base_url=API, system="crm", clock=clock,
                      sleep=sleeps, policy=RetryPolicy(max_attempts=5), refresh_auth=refresh)


def test_a_session_expiring_again_after_a_good_refresh_is_refreshed_again(
    mocked: responses.RequestsMock, clock: ManualClock
) -> None:
    mocked.get(f"{API}/me", status=401, json=EXPIRED)
    mocked.get(f"{API}/me", status=401, json=EXPIRED)
    mocked.get(f"{API}/me", json={"ok": True})
    refreshes: list[int] = []
    sleeps = SleepRecorder(clock)

    answer = _client(clock, sleeps, lambda: refreshes.append(1)).json("GET", "/me")

    assert answer == {"ok": True}
    assert len(refreshes) == 2
    assert sleeps.calls == [0.0, 0.0], "a fresh session is tried at once"


def test_a_session_refused_on_every_attempt_is_fatal_after_max_attempts(
    mocked: responses.RequestsMock, clock: ManualClock
) -> None:
    mocked.get(f"{API}/me", status=401, json=EXPIRED)
    refreshes: list[int] = []

    with pytest.raises(FatalConnectorError, match="rejected the credentials even after "
                                                  "signing in again 4 times") as raised:
        _client(clock, SleepRecorder(clock), lambda: refreshes.append(1)).request("GET", "/me")

    assert "check the client id, secret or key" in raised.value.message
    assert len(mocked.calls) == 5, "max_attempts calls, not more"
    assert len(refreshes) == 4, "no refresh after the last attempt"


def test_a_refused_refresh_is_fatal_at_once(
    mocked: responses.RequestsMock, clock: ManualClock
) -> None:
    mocked.get(f"{API}/me", status=401, json=EXPIRED)
    sleeps = SleepRecorder(clock)

    def refused() -> None:
        raise FatalConnectorError("crm refused the sign-in", system="crm", status=400)

    with pytest.raises(FatalConnectorError, match="refused the sign-in"):
        _client(clock, sleeps, refused).request("GET", "/me")

    assert len(mocked.calls) == 1
    assert sleeps.calls == []


def test_attempts_spent_on_an_expiry_after_other_failures_stay_retryable(
    clock: ManualClock,
) -> None:
    answers: list[Exception] = [RetryableError("down", status=503),
                                AuthExpiredError("expired", status=401)]
    refreshes: list[int] = []

    def call() -> None:
        raise answers.pop(0)

    with pytest.raises(AuthExpiredError):
        call_with_retry(call, policy=RetryPolicy(max_attempts=2), sleep=SleepRecorder(clock),
                        refresh_auth=lambda: refreshes.append(1))

    assert refreshes == [1], "the next call starts signed in"


def test_with_one_attempt_an_expiry_refreshes_for_the_next_call_and_stays_retryable(
    clock: ManualClock,
) -> None:
    refreshes: list[int] = []

    def call() -> None:
        raise AuthExpiredError("expired", status=401)

    with pytest.raises(AuthExpiredError):
        call_with_retry(call, policy=RetryPolicy(max_attempts=1), sleep=SleepRecorder(clock),
                        refresh_auth=lambda: refreshes.append(1))

    assert refreshes == [1]


# --- Salesforce: a new sign-in ----------------------------------------------------------------


@pytest.fixture(scope="module")
def salesforce(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SalesforcePeer]:
    with running_salesforce(tmp_path_factory.mktemp("tls")) as peer:
        yield peer


def _expire_salesforce_sessions(peer: SalesforcePeer, times: int | None) -> None:
    peer.emulator.faults.add([FaultRule(path=r"^/services/data/", status=401, times=times,
                                        preset="session_expired")])


def test_salesforce_signs_in_again_after_each_expiry(salesforce: SalesforcePeer) -> None:
    clock = salesforce.fresh()
    connector = salesforce.connector(clock)
    _expire_salesforce_sessions(salesforce, times=2)

    assert "Refsync_Id__c" in connector.discover("Lead").fields

    assert salesforce.emulator.calls.get(SF_TOKEN_ROUTE) == 3, "signed in, then twice again"


def test_salesforce_refusing_every_new_session_stops_after_max_attempts(
    salesforce: SalesforcePeer,
) -> None:
    clock = salesforce.fresh()
    connector = salesforce.connector(clock, max_attempts=3)
    _expire_salesforce_sessions(salesforce, times=None)

    with pytest.raises(FatalConnectorError, match="rejected the credentials even after "
                                                  "signing in again 2 times"):
        connector.discover("Lead")

    assert salesforce.emulator.calls.get(SF_TOKEN_ROUTE) == 3


def test_salesforce_refusing_the_new_sign_in_is_fatal_at_once(
    salesforce: SalesforcePeer,
) -> None:
    clock = salesforce.fresh()
    connector = salesforce.connector(clock)
    _expire_salesforce_sessions(salesforce, times=None)
    salesforce.emulator.faults.add([FaultRule(
        path=r"/services/oauth2/token$", status=400, after=1,
        body={"error": "invalid_client", "error_description": "client disabled"})])

    with pytest.raises(FatalConnectorError, match="refused the sign-in"):
        connector.discover("Lead")

    assert salesforce.emulator.calls.get(SF_TOKEN_ROUTE) == 2
    data_calls = salesforce.emulator.calls.total() - 2
    assert data_calls == 1, "the expired call is not tried again"


# --- HubSpot: an OAuth refresh ----------------------------------------------------------------


@pytest.fixture(scope="module")
def sandbox() -> Iterator[RunningSandbox]:
    with start_sandbox(seed=None, ports={"salesforce": 0, "hubspot": 0, "partnerstack": 0}) as sb:
        yield sb


class HubSpotPeer:
    """Control-API helpers for the HubSpot emulator."""

    def __init__(self, sandbox: RunningSandbox) -> None:
        self.url = sandbox.urls["hubspot"]
        self.credentials = sandbox.credentials["hubspot"]
        self.post("reset", {})
        self.post("settings", {"enforce_rate_limits": False})

    def post(self, path: str, payload: Any) -> None:
        requests.post(f"{self.url}/_sandbox/{path}", json=payload, timeout=60).raise_for_status()

    def token_calls(self) -> int:
        answer = requests.get(f"{self.url}/_sandbox/calls", timeout=10)
        answer.raise_for_status()
        return int(answer.json()["by_route"].get(HS_TOKEN_ROUTE, 0))

    def connector(self, clock: ManualClock, **overrides: Any) -> HubSpotConnector:
        settings = HubSpotSettings(
            base_url=self.url,
            **{key: self.credentials[key]
               for key in ("client_id", "client_secret", "refresh_token")},
            **overrides,
        )
        context = ConnectorContext(system="crm", clock=clock, sleep=SleepRecorder(clock))
        return HubSpotConnector(settings, context)


@pytest.fixture
def hubspot(sandbox: RunningSandbox) -> HubSpotPeer:
    return HubSpotPeer(sandbox)


def test_hubspot_refreshes_the_oauth_token_after_each_expiry(
    hubspot: HubSpotPeer, clock: ManualClock
) -> None:
    hubspot.post("faults", {"rules": [{"path": "^/crm/", "status": 401, "times": 2}]})

    assert hubspot.connector(clock).discover("contacts").fields

    assert hubspot.token_calls() == 3, "signed in, then refreshed twice"


def test_hubspot_refusing_every_new_token_stops_after_max_attempts(
    hubspot: HubSpotPeer, clock: ManualClock
) -> None:
    hubspot.post("faults", {"rules": [{"path": "^/crm/", "status": 401}]})

    with pytest.raises(FatalConnectorError, match="rejected the credentials even after "
                                                  "signing in again 2 times"):
        hubspot.connector(clock, max_attempts=3).discover("contacts")

    assert hubspot.token_calls() == 3


def test_hubspot_refusing_the_oauth_refresh_is_fatal_at_once(
    hubspot: HubSpotPeer, clock: ManualClock
) -> None:
    hubspot.post("faults", {"rules": [
        {"path": "^/crm/", "status": 401},
        {"path": "^/oauth/v1/token$", "status": 400, "after": 1,
         "body": {"status": "BAD_REFRESH_TOKEN", "message": "refresh token is invalid"}},
    ]})

    with pytest.raises(FatalConnectorError, match="refused the OAuth refresh"):
        hubspot.connector(clock).discover("contacts")

    assert hubspot.token_calls() == 2, "signed in, then one refused refresh"

