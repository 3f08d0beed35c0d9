"""HubSpot connector behaviour beyond the contract: the search cap, batches, auth, limits."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
import requests

from refsync.connectors.base import ConnectorContext, Page
from refsync.connectors.cursor import Cursor
from refsync.connectors.errors import Action
from refsync.connectors.hubspot import HubSpotConnector, HubSpotSettings
from refsync.connectors.hubspot.transport import facts_from_hubspot_error, hubspot_error_table
from refsync.connectors.usage import ApiCallCounter
from refsync.errors import FatalConnectorError, QuotaExhaustedError
from refsync.sandbox.runner import RunningSandbox, start_sandbox
from refsync.testing import ManualClock, SleepRecorder

SEARCH_ROUTE = "POST /crm/v3/objects/{object_type}/search"
UPSERT_ROUTE = "POST /crm/v3/objects/{object_type}/batch/upsert"
TOKEN_ROUTE = "POST /oauth/v1/token"


@pytest.fixture(scope="module")
def sandbox() -> Iterator[RunningSandbox]:
    with start_sandbox(seed=None, ports={"salesforce": 0, "hubspot": 0, "partnerstack": 0}) as sb:
        yield sb


class Peer:
    """Control-API helpers for the HubSpot emulator."""

    def __init__(self, sandbox: RunningSandbox) -> None:
        self.url = sandbox.urls["hubspot"]
        self.credentials = sandbox.credentials["hubspot"]

    def post(self, path: str, payload: Any) -> Any:
        response = requests.post(f"{self.url}/_sandbox/{path}", json=payload, timeout=60)
        response.raise_for_status()
        return response.json()

    def calls(self) -> dict[str, Any]:
        response = requests.get(f"{self.url}/_sandbox/calls", timeout=10)
        response.raise_for_status()
        return dict(response.json())

    def faults(self, payload: dict[str, Any]) -> None:
        self.post("faults", payload)

    def faults_clear(self) -> None:
        requests.delete(f"{self.url}/_sandbox/faults", timeout=10).raise_for_status()


@pytest.fixture
def peer(sandbox: RunningSandbox) -> Peer:
    peer = Peer(sandbox)
    peer.post("reset", {})
    peer.post("settings", {"enforce_rate_limits": False})
    return peer


def _iso(moment: Any) -> str:
    return str(moment.isoformat(timespec="milliseconds").replace("+00:00", "Z"))


def _connector(
    peer: Peer,
    clock: ManualClock,
    *,
    sleep: SleepRecorder | None = None,
    counter: ApiCallCounter | None = None,
    oauth: bool = False,
    **overrides: Any,
) -> HubSpotConnector:
    credentials: dict[str, Any]
    if oauth:
        credentials = {
            key: peer.credentials[key] for key in ("client_id", "client_secret", "refresh_token")
        }
    else:
        credentials = {"access_token": peer.credentials["access_token"]}
    settings = HubSpotSettings(
        base_url=peer.url,
        settle_lag_seconds=0,
        search_per_second=1000,
        **credentials,
        **overrides,
    )
    context = ConnectorContext(
        system="crm",
        clock=clock,
        sleep=sleep if sleep is not None else SleepRecorder(),
        api_calls=counter if counter is not None else ApiCallCounter(),
    )
    return HubSpotConnector(settings, context)


def _seed_contacts(peer: Peer, stamps: list[Any], per_stamp: int) -> list[str]:
    keys: list[str] = []
    rows = []
    for group, stamp in enumerate(stamps):
        for n in range(per_stamp):
            key = f"r-{group}-{n:05d}"
            keys.append(key)
            rows.append({"refsync_id": key, "hs_lastmodifieddate": _iso(stamp)})
    peer.post("seed", {"contacts": rows})
    return keys


def _keys(pages: list[Page]) -> list[str]:
    return [str(record.data["refsync_id"]) for page in pages for record in page.records]


# --- incremental read past the search cap ---------------------------------------------------


def test_search_reanchors_before_the_cap_and_returns_12000_contacts_once(
    peer: Peer, clock: ManualClock
) -> None:
    base = clock() - timedelta(seconds=50)
    stamps = [base + timedelta(seconds=10 * n) for n in range(4)]  # four stamps, one minute
    keys = _seed_contacts(peer, stamps, per_stamp=3_000)
    connector = _connector(peer, clock)

    pages = list(connector.read("contacts", ["refsync_id"], Cursor(modstamp=base)))

    read = _keys(pages)
    assert len(read) == 12_000
    assert Counter(read) == Counter(keys), "every contact exactly once"
    ids = [record.id for page in pages for record in page.records]
    assert len(set(ids)) == 12_000
    stamps_read = [record.modstamp for page in pages for record in page.records]
    assert stamps_read == sorted(stamps_read)  # type: ignore[type-var]
    assert pages[-1].cursor.modstamp == stamps[-1]
    # 50 pages up to the cap; re-anchored at the 4th stamp, its 3,000 records in 15 more.
    assert peer.calls()["by_route"][SEARCH_ROUTE] == 65


def test_more_results_than_the_cap_on_one_modstamp_move_on_by_id(
    peer: Peer, clock: ManualClock
) -> None:
    stamp = clock() - timedelta(seconds=5)
    keys = _seed_contacts(peer, [stamp], per_stamp=2_500)
    connector = _connector(peer, clock, search_result_cap=1_000)

    pages = list(connector.read("contacts", ["refsync_id"], Cursor(modstamp=stamp)))

    assert Counter(_keys(pages)) == Counter(keys)


def test_read_resumed_from_a_page_cursor_neither_repeats_nor_skips(
    peer: Peer, clock: ManualClock
) -> None:
    base = clock() - timedelta(seconds=10)
    keys = _seed_contacts(peer, [base, base + timedelta(seconds=1)], per_stamp=7)
    connector = _connector(peer, clock, page_size=3)
    first = next(iter(connector.read("contacts", ["refsync_id"], Cursor(modstamp=base))))
    restored = Cursor.from_dict(first.cursor.to_dict())
    rest = list(connector.read("contacts", ["refsync_id"], restored))
    assert Counter(_keys([first, *rest])) == Counter(keys)


# --- writes ---------------------------------------------------------------------------------


def test_writing_450_records_with_3_invalid_takes_5_calls_and_fails_only_those(
    peer: Peer, clock: ManualClock
) -> None:
    counter = ApiCallCounter()
    connector = _connector(peer, clock, counter=counter)
    invalid = {17, 222, 449}
    records = [
        {
            "refsync_id": f"w-{n:03d}",
            "email": f"person{n}@example.com",
            "refsync_status": "no-such-status" if n in invalid else "submitted",
        }
        for n in range(450)
    ]

    results = connector.write("contacts", "refsync_id", records)

    assert [r.key for r in results] == [r["refsync_id"] for r in records]
    assert sum(r.ok for r in results) == 447
    failed = [n for n, r in enumerate(results) if not r.ok]
    assert failed == sorted(invalid)
    for n in failed:
        error = results[n].error
        assert error is not None
        assert error.action is Action.RECORD_ERROR
        assert error.code == "INVALID_OPTION"
        assert error.fields == ("refsync_status",)
    assert all(r.created and r.remote_id for r in results if r.ok)
    expected_calls = math.ceil(450 / 100)
    assert peer.calls()["by_route"][UPSERT_ROUTE] == expected_calls
    assert peer.calls()["total"] == expected_calls
    assert counter.count("crm") == expected_calls
    stored = requests.get(f"{peer.url}/_sandbox/records/contacts", timeout=10).json()
    assert len(stored) == 447


def test_a_key_repeated_in_one_write_is_sent_in_order_in_separate_calls(
    peer: Peer, clock: ManualClock
) -> None:
    connector = _connector(peer, clock)
    results = connector.write(
        "contacts",
        "refsync_id",
        [{"refsync_id": "d1", "firstname": "A"}, {"refsync_id": "d1", "firstname": "B"}],
    )
    assert [(r.ok, r.created) for r in results] == [(True, True), (True, False)]
    assert results[0].remote_id == results[1].remote_id
    stored = requests.get(f"{peer.url}/_sandbox/records/contacts", timeout=10).json()
    assert [row["properties"]["firstname"] for row in stored] == ["B"]


def test_a_record_without_its_key_is_refused_without_a_call(
    peer: Peer, clock: ManualClock
) -> None:
    results = _connector(peer, clock).write("contacts", "refsync_id", [{"firstname": "A"}])
    assert not results[0].ok
    assert results[0].error is not None
    assert results[0].error.code == "REQUIRED_FIELD_MISSING"
    assert peer.calls()["total"] == 0


# --- auth -----------------------------------------------------------------------------------


def test_oauth_401_mid_read_refreshes_once_and_continues(peer: Peer, clock: ManualClock) -> None:
    keys = _seed_contacts(peer, [clock() - timedelta(seconds=5)], per_stamp=10)
    peer.faults(
        {"rules": [{"method": "GET", "path": r"^/crm/v3/objects/contacts$", "status": 401,
                    "times": 1, "after": 2}]}
    )
    connector = _connector(peer, clock, oauth=True, page_size=2)

    pages = list(connector.read("contacts", ["refsync_id"], None))

    assert Counter(_keys(pages)) == Counter(keys)
    by_route = peer.calls()["by_route"]
    assert by_route[TOKEN_ROUTE] == 2, "signed in, then refreshed once after the 401"


def test_oauth_token_is_renewed_before_it_expires(peer: Peer, clock: ManualClock) -> None:
    connector = _connector(peer, clock, oauth=True)
    connector.discover("contacts")
    clock.advance(1_800 - 299)  # inside the 300 s refresh margin
    connector.discover("contacts")
    by_route = peer.calls()["by_route"]
    assert by_route[TOKEN_ROUTE] == 2
    assert requests.get(f"{peer.url}/_sandbox/faults", timeout=10).json()["injected_total"] == 0


def test_a_rejected_private_app_token_is_fatal_without_retrying(
    peer: Peer, clock: ManualClock
) -> None:
    sleep = SleepRecorder()
    peer.faults({"rules": [{"path": "^/crm/", "status": 401, "times": 1}]})
    connector = _connector(peer, clock, sleep=sleep)
    with pytest.raises(FatalConnectorError) as caught:
        connector.discover("contacts")
    assert "access_token" in caught.value.message
    assert peer.calls()["total"] == 1
    assert sleep.calls == []


# --- limits and transient failures ------------------------------------------------------------


def test_429_with_retry_after_waits_that_long_then_continues(
    peer: Peer, clock: ManualClock
) -> None:
    keys = _seed_contacts(peer, [clock() - timedelta(seconds=5)], per_stamp=5)
    peer.faults({"rules": [{"path": "/search$", "status": 429, "times": 1, "after": 1,
                            "headers": {"Retry-After": "7"}}]})
    sleep = SleepRecorder()
    connector = _connector(peer, clock, sleep=sleep, page_size=2)
    since = Cursor(modstamp=clock() - timedelta(days=1))
    pages = list(connector.read("contacts", ["refsync_id"], since))
    assert Counter(_keys(pages)) == Counter(keys)
    assert sleep.calls == [7.0]


def test_429_without_retry_after_waits_for_the_announced_window(
    peer: Peer, clock: ManualClock
) -> None:
    peer.faults({"preset": "rate_limit_burst"})  # 3 x TEN_SECONDLY_ROLLING, no Retry-After
    sleep = SleepRecorder()
    counter = ApiCallCounter()
    schema = _connector(peer, clock, sleep=sleep, counter=counter).discover("contacts")
    assert "refsync_id" in schema.fields
    assert sleep.calls == [10.0, 10.0, 10.0]  # X-HubSpot-RateLimit-Interval-Milliseconds
    assert counter.count("crm", "rate_limited") == 3
    assert counter.count("crm") == 4


def test_daily_quota_stops_with_a_cursor_that_resumes_where_it_stopped(
    peer: Peer, clock: ManualClock
) -> None:
    base = clock() - timedelta(seconds=60)
    keys = _seed_contacts(peer, [base + timedelta(seconds=n) for n in range(9)], per_stamp=1)
    peer.faults({"preset": "daily_limit", "after": 2})
    counter = ApiCallCounter()
    connector = _connector(peer, clock, counter=counter, page_size=2)
    pages: list[Page] = []
    with pytest.raises(QuotaExhaustedError) as caught:
        for page in connector.read("contacts", ["refsync_id"], Cursor(modstamp=base)):
            pages.append(page)
    assert caught.value.action == "quota_exhausted"
    assert len(pages) == 2
    assert counter.count("crm") == 3, "the quota answer is not retried"

    peer.faults_clear()
    resumed = _connector(peer, clock, page_size=2)  # the next run, after the allowance recovered
    cursor = Cursor.from_dict(pages[-1].cursor.to_dict())
    rest = list(resumed.read("contacts", ["refsync_id"], cursor))
    assert _keys(pages) + _keys(rest) == keys


def test_a_burst_of_5xx_is_retried_with_backoff_then_succeeds(
    peer: Peer, clock: ManualClock
) -> None:
    peer.faults({"preset": "server_error"})  # the next 2 calls get 503
    sleep = SleepRecorder()
    counter = ApiCallCounter()
    results = _connector(peer, clock, sleep=sleep, counter=counter).write(
        "contacts", "refsync_id", [{"refsync_id": "s1", "firstname": "A"}]
    )
    assert results[0].ok
    assert sleep.calls == [1.0, 2.0]
    assert counter.count("crm", "server_error") == 2
    assert counter.count("crm") == 3


def test_error_facts_read_policy_codes_and_the_announced_window() -> None:
    now = ManualClock()()
    daily = facts_from_hubspot_error(
        429, {"X-HubSpot-RateLimit-Interval-Milliseconds": "10000"},
        b'{"status":"error","policyName":"DAILY","category":"RATE_LIMITS"}', now,
    )
    assert (daily.code, daily.retry_after) == ("DAILY", None)
    burst = facts_from_hubspot_error(
        429, {"X-HubSpot-RateLimit-Interval-Milliseconds": "10000"},
        b'{"policyName":"TEN_SECONDLY_ROLLING"}', now,
    )
    assert (burst.code, burst.retry_after) == ("TEN_SECONDLY_ROLLING", 10.0)
    invalid = facts_from_hubspot_error(
        400, {}, b'{"category":"VALIDATION_ERROR","message":"bad",'
        b'"errors":[{"code":"INVALID_OPTION","in":"refsync_status"}]}', now,
    )
    assert (invalid.code, invalid.fields) == ("INVALID_OPTION", ("refsync_status",))
    table = hubspot_error_table(oauth=False)
    assert table.classify(daily, system="crm").action is Action.QUOTA_EXHAUSTED
    assert table.classify(burst, system="crm").action is Action.RATE_LIMITED
    assert table.classify(invalid, system="crm").action is Action.RECORD_ERROR
    expired = facts_from_hubspot_error(401, {}, b'{"category":"EXPIRED_AUTHENTICATION"}', now)
    assert table.classify(expired, system="crm").action is Action.FATAL
    assert hubspot_error_table(oauth=True).classify(expired, system="crm").action is (
        Action.REFRESH_AUTH
    )


# --- discover and check ---------------------------------------------------------------------


def test_discover_reports_types_picklists_uniqueness_and_writability(
    peer: Peer, clock: ManualClock
) -> None:
    schema = _connector(peer, clock).discover("contacts")
    assert schema.fields["refsync_id"].unique
    assert schema.fields["refsync_id"].external_id
    status = schema.fields["refsync_status"]
    assert status.type == "enumeration"
    assert status.picklist_values is not None and "submitted" in status.picklist_values
    assert not schema.fields["hs_lastmodifieddate"].writable
    assert schema.fields["firstname"].writable
    assert schema.fields["firstname"].picklist_values is None


def test_check_reports_the_daily_budget_and_a_missing_key_property(
    peer: Peer, clock: ManualClock
) -> None:
    connector = _connector(peer, clock)
    good = connector.check()
    assert good.ok, good.findings
    assert good.api_budget is not None and good.api_budget.limit > 0
    # The bucket took HubSpot's announced burst limit (Pro: 190 per 10 s) from the headers.
    assert connector.transport.bucket.capacity == 190
    assert connector.transport.bucket.interval_seconds == 10

    bad = _connector(peer, clock, check_objects=["contacts", "companies"]).check()
    assert bad.auth_ok
    assert not bad.ok
    assert any("companies" in finding.message for finding in bad.findings)


def test_check_asks_for_scopes_only_when_hubspot_refuses_for_them(
    peer: Peer, clock: ManualClock
) -> None:
    peer.faults({"rules": [{"path": "/crm/v3/properties/deals", "status": 403, "times": 1}]})
    fixes = {
        finding.message.split(" properties:")[0]: finding.fix
        for finding in _connector(peer, clock, max_attempts=1,
                                  check_objects=["deals", "widgets"]).check().findings
    }
    assert fixes["cannot read deals"] == "grant the app the crm.schemas and crm.objects scopes"
    assert "scope" not in fixes["cannot read widgets"]
    assert "check_objects" in fixes["cannot read widgets"]

    peer.faults({"rules": [{"path": "/crm/v3/properties/contacts", "status": 503, "times": 1}]})
    failed = _connector(peer, clock, max_attempts=1).check()
    assert [finding.fix for finding in failed.findings] == ["fix the cause and run check again"]
    assert failed.reachable, "HubSpot answered"


def test_check_with_a_refused_oauth_client_reports_auth(peer: Peer, clock: ManualClock) -> None:
    settings = HubSpotSettings(
        base_url=peer.url, client_id="nope", client_secret="nope", refresh_token="nope"
    )
    report = HubSpotConnector(settings, ConnectorContext(system="crm", clock=clock)).check()
    assert not report.auth_ok
    assert not report.ok


# --- secrets and logs -----------------------------------------------------------------------


def test_oauth_access_tokens_are_registered_with_the_redactor(
    peer: Peer, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    registered: list[str] = []

    def register(value: str, *, expires: bool = True) -> None:
        registered.append(value)

    monkeypatch.setattr("refsync.connectors.hubspot.transport.register_secret", register)
    connector = _connector(peer, clock, oauth=True)
    connector.discover("contacts")
    clock.advance(1_800)
    connector.discover("contacts")
    tokens = [value for value in registered if value.startswith("oauth-sandbox-")]
    assert len(tokens) == 2 and tokens[0] != tokens[1], "every token, renewed ones included"


def test_retries_are_logged_with_system_operation_and_wait(
    peer: Peer, clock: ManualClock, logs: list[dict[str, Any]]
) -> None:
    peer.faults({"preset": "server_error"})  # the next 2 calls get 503
    _connector(peer, clock).write("contacts", "refsync_id", [{"refsync_id": "s1"}])
    failed = [line for line in logs if line["event"] == "hubspot_call_failed"]
    assert len(failed) == 2 and all(line["system"] == "crm" for line in failed)
    retries = [line for line in logs if line["event"] == "call retried"]
    assert [(line["attempt"], line["wait_s"], line["status"]) for line in retries] == [
        (1, 1.0, 503), (2, 2.0, 503)]
    assert all(line["system"] == "crm" and line["operation"] for line in retries)


def test_the_ca_bundle_setting_is_used(peer: Peer, clock: ManualClock, tmp_path: Any) -> None:
    bundle = tmp_path / "ca.pem"
    bundle.write_text("-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n")
    connector = _connector(peer, clock, oauth=True, ca_bundle=bundle)
    transport = connector.transport
    assert transport.search_api.api_client.configuration.ssl_ca_cert == str(bundle)
    assert transport._oauth is not None
    assert transport._oauth._http.session.verify == str(bundle)


def test_a_ca_bundle_gone_at_run_time_is_a_connector_error_with_the_fix(
    tmp_path: Any, clock: ManualClock
) -> None:
    from refsync.testing.salesforce import running_salesforce

    # any TLS server signed by a CA of ours will do: the Salesforce emulator is one
    with running_salesforce(tmp_path / "tls") as tls_peer:
        bundle = tmp_path / "ca.pem"
        bundle.write_bytes(tls_peer.ca_bundle.read_bytes())
        settings = HubSpotSettings(access_token="pat-na1-00000000-0000", base_url=tls_peer.url,
                                   ca_bundle=bundle)
        bundle.unlink()
        sleep = SleepRecorder()
        connector = HubSpotConnector(settings, ConnectorContext(system="crm", clock=clock,
                                                                sleep=sleep))
        with pytest.raises(FatalConnectorError) as caught:
            connector.discover("contacts")
    assert "ca_bundle" in caught.value.message and str(bundle) in caught.value.message
    assert sleep.calls == [], "a setting to fix is not retried"
