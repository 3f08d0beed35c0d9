"""HTTP plumbing: timeouts, counting, classification, retries and pacing (never wall-clock)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import requests
import responses

from refsync.connectors.http import (
    ApiSession,
    HttpClient,
    RetryPolicy,
    call_with_retry,
    parse_retry_after,
)
from refsync.connectors.usage import ApiCallCounter, TokenBucket
from refsync.errors import (
    AuthExpiredError,
    FatalConnectorError,
    QuotaExhaustedError,
    RateLimitedError,
    RecordError,
    RetryableError,
)
from refsync.testing.fakes import ManualClock, SleepRecorder

API = "https://api.example.test"


@pytest.fixture
def sleeps(clock: ManualClock) -> SleepRecorder:
    return SleepRecorder(clock)


def client(
    sleeps: SleepRecorder,
    clock: ManualClock,
    *,
    refresh: list[int] | None = None,
    counter: ApiCallCounter | None = None,
) -> HttpClient:
    session = ApiSession(system="prm", timeout=(3.0, 7.0), counter=counter)

    def refresh_auth() -> None:
        assert refresh is not None
        refresh.append(1)

    return HttpClient(
        session=session,
        base_url=API,
        system="prm",
        clock=clock,
        sleep=sleeps,
        refresh_auth=refresh_auth if refresh is not None else None,
    )


def test_session_applies_a_default_timeout_and_counts_by_outcome(
    mocked: responses.RequestsMock,
) -> None:
    mocked.get(f"{API}/a", json={})
    mocked.get(f"{API}/b", status=404)
    counter = ApiCallCounter()
    session = ApiSession(system="crm", timeout=(3.0, 7.0), counter=counter)
    session.get(f"{API}/a")
    session.get(f"{API}/b", timeout=1.5)
    assert mocked.calls[0].request.req_kwargs["timeout"] == (3.0, 7.0)  # type: ignore[union-attr]
    assert mocked.calls[1].request.req_kwargs["timeout"] == 1.5  # type: ignore[union-attr]
    assert counter.snapshot() == {("crm", "ok"): 1, ("crm", "client_error"): 1}
    assert counter.count("crm") == 2


def test_server_errors_are_retried_with_bounded_exponential_backoff(
    mocked: responses.RequestsMock, clock: ManualClock, sleeps: SleepRecorder
) -> None:
    mocked.get(f"{API}/leads", status=503)
    counter = ApiCallCounter()
    with pytest.raises(RetryableError) as raised:
        client(sleeps, clock, counter=counter).request("GET", "/leads")
    assert sleeps.calls == [1.0, 2.0, 4.0, 8.0]
    assert counter.count("prm", "server_error") == 5
    assert "temporary failure (503)" in raised.value.message


def test_retry_then_success(
    mocked: responses.RequestsMock, clock: ManualClock, sleeps: SleepRecorder
) -> None:
    mocked.get(f"{API}/leads", status=502)
    mocked.get(f"{API}/leads", body=requests.ConnectTimeout("slow"))
    mocked.get(f"{API}/leads", json={"data": {"items": []}})
    body = client(sleeps, clock).json("GET", "leads")
    assert body == {"data": {"items": []}}
    assert sleeps.calls == [1.0, 2.0]


def test_retry_after_seconds_is_honoured(
    mocked: responses.RequestsMock, clock: ManualClock, sleeps: SleepRecorder
) -> None:
    mocked.get(f"{API}/x", status=429, headers={"Retry-After": "7"}, json={"message": "slow"})
    mocked.get(f"{API}/x", json={})
    client(sleeps, clock).request("GET", "/x")
    assert sleeps.calls == [7.0]


def test_retry_after_http_date_is_honoured(
    mocked: responses.RequestsMock, clock: ManualClock, sleeps: SleepRecorder
) -> None:
    mocked.get(
        f"{API}/x", status=429, headers={"Retry-After": "Thu, 01 Jan 2026 00:00:30 GMT"}
    )
    mocked.get(f"{API}/x", json={})
    client(sleeps, clock).request("GET", "/x")
    assert sleeps.calls == [30.0]


def test_retry_after_is_capped() -> None:
    error = RateLimitedError("slow", retry_after=10_000)
    assert RetryPolicy(max_retry_after=120).wait_seconds(1, error) == 120


def test_parse_retry_after_edge_cases(clock: ManualClock) -> None:
    assert parse_retry_after(None, clock()) is None
    assert parse_retry_after("soon", clock()) is None
    assert parse_retry_after("-5", clock()) == 0.0
    assert parse_retry_after("Wed, 31 Dec 2025 23:00:00 GMT", clock()) == 0.0


def test_expired_session_is_refreshed_once_then_retried(
    mocked: responses.RequestsMock, clock: ManualClock, sleeps: SleepRecorder
) -> None:
    mocked.get(f"{API}/me", status=401, json=[{"errorCode": "INVALID_SESSION_ID", "message": "x"}])
    mocked.get(f"{API}/me", json={"ok": True})
    refreshes: list[int] = []
    assert client(sleeps, clock, refresh=refreshes).json("GET", "/me") == {"ok": True}
    assert refreshes == [1]
    assert sleeps.calls == [0.0]


def test_an_expiry_after_every_refresh_is_fatal_once_attempts_are_spent(
    mocked: responses.RequestsMock, clock: ManualClock, sleeps: SleepRecorder
) -> None:
    mocked.get(f"{API}/me", status=401, json={"message": "bad token", "category": "X"})
    refreshes: list[int] = []
    with pytest.raises(FatalConnectorError, match="even after signing in again 4 times"):
        client(sleeps, clock, refresh=refreshes).request("GET", "/me")
    assert refreshes == [1, 1, 1, 1]
    assert len(mocked.calls) == 5


def test_expiry_without_a_way_to_refresh_is_fatal(
    mocked: responses.RequestsMock, clock: ManualClock, sleeps: SleepRecorder
) -> None:
    mocked.get(f"{API}/me", status=401)
    with pytest.raises(FatalConnectorError, match="rejected the credentials"):
        client(sleeps, clock).request("GET", "/me")
    assert sleeps.calls == []


def test_bad_field_is_fatal_at_once_with_a_fix(
    mocked: responses.RequestsMock, clock: ManualClock, sleeps: SleepRecorder
) -> None:
    mocked.get(
        f"{API}/query",
        status=400,
        json=[{"errorCode": "INVALID_FIELD", "message": "No such column", "fields": ["Foo__c"]}],
    )
    with pytest.raises(FatalConnectorError) as raised:
        client(sleeps, clock).request("GET", "/query")
    assert "Foo__c" in raised.value.message
    assert "field-level security" in raised.value.message
    assert raised.value.detail == "No such column"
    assert sleeps.calls == []


def test_hubspot_daily_limit_stops_the_run(
    mocked: responses.RequestsMock, clock: ManualClock, sleeps: SleepRecorder
) -> None:
    mocked.post(
        f"{API}/search",
        status=429,
        json={"status": "error", "message": "daily", "policyName": "DAILY", "category": "RATE"},
    )
    with pytest.raises(QuotaExhaustedError):
        client(sleeps, clock).request("POST", "/search", json={})
    assert sleeps.calls == []


def test_hubspot_validation_error_is_a_record_error(
    mocked: responses.RequestsMock, clock: ManualClock, sleeps: SleepRecorder
) -> None:
    mocked.post(
        f"{API}/objects",
        status=400,
        json={
            "message": "Property values were not valid",
            "category": "VALIDATION_ERROR",
            "errors": [{"message": "bad option", "code": "INVALID_OPTION", "in": "lifecycle"}],
        },
    )
    with pytest.raises(RecordError) as raised:
        client(sleeps, clock).request("POST", "/objects", json={})
    assert raised.value.code == "INVALID_OPTION"
    assert raised.value.field == "lifecycle"


def test_call_with_retry_leaves_other_errors_alone(sleeps: SleepRecorder) -> None:
    def fails() -> None:
        raise ValueError("not ours")

    with pytest.raises(ValueError):
        call_with_retry(fails, policy=RetryPolicy(), sleep=sleeps)
    assert sleeps.calls == []


def test_auth_error_type_is_retryable_but_refreshes_first(sleeps: SleepRecorder) -> None:
    calls: list[str] = []

    def call() -> str:
        calls.append("call")
        if len(calls) == 1:
            raise AuthExpiredError("expired")
        return "done"

    result = call_with_retry(
        call, policy=RetryPolicy(), sleep=sleeps, refresh_auth=lambda: calls.append("refresh")
    )
    assert result == "done"
    assert calls == ["call", "refresh", "call"]


def test_session_paces_through_the_bucket_and_learns_from_headers(
    mocked: responses.RequestsMock, clock: ManualClock, sleeps: SleepRecorder
) -> None:
    headers = {
        "X-HubSpot-RateLimit-Max": "10",
        "X-HubSpot-RateLimit-Remaining": "0",
        "X-HubSpot-RateLimit-Interval-Milliseconds": "10000",
        "X-HubSpot-RateLimit-Daily": "1000",
        "X-HubSpot-RateLimit-Daily-Remaining": "500",
    }
    mocked.get(f"{API}/a", json={}, headers=headers)
    mocked.get(f"{API}/b", json={})
    bucket = TokenBucket(capacity=100, interval_seconds=10, clock=clock, sleep=sleeps)
    session = ApiSession(system="hubspot", bucket=bucket)
    session.get(f"{API}/a")
    assert sleeps.calls == []
    assert bucket.capacity == 10
    assert bucket.daily is not None and bucket.daily.remaining == 500
    session.get(f"{API}/b")
    assert sleeps.calls == [pytest.approx(1.0)], "one token refills in 10 s / 10 calls"


def test_configured_ca_bundle_beats_the_environment(
    mocked: responses.RequestsMock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/somewhere/else.pem")
    mocked.get(f"{API}/a", json={})
    session = ApiSession(system="crm")
    session.verify = "/etc/refsync/ca.pem"
    session.get(f"{API}/a")
    assert mocked.calls[0].request.req_kwargs["verify"] == "/etc/refsync/ca.pem"  # type: ignore[union-attr]


def test_an_unreadable_ca_bundle_is_a_fatal_error_naming_the_setting(tmp_path: Path) -> None:
    session = ApiSession(system="crm")
    session.verify = str(tmp_path / "gone.pem")
    with pytest.raises(FatalConnectorError) as caught:
        session.get("https://127.0.0.1:9/services/oauth2/token")
    assert "ca_bundle" in caught.value.message and "gone.pem" in caught.value.message
    assert not isinstance(caught.value, RetryableError)


def test_each_retry_is_logged_before_its_wait(
    mocked: responses.RequestsMock, sleeps: SleepRecorder, clock: ManualClock,
    logs: list[dict[str, Any]],
) -> None:
    mocked.get(f"{API}/items", status=429, headers={"Retry-After": "3"})
    mocked.get(f"{API}/items", status=502)
    mocked.get(f"{API}/items", json={"ok": True})
    assert client(sleeps, clock).json("GET", "/items") == {"ok": True}
    assert sleeps.calls == [3.0, 2.0]
    assert [{key: line[key] for key in ("event", "log_level", "system", "operation", "status",
                                        "attempt", "max_attempts", "wait_s")}
            for line in logs] == [
        {"event": "call retried", "log_level": "info", "system": "prm",
         "operation": "GET /items", "status": 429, "attempt": 1, "max_attempts": 5,
         "wait_s": 3.0},
        {"event": "call retried", "log_level": "warning", "system": "prm",
         "operation": "GET /items", "status": 502, "attempt": 2, "max_attempts": 5,
         "wait_s": 2.0},
    ]


def test_call_with_retry_logs_to_the_logger_it_is_given(sleeps: SleepRecorder) -> None:
    logged: list[tuple[str, dict[str, object]]] = []

    class Recorder:
        def debug(self, event: str, **kw: object) -> None:
            logged.append((event, kw))

        info = warning = debug

    outcomes = iter([RetryableError("prm timed out", system="prm", code="timeout")])

    def call() -> str:
        error = next(outcomes, None)
        if error is not None:
            raise error
        return "done"

    assert call_with_retry(call, policy=RetryPolicy(), sleep=sleeps, system="prm",
                           operation="list leads", logger=Recorder()) == "done"
    assert [(event, kw["operation"], kw["code"], kw["wait_s"]) for event, kw in logged] == [
        ("call retried", "list leads", "timeout", 1.0)]


def test_a_policy_without_no_answer_retries_gives_up_on_those_only(
    mocked: responses.RequestsMock, clock: ManualClock, sleeps: SleepRecorder
) -> None:
    mocked.get(f"{API}/leads", status=503)
    mocked.get(f"{API}/leads", json={})
    mocked.get(f"{API}/slow", body=requests.ConnectTimeout("slow"))
    http = client(sleeps, clock)
    http.policy = RetryPolicy().without_no_answer_retries()
    http.request("GET", "/leads")
    assert sleeps.calls == [1.0], "a system that answered is retried as configured"
    with pytest.raises(RetryableError) as raised:
        http.request("GET", "/slow")
    assert raised.value.code == "timeout"
    assert sleeps.calls == [1.0], "a call that got no answer is not retried"
    assert len(mocked.calls) == 3
