"""A call whose attempts all run out on a rate limit says so, the same way for every connector:
the retries' log lines say refsync waits, the error of the last attempt says how many attempts
were refused and that refsync stopped retrying (not that it is waiting)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
import requests

from refsync.connectors.base import ConnectorContext
from refsync.connectors.cursor import Cursor
from refsync.connectors.errors import Action
from refsync.connectors.hubspot import HubSpotConnector, HubSpotSettings
from refsync.connectors.partnerstack import PartnerStackConnector, PartnerStackSettings
from refsync.connectors.salesforce import SalesforceConnector, SalesforceSettings
from refsync.errors import RateLimitedError
from refsync.sandbox.runner import RunningSandbox, available_emulators, start_sandbox
from refsync.testing import ManualClock, SleepRecorder

STOPPED = "refsync stopped retrying: check whether another integration uses the same {} rate limit"


@pytest.fixture(scope="module")
def sandbox() -> Iterator[RunningSandbox]:
    with start_sandbox(seed=None, ports=dict.fromkeys(available_emulators(), 0)) as running:
        yield running


def control(sandbox: RunningSandbox, system: str, path: str, payload: Any) -> None:
    answer = requests.post(f"{sandbox.urls[system]}/_sandbox/{path}", json=payload, timeout=30,
                           verify=str(sandbox.ca_bundle))
    answer.raise_for_status()


@pytest.fixture
def fresh(sandbox: RunningSandbox) -> RunningSandbox:
    """Every emulator empty, without faults; HubSpot paces nothing on its side."""
    for system in sandbox.urls:
        control(sandbox, system, "reset", {})
    control(sandbox, "hubspot", "settings", {"enforce_rate_limits": False})
    return sandbox


def throttle(sandbox: RunningSandbox, system: str, path: str, times: int,
             **rule: Any) -> None:
    control(sandbox, system, "faults", {"rules": [{
        "path": path, "status": 429, "headers": {"Retry-After": "1"}, "times": times, **rule}]})


def context(clock: ManualClock, system: str, sleep: SleepRecorder | None = None
            ) -> ConnectorContext:
    return ConnectorContext(system=system, clock=clock, sleep=sleep or SleepRecorder())


def hubspot(sandbox: RunningSandbox, clock: ManualClock, *, sleep: SleepRecorder | None = None,
            **overrides: Any) -> HubSpotConnector:
    settings = HubSpotSettings(
        base_url=sandbox.urls["hubspot"], settle_lag_seconds=0, search_per_second=1000,
        access_token=sandbox.credentials["hubspot"]["access_token"], **overrides)
    return HubSpotConnector(settings, context(clock, "crm", sleep))


def salesforce(sandbox: RunningSandbox, clock: ManualClock) -> SalesforceConnector:
    creds = sandbox.credentials["salesforce"]
    settings = SalesforceSettings.model_validate({
        "base_url": sandbox.urls["salesforce"], "ca_bundle": sandbox.ca_bundle,
        "consumer_key": creds["consumer_key"], "consumer_secret": creds["consumer_secret"],
        "settle_lag_seconds": 0})
    return SalesforceConnector(settings, context(clock, "crm"))


def partnerstack(sandbox: RunningSandbox, clock: ManualClock) -> PartnerStackConnector:
    creds = sandbox.credentials["partnerstack"]
    settings = PartnerStackSettings(
        base_url=f"{sandbox.urls['partnerstack']}/api/v2", public_key=creds["public_key"],
        secret_key=creds["secret_key"], settle_lag_seconds=0)
    return PartnerStackConnector(settings, context(clock, "prm"))


def retried(logs: list[dict[str, Any]]) -> list[tuple[int, str]]:
    return [(line["attempt"], line["reason"]) for line in logs if line["event"] == "call retried"]


def test_hubspot_429s_outlasting_the_retries_say_the_attempts_ran_out(
    fresh: RunningSandbox, clock: ManualClock, logs: list[dict[str, Any]]
) -> None:
    throttle(fresh, "hubspot", "/crm/v3/objects", times=5)
    sleep = SleepRecorder()
    with pytest.raises(RateLimitedError) as stopped:
        list(hubspot(fresh, clock, sleep=sleep).read("contacts", ["refsync_id"], None))
    assert stopped.value.message == (
        "crm ten-second rate limit reached on every one of 5 attempts; " + STOPPED.format("crm"))
    assert (stopped.value.action, stopped.value.status, stopped.value.code) == (
        "rate_limited", 429, "TEN_SECONDLY_ROLLING")
    assert "waiting" not in stopped.value.message
    assert retried(logs) == [
        (attempt, "crm ten-second rate limit reached; waiting") for attempt in (1, 2, 3, 4)]
    assert sleep.calls == [1.0, 1.0, 1.0, 1.0]


def test_a_hubspot_429_that_clears_is_only_waited_out(
    fresh: RunningSandbox, clock: ManualClock, logs: list[dict[str, Any]]
) -> None:
    throttle(fresh, "hubspot", "/crm/v3/objects", times=4)
    pages = list(hubspot(fresh, clock).read("contacts", ["refsync_id"], None))
    assert [record for page in pages for record in page.records] == []
    assert retried(logs) == [
        (attempt, "crm ten-second rate limit reached; waiting") for attempt in (1, 2, 3, 4)]


def test_the_count_says_how_many_attempts_the_rate_limit_refused(
    fresh: RunningSandbox, clock: ManualClock
) -> None:
    control(fresh, "hubspot", "faults", {"rules": [
        {"path": "/crm/v3/objects", "status": 503, "times": 1},
        {"path": "/crm/v3/objects", "status": 429, "times": 4}]})
    with pytest.raises(RateLimitedError) as stopped:
        list(hubspot(fresh, clock).read("contacts", ["refsync_id"], None))
    assert stopped.value.message == (
        "crm ten-second rate limit reached on 4 of 5 attempts, the last one included; "
        + STOPPED.format("crm"))


def test_a_single_allowed_attempt_is_not_said_to_be_retried(
    fresh: RunningSandbox, clock: ManualClock, logs: list[dict[str, Any]]
) -> None:
    throttle(fresh, "hubspot", "/crm/v3/objects", times=1)
    with pytest.raises(RateLimitedError) as stopped:
        list(hubspot(fresh, clock, max_attempts=1).read("contacts", ["refsync_id"], None))
    assert stopped.value.message == (
        "crm ten-second rate limit reached on the only attempt allowed (max_attempts: 1); "
        "refsync did not retry: check whether another integration uses the same crm rate limit")
    assert retried(logs) == []


def test_salesforce_says_the_same_when_its_rate_limit_outlasts_the_retries(
    fresh: RunningSandbox, clock: ManualClock, logs: list[dict[str, Any]]
) -> None:
    throttle(fresh, "salesforce", "/describe", times=5)
    with pytest.raises(RateLimitedError) as stopped:
        salesforce(fresh, clock).discover("Lead")
    assert stopped.value.message == (
        "crm asked refsync to slow down on every one of 5 attempts; " + STOPPED.format("crm"))
    assert stopped.value.code == "REQUEST_LIMIT_EXCEEDED"
    assert retried(logs) == [
        (attempt, "crm asked refsync to slow down; waiting") for attempt in (1, 2, 3, 4)]


def test_partnerstack_says_the_same_when_its_rate_limit_outlasts_the_retries(
    fresh: RunningSandbox, clock: ManualClock, logs: list[dict[str, Any]]
) -> None:
    throttle(fresh, "partnerstack", "^/api/v2/", times=5)
    since = Cursor(modstamp=clock() - timedelta(days=1))
    with pytest.raises(RateLimitedError) as stopped:
        list(partnerstack(fresh, clock).read("partnerships", ["email"], since))
    assert stopped.value.message == (
        "prm asked refsync to slow down on every one of 5 attempts; " + STOPPED.format("prm"))
    assert retried(logs) == [
        (attempt, "prm asked refsync to slow down; waiting") for attempt in (1, 2, 3, 4)]


def test_a_retried_call_whose_inner_lookup_runs_out_is_worded_once(
    fresh: RunningSandbox, clock: ManualClock
) -> None:
    """A PartnerStack create retried after a 429 first looks the item up again, itself a
    retried call: when the lookups run out, their message is the one given, not wrapped."""
    control(fresh, "partnerstack", "seed", {"partnerships": [
        {"key": "part_tests", "email": "p@example.com"}]})
    control(fresh, "partnerstack", "faults", {"rules": [
        {"method": "POST", "path": "/leads$", "status": 429, "times": 1},
        {"method": "GET", "path": "/leads$", "status": 429, "after": 1}]})
    (result,) = partnerstack(fresh, clock).write("leads", "fields.refsync_id", [{
        "fields.refsync_id": "r1", "email": "r1@prospect.example", "partner_key": "part_tests"}])
    assert not result.ok and result.error is not None
    assert result.error.action is Action.RETRY
    assert result.error.message == (
        "prm asked refsync to slow down on every one of 5 attempts; " + STOPPED.format("prm"))
