"""API usage: the call counter and the token bucket, with an injected clock and sleep."""

from __future__ import annotations

from typing import Any

import pytest

from refsync.connectors.usage import ApiCallCounter, RateLimiters, TokenBucket
from refsync.errors import QuotaExhaustedError
from refsync.testing.fakes import ManualClock, SleepRecorder


def make_bucket(capacity: float = 2, interval: float = 1, reserve: int = 0) -> tuple[
    TokenBucket, ManualClock, SleepRecorder
]:
    clock = ManualClock()
    sleeps = SleepRecorder(clock)
    bucket = TokenBucket(
        capacity=capacity,
        interval_seconds=interval,
        clock=clock,
        sleep=sleeps,
        daily_reserve=reserve,
        system="crm",
    )
    return bucket, clock, sleeps


def test_bucket_allows_a_burst_then_paces() -> None:
    bucket, clock, sleeps = make_bucket(capacity=2, interval=1)
    bucket.acquire()
    bucket.acquire()
    assert sleeps.calls == []
    bucket.acquire()
    assert sleeps.calls == [pytest.approx(0.5)]
    clock.advance(10)
    assert bucket.tokens == 2, "refill never exceeds the capacity"


def test_salesforce_usage_header_sets_the_daily_budget_and_stops_at_the_reserve() -> None:
    bucket, _, _ = make_bucket(reserve=100)
    bucket.update_from_headers({"Sforce-Limit-Info": "api-usage=14900/15000"})
    assert bucket.daily is not None
    assert (bucket.daily.limit, bucket.daily.remaining) == (15000, 100)
    with pytest.raises(QuotaExhaustedError, match="100 of 15000 left"):
        bucket.acquire()


def test_malformed_headers_change_nothing() -> None:
    bucket, _, _ = make_bucket()
    bucket.update_from_headers(
        {"Sforce-Limit-Info": "nonsense", "X-HubSpot-RateLimit-Max": "many"}
    )
    assert bucket.daily is None
    assert bucket.capacity == 2


def test_hubspot_remaining_caps_the_tokens() -> None:
    bucket, _, sleeps = make_bucket(capacity=100, interval=10)
    bucket.update_from_headers(
        {
            "X-HubSpot-RateLimit-Max": "190",
            "X-HubSpot-RateLimit-Remaining": "1",
            "X-HubSpot-RateLimit-Interval-Milliseconds": "10000",
        }
    )
    assert bucket.capacity == 190
    bucket.acquire()
    assert sleeps.calls == []
    bucket.acquire()
    assert sleeps.calls == [pytest.approx(10 / 190)]


def test_invalid_bucket_is_refused() -> None:
    clock = ManualClock()
    with pytest.raises(ValueError):
        TokenBucket(capacity=0, interval_seconds=1, clock=clock, sleep=SleepRecorder())


def test_one_bucket_per_credential() -> None:
    clock = ManualClock()
    limiters = RateLimiters(clock, SleepRecorder(clock))
    first = limiters.for_credential("org-1", capacity=5, interval_seconds=1)
    again = limiters.for_credential("org-1", capacity=99, interval_seconds=1)
    other = limiters.for_credential("org-2", capacity=5, interval_seconds=1)
    assert first is again
    assert first is not other


def test_counter_counts_by_system_and_outcome() -> None:
    counter = ApiCallCounter()
    for outcome in ("ok", "ok", "server_error"):
        counter.record("crm", outcome)
    counter.record("prm", "ok")
    assert counter.count("crm") == 3
    assert counter.count("crm", "ok") == 2
    assert counter.snapshot()[("prm", "ok")] == 1


def test_a_long_pacing_wait_is_logged_a_short_one_is_not(
    logs: list[dict[str, Any]],
) -> None:
    quick, _, _ = make_bucket(capacity=2, interval=1)
    for _ in range(3):
        quick.acquire()
    assert logs == []
    bucket, _, sleeps = make_bucket(capacity=1, interval=10)
    bucket.acquire()
    bucket.acquire()
    assert sleeps.calls == [pytest.approx(10.0)]
    assert [(line["event"], line["system"], line["wait_s"]) for line in logs] == [
        ("pacing calls: the rate-limit window is spent", "crm", 10.0)]
