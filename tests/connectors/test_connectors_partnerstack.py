"""PartnerStack connector behaviour beyond the contract: lookups, idempotent creates, limits."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
import requests
from requests.adapters import HTTPAdapter

from refsync.connectors.base import ConnectorContext
from refsync.connectors.cursor import Cursor
from refsync.connectors.errors import Action
from refsync.connectors.http import ApiSession
from refsync.connectors.partnerstack import (
    PartnerStackConnector,
    PartnerStackSettings,
    get_path,
    request_body,
)
from refsync.connectors.usage import ApiCallCounter
from refsync.errors import FatalConnectorError
from refsync.sandbox.runner import RunningSandbox, start_sandbox
from refsync.testing import ManualClock, SleepRecorder

PARTNER = "part_tests"
LIST_LEADS = "GET /api/v2/{resource}"
CREATE = "POST /api/v2/{resource}"
UPDATE = "PATCH /api/v2/{resource}/{key}"


@pytest.fixture(scope="module")
def sandbox() -> Iterator[RunningSandbox]:
    with start_sandbox(seed=None, ports={"salesforce": 0, "hubspot": 0, "partnerstack": 0}) as sb:
        yield sb


class Peer:
    """Control-API helpers for the PartnerStack emulator."""

    def __init__(self, sandbox: RunningSandbox) -> None:
        self.url = sandbox.urls["partnerstack"]
        self.credentials = sandbox.credentials["partnerstack"]

    def post(self, path: str, payload: Any) -> Any:
        response = requests.post(f"{self.url}/_sandbox/{path}", json=payload, timeout=30)
        response.raise_for_status()
        return response.json()

    def calls(self) -> dict[str, int]:
        response = requests.get(f"{self.url}/_sandbox/calls", timeout=10)
        response.raise_for_status()
        return dict(response.json()["by_route"])

    def leads(self) -> list[dict[str, Any]]:
        response = requests.get(f"{self.url}/_sandbox/records/leads", timeout=10)
        response.raise_for_status()
        return [item for item in response.json() if not item["deleted"]]


@pytest.fixture
def peer(sandbox: RunningSandbox) -> Peer:
    peer = Peer(sandbox)
    peer.post("reset", {})
    peer.post("seed", {"partnerships": [{"key": PARTNER, "email": "p@example.com",
                                         "created_at": 0, "updated_at": 0}]})
    return peer


def _connector(
    peer: Peer,
    clock: ManualClock,
    *,
    sleep: SleepRecorder | None = None,
    counter: ApiCallCounter | None = None,
    configure: Any = None,
    **overrides: Any,
) -> PartnerStackConnector:
    settings = PartnerStackSettings(
        base_url=f"{peer.url}/api/v2",
        public_key=overrides.pop("public_key", peer.credentials["public_key"]),
        secret_key=peer.credentials["secret_key"],
        settle_lag_seconds=0,
        **overrides,
    )
    context = ConnectorContext(
        system="prm",
        clock=clock,
        sleep=sleep if sleep is not None else SleepRecorder(),
        api_calls=counter if counter is not None else ApiCallCounter(),
        configure_session=configure,
    )
    return PartnerStackConnector(settings, context)


def _lead(key: str, **extra: Any) -> dict[str, Any]:
    return {"fields.refsync_id": key, "email": f"{key}@prospect.example", "partner_key": PARTNER,
            **extra}


def _calls_since(peer: Peer, before: dict[str, int]) -> Counter[str]:
    return Counter(peer.calls()) - Counter(before)


def test_dotted_names_read_nested_values_and_build_nested_bodies() -> None:
    item = {"key": "lead_1", "fields": {"refsync_id": "r1", "tier": "gold"}}
    assert get_path(item, "fields.refsync_id") == "r1"
    assert get_path(item, "fields.missing") is None
    assert get_path({"fields.refsync_id": "flat"}, "fields.refsync_id") == "flat"
    assert request_body({"key": "lead_1", "fields.refsync_id": "r1", "fields": {"tier": "gold"},
                     "status": "won"}) == {
        "fields": {"refsync_id": "r1", "tier": "gold"}, "status": "won"}


# --- reading --------------------------------------------------------------------------------


def test_reads_every_lead_once_across_250_item_pages_in_update_order(
    peer: Peer, clock: ManualClock
) -> None:
    base = int((clock() - timedelta(minutes=5)).timestamp() * 1000)
    leads = [
        {"email": f"l{n}@x.example", "partner_key": PARTNER, "fields": {"refsync_id": f"r{n}"},
         "created_at": base, "updated_at": base + n % 3}
        for n in range(600)
    ]
    peer.post("seed", {"leads": leads})
    counter = ApiCallCounter()
    connector = _connector(peer, clock, counter=counter)
    pages = list(connector.read("leads", ["fields.refsync_id", "email"], None))
    keys = [record.data["fields.refsync_id"] for page in pages for record in page.records]
    assert Counter(keys) == Counter(f"r{n}" for n in range(600))
    assert [len(page.records) for page in pages] == [250, 250, 100]
    stamps = [record.modstamp for page in pages for record in page.records]
    assert stamps == sorted(stamps)  # type: ignore[type-var]
    assert counter.count("prm") == 3 == peer.calls()[LIST_LEADS]

    later = list(connector.read("leads", ["email"], pages[-1].cursor))
    assert later == [], "nothing changed since: the boundary records are not read again"


# --- writing --------------------------------------------------------------------------------


def test_a_record_carrying_its_remote_key_is_patched_without_a_lookup(
    peer: Peer, clock: ManualClock
) -> None:
    connector = _connector(peer, clock)
    created = connector.write("leads", "fields.refsync_id", [_lead("a1")])[0]
    before = peer.calls()
    result = connector.write(
        "leads", "fields.refsync_id",
        [{"key": created.remote_id, "fields.refsync_id": "a1", "status": "qualified"}],
    )[0]
    assert (result.ok, result.created, result.remote_id) == (True, False, created.remote_id)
    assert _calls_since(peer, before) == Counter({UPDATE: 1})
    (stored,) = peer.leads()
    assert stored["status"] == "qualified"
    assert stored["fields"] == {"refsync_id": "a1"}, "custom fields are merged, not replaced"


def test_a_filterable_key_is_looked_up_with_one_filtered_call_per_record(
    peer: Peer, clock: ManualClock
) -> None:
    connector = _connector(peer, clock)
    before = peer.calls()
    results = connector.write(
        "leads", "external_key", [{**_lead("x1"), "external_key": "ext-1"},
                                  {**_lead("x2"), "external_key": "ext-2"}]
    )
    assert [(r.ok, r.created) for r in results] == [(True, True), (True, True)]
    assert _calls_since(peer, before) == Counter({LIST_LEADS: 2, CREATE: 2})
    again = connector.write("leads", "external_key", [{"external_key": "ext-1", "name": "New"}])
    assert (again[0].ok, again[0].created) == (True, False)
    assert len(peer.leads()) == 2


def test_custom_field_keys_are_indexed_once_per_write_call(
    peer: Peer, clock: ManualClock
) -> None:
    connector = _connector(peer, clock)
    before = peer.calls()
    results = connector.write("leads", "fields.refsync_id", [_lead(f"c{n}") for n in range(5)])
    assert all(r.ok and r.created for r in results)
    assert _calls_since(peer, before) == Counter({LIST_LEADS: 1, CREATE: 5})


def test_a_retried_create_whose_answer_was_lost_does_not_duplicate(
    peer: Peer, clock: ManualClock
) -> None:
    class LoseFirstCreateAnswer(HTTPAdapter):
        """Sends every request, but drops the answer to the first POST (as a network cut would)."""

        lost = False

        def send(self, request: Any, *args: Any, **kwargs: Any) -> Any:
            response = super().send(request, *args, **kwargs)
            if request.method == "POST" and not LoseFirstCreateAnswer.lost:
                LoseFirstCreateAnswer.lost = True
                raise requests.ConnectionError("connection reset after the request was sent")
            return response

    def configure(session: ApiSession) -> None:
        session.mount("http://", LoseFirstCreateAnswer())

    sleep = SleepRecorder()
    connector = _connector(peer, clock, sleep=sleep, configure=configure)
    (result,) = connector.write("leads", "fields.refsync_id", [_lead("once")])

    assert LoseFirstCreateAnswer.lost
    assert result.ok and result.created
    stored = [item for item in peer.leads() if item["fields"].get("refsync_id") == "once"]
    assert len(stored) == 1
    assert result.remote_id == stored[0]["key"]
    assert peer.calls()[CREATE] == 1
    assert sleep.calls == [1.0]


def test_invalid_and_duplicated_keys_fail_alone_with_classified_errors(
    peer: Peer, clock: ManualClock
) -> None:
    stamp = int(clock().timestamp() * 1000)
    twins = [{"email": f"t{n}@x.example", "partner_key": PARTNER, "fields": {"refsync_id": "twin"},
              "created_at": stamp, "updated_at": stamp} for n in range(2)]
    peer.post("seed", {"leads": twins})
    results = _connector(peer, clock).write(
        "leads", "fields.refsync_id",
        [_lead("fine"), _lead("twin"), _lead("bad", email="nope"), {"email": "no@key.example"}],
    )
    assert [r.ok for r in results] == [True, False, False, False]
    codes = [r.error.code for r in results[1:] if r.error is not None]
    assert codes == ["DUPLICATE_KEY", "VALIDATION_ERROR", "REQUIRED_FIELD_MISSING"]
    assert all(
        r.error is not None and r.error.action is Action.RECORD_ERROR for r in results[1:]
    )
    assert results[2].error is not None and results[2].error.fields == ("email",)


def test_deal_stage_is_written_back(peer: Peer, clock: ManualClock) -> None:
    connector = _connector(peer, clock)
    (created,) = connector.write(
        "deals", "external_key", [{"external_key": "d-1", "name": "Deal", "partner_key": PARTNER}]
    )
    (moved,) = connector.write("deals", "external_key", [{"external_key": "d-1", "stage": "won"}])
    assert moved.ok and not moved.created and moved.remote_id == created.remote_id
    deals = requests.get(f"{peer.url}/_sandbox/records/deals", timeout=10).json()
    assert [deal["stage"] for deal in deals] == ["won"]


# --- limits, failures, auth -----------------------------------------------------------------


def test_429_with_retry_after_waits_that_long(peer: Peer, clock: ManualClock) -> None:
    peer.post("faults", {"rules": [{"path": "^/api/v2/", "status": 429, "times": 1,
                                    "headers": {"Retry-After": "4"}}]})
    sleep = SleepRecorder()
    counter = ApiCallCounter()
    pages = list(_connector(peer, clock, sleep=sleep, counter=counter).read(
        "partnerships", ["email"], Cursor(modstamp=clock() - timedelta(days=365 * 60))))
    assert [r.data["email"] for page in pages for r in page.records] == ["p@example.com"]
    assert sleep.calls == [4.0]
    assert counter.count("prm", "rate_limited") == 1


def test_a_5xx_burst_is_retried_then_succeeds(peer: Peer, clock: ManualClock) -> None:
    peer.post("faults", {"preset": "server_error"})
    sleep = SleepRecorder()
    report = _connector(peer, clock, sleep=sleep).check()
    assert report.ok
    assert sleep.calls == [1.0, 2.0]


def test_wrong_keys_are_fatal_and_reported_by_check(peer: Peer, clock: ManualClock) -> None:
    connector = _connector(peer, clock, public_key="pk_wrong")
    report = connector.check()
    assert not report.auth_ok and not report.ok
    with pytest.raises(FatalConnectorError, match="public_key"):
        list(connector.read("leads", [], None))


def test_discover_describes_objects_statically(peer: Peer, clock: ManualClock) -> None:
    before = peer.calls()
    schema = _connector(peer, clock).discover("leads")
    assert schema.fields["fields.refsync_id"].external_id
    assert schema.fields["email"].required
    assert not schema.fields["updated_at"].writable
    assert _calls_since(peer, before) == Counter(), "no describe endpoint is called"
    with pytest.raises(FatalConnectorError, match="not supported"):
        _connector(peer, clock).discover("widgets")


def test_a_validation_error_names_the_fields_and_problems_partnerstack_gave(
    peer: Peer, clock: ManualClock
) -> None:
    peer.post("faults", {"rules": [{
        "method": "POST", "path": "/leads$", "status": 400, "times": 1,
        "body": {"data": None, "message": "Validation failed", "status": 400,
                 "errors": {"status": ["Status lost is not allowed for approved partners."],
                            "amount": ["Must be positive.", "Must be whole."]}},
    }]})
    (result,) = _connector(peer, clock).write("leads", "fields.refsync_id", [_lead("v1")])
    assert not result.ok and result.error is not None
    assert result.error.code == "VALIDATION_ERROR"
    assert result.error.fields == ("status", "amount")
    assert result.error.message == (
        "prm rejected the record: Validation failed (status: Status lost is not allowed for "
        "approved partners.; amount: Must be positive. Must be whole.)"
    )


def test_field_problems_already_in_the_message_are_not_repeated(
    peer: Peer, clock: ManualClock
) -> None:
    (result,) = _connector(peer, clock).write(
        "leads", "fields.refsync_id", [_lead("bad", email="nope")]
    )
    assert result.error is not None
    assert result.error.message.count("Not a valid email address.") == 1


def test_retries_and_waits_are_logged(
    peer: Peer, clock: ManualClock, logs: list[dict[str, Any]]
) -> None:
    peer.post("faults", {"rules": [{"path": "^/api/v2/", "status": 429, "times": 1,
                                    "headers": {"Retry-After": "4"}},
                                   {"path": "^/api/v2/", "status": 503, "times": 1}]})
    _connector(peer, clock).check()
    retries = [line for line in logs if line["event"] == "call retried"]
    assert [(line["status"], line["wait_s"], line["attempt"], line["log_level"])
            for line in retries] == [(429, 4.0, 1, "info"), (503, 2.0, 2, "warning")]
    assert {(line["system"], line["operation"]) for line in retries} == {
        ("prm", "GET /partnerships")}


def test_the_ca_bundle_setting_is_used(peer: Peer, clock: ManualClock, tmp_path: Any) -> None:
    bundle = tmp_path / "ca.pem"
    bundle.write_text("-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n")
    assert _connector(peer, clock, ca_bundle=bundle).session.verify == str(bundle)
