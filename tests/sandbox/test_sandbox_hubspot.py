"""The HubSpot emulator, driven over loopback HTTP by the real hubspot-api-client."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import hubspot
import hubspot.crm.associations.v4
import hubspot.crm.contacts
import hubspot.crm.deals
import hubspot.crm.objects
import hubspot.crm.properties
import pytest
import requests
from hubspot.crm.associations.v4 import (
    BatchInputPublicAssociationMultiPost,
    BatchInputPublicDefaultAssociationMultiPost,
    BatchInputPublicFetchAssociationsBatchRequest,
)
from hubspot.crm.objects import (
    BatchInputSimplePublicObjectBatchInput,
    BatchInputSimplePublicObjectBatchInputForCreate,
    BatchInputSimplePublicObjectBatchInputUpsert,
    BatchInputSimplePublicObjectId,
    BatchReadInputSimplePublicObjectId,
    PublicObjectSearchRequest,
    SimplePublicObjectBatchInput,
    SimplePublicObjectBatchInputForCreate,
    SimplePublicObjectBatchInputUpsert,
    SimplePublicObjectInput,
    SimplePublicObjectInputForCreate,
)

from refsync.sandbox.core import build_app
from refsync.sandbox.hubspot import PARTIAL_FAILURE_MARKER, HubSpotEmulator
from refsync.sandbox.hubspot.clock import WriteClock
from refsync.sandbox.server import SandboxServer

TOKEN = "pat-sandbox-refsync"
# each API package of the client raises its own ApiException class
ApiException = (
    hubspot.crm.contacts.ApiException,
    hubspot.crm.deals.ApiException,
    hubspot.crm.objects.ApiException,
    hubspot.crm.properties.ApiException,
    hubspot.crm.associations.v4.ApiException,
)


class FakeTime:
    """A clock the tests move by hand (used for both wall and monotonic time)."""

    def __init__(self, start: float) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


WALL = FakeTime(1_767_225_600.0)  # 2026-01-01T00:00:00Z
MONOTONIC = FakeTime(1_000.0)
DEFAULTS: dict[str, Any] = {
    "enforce_rate_limits": False, "ten_secondly_max": 190, "daily_max": 500_000,
    "search_per_second": 5, "daily_used": 0, "search_lag_ms": 0, "oauth_token_lifetime_s": 1800,
}


@pytest.fixture(scope="module")
def server() -> Iterator[SandboxServer]:
    emulator = HubSpotEmulator(now=WALL, monotonic=MONOTONIC)
    with SandboxServer(build_app(emulator)) as running:
        yield running


@pytest.fixture
def emulator(server: SandboxServer) -> HubSpotEmulator:
    em = server.app.state.emulator
    assert isinstance(em, HubSpotEmulator)
    em.reset()
    em.configure(DEFAULTS)
    return em


@pytest.fixture
def client(server: SandboxServer, emulator: HubSpotEmulator) -> Any:
    return hubspot.Client.create(access_token=TOKEN, host=server.url)


def body_of(exc: Any) -> dict[str, Any]:
    return json.loads(exc.body)


def seed_contacts(emulator: HubSpotEmulator, count: int, **extra: str) -> None:
    emulator.seed({"contacts": [
        {"email": f"person{i:05d}@example.com", "firstname": f"First{i}", **extra}
        for i in range(count)
    ]})


# ------------------------------------------------------------------ reading
def test_list_pages_through_every_record_once_with_the_after_cursor(
    emulator: HubSpotEmulator, client: Any
) -> None:
    seed_contacts(emulator, 250)
    seen: list[str] = []
    after = None
    pages = 0
    while True:
        page = client.crm.contacts.basic_api.get_page(limit=100, after=after,
                                                       properties=["email", "jobtitle"])
        pages += 1
        seen.extend(r.id for r in page.results)
        if page.paging is None:
            break
        after = page.paging.next.after
    assert pages == 3
    assert len(seen) == len(set(seen)) == 250
    assert seen == sorted(seen, key=int)
    first = client.crm.contacts.basic_api.get_page(limit=1, properties=["email", "jobtitle"])
    assert first.results[0].properties == {
        "email": "person00000@example.com", "jobtitle": None, "hs_object_id": seen[0]}
    with pytest.raises(ApiException) as too_many:
        client.crm.contacts.basic_api.get_page(limit=101)
    assert too_many.value.status == 400
    assert body_of(too_many.value)["category"] == "VALIDATION_ERROR"


def test_get_by_id_and_by_unique_id_property(emulator: HubSpotEmulator, client: Any) -> None:
    emulator.seed({"contacts": [{"email": "ada@example.com", "refsync_id": "rs-1"}]})
    record_id = emulator.records("contacts")[0]["id"]
    by_id = client.crm.contacts.basic_api.get_by_id(record_id, properties=["refsync_id"])
    assert by_id.properties["refsync_id"] == "rs-1"
    by_ref = client.crm.contacts.basic_api.get_by_id("rs-1", id_property="refsync_id")
    assert by_ref.id == record_id
    with pytest.raises(ApiException) as missing:
        client.crm.contacts.basic_api.get_by_id("999")
    assert missing.value.status == 404
    body = body_of(missing.value)
    assert body["status"] == "error" and body["category"] == "OBJECT_NOT_FOUND"
    assert body["correlationId"]
    with pytest.raises(ApiException) as not_unique:
        client.crm.contacts.basic_api.get_by_id("Ada", id_property="firstname")
    assert not_unique.value.status == 400


# ------------------------------------------------------------------ writing
def test_create_update_archive_maintain_timestamps(emulator: HubSpotEmulator, client: Any) -> None:
    created = client.crm.contacts.basic_api.create(SimplePublicObjectInputForCreate(
        properties={"email": "Grace@Example.com", "lifecyclestage": "lead"}))
    props = created.properties
    assert props["email"] == "grace@example.com"
    assert props["createdate"] == props["lastmodifieddate"]
    assert props["createdate"].startswith("2026-01-01T00:00:00.") and props["createdate"][-1] == "Z"
    updated = client.crm.contacts.basic_api.update(
        created.id, SimplePublicObjectInput(properties={"jobtitle": "CTO"}))
    assert updated.properties["lastmodifieddate"] > props["lastmodifieddate"]
    stored = emulator.records("contacts")[0]["properties"]
    assert stored["hs_lastmodifieddate"] == stored["lastmodifieddate"]
    assert stored["createdate"] == props["createdate"]
    client.crm.contacts.basic_api.archive(created.id)
    assert client.crm.contacts.basic_api.get_page().results == []
    archived = client.crm.contacts.basic_api.get_page(archived=True)
    assert [r.id for r in archived.results] == [created.id]
    assert archived.results[0].archived is True
    assert emulator.records("contacts")[0]["archived"] is True


def test_invalid_option_is_a_validation_error_with_hubspot_body(client: Any) -> None:
    with pytest.raises(ApiException) as bad:
        client.crm.contacts.basic_api.create(SimplePublicObjectInputForCreate(
            properties={"email": "x@example.com", "lifecyclestage": "hot"}))
    assert bad.value.status == 400
    body = body_of(bad.value)
    assert body["category"] == "VALIDATION_ERROR"
    assert body["message"].startswith("Property values were not valid: [")
    assert body["errors"][0]["code"] == "INVALID_OPTION"
    assert body["errors"][0]["in"] == "lifecyclestage"
    with pytest.raises(ApiException) as unknown:
        client.crm.contacts.basic_api.create(SimplePublicObjectInputForCreate(
            properties={"favourite_colour": "green"}))
    assert body_of(unknown.value)["errors"][0]["code"] == "PROPERTY_DOESNT_EXIST"


def test_duplicate_unique_value_on_create_is_a_409_conflict(client: Any) -> None:
    first = client.crm.contacts.basic_api.create(
        SimplePublicObjectInputForCreate(properties={"email": "dup@example.com"}))
    with pytest.raises(ApiException) as conflict:
        client.crm.contacts.basic_api.create(
            SimplePublicObjectInputForCreate(properties={"email": "DUP@example.com"}))
    assert conflict.value.status == 409
    body = body_of(conflict.value)
    assert body["category"] == "CONFLICT"
    assert body["message"] == f"Contact already exists. Existing ID: {first.id}"


# ------------------------------------------------------------------- search
@pytest.fixture
def small_crm(emulator: HubSpotEmulator) -> dict[str, str]:
    emulator.seed({"deals": [
        {"dealname": "Alpha Rollout", "amount": "100", "dealstage": "qualifiedtobuy",
         "closedate": "2026-02-01T00:00:00Z"},
        {"dealname": "Beta Expansion", "amount": "250.5", "dealstage": "closedwon",
         "closedate": "2026-03-01T00:00:00Z"},
        {"dealname": "Gamma Pilot", "dealstage": "closedlost"},
    ]})
    return {r["properties"]["dealname"].split()[0]: r["id"] for r in emulator.records("deals")}


@pytest.mark.parametrize(("flt", "expected"), [
    ({"propertyName": "dealstage", "operator": "EQ", "value": "CLOSEDWON"}, ["Beta"]),
    ({"propertyName": "dealstage", "operator": "NEQ", "value": "closedwon"}, ["Alpha", "Gamma"]),
    ({"propertyName": "amount", "operator": "LT", "value": "250.5"}, ["Alpha"]),
    ({"propertyName": "amount", "operator": "LTE", "value": "250.5"}, ["Alpha", "Beta"]),
    ({"propertyName": "amount", "operator": "GT", "value": "100"}, ["Beta"]),
    ({"propertyName": "amount", "operator": "GTE", "value": "100"}, ["Alpha", "Beta"]),
    ({"propertyName": "closedate", "operator": "BETWEEN", "value": "1769904000000",
      "highValue": "2026-02-15T00:00:00Z"}, ["Alpha"]),
    ({"propertyName": "dealstage", "operator": "IN", "values": ["closedwon", "closedlost"]},
     ["Beta", "Gamma"]),
    ({"propertyName": "dealstage", "operator": "NOT_IN", "values": ["closedwon"]},
     ["Alpha", "Gamma"]),
    ({"propertyName": "amount", "operator": "HAS_PROPERTY"}, ["Alpha", "Beta"]),
    ({"propertyName": "amount", "operator": "NOT_HAS_PROPERTY"}, ["Gamma"]),
    ({"propertyName": "dealname", "operator": "CONTAINS_TOKEN", "value": "pilot"}, ["Gamma"]),
    ({"propertyName": "dealname", "operator": "CONTAINS_TOKEN", "value": "*ion"}, ["Beta"]),
])
def test_search_operators(
    client: Any, small_crm: dict[str, str], flt: dict[str, Any], expected: list[str]
) -> None:
    found = client.crm.deals.search_api.do_search(PublicObjectSearchRequest(
        filter_groups=[{"filters": [flt]}], limit=10))
    assert sorted(r.id for r in found.results) == sorted(small_crm[n] for n in expected)
    assert found.total == len(expected)


def test_search_or_groups_sorts_and_pages(client: Any, small_crm: dict[str, str]) -> None:
    request = PublicObjectSearchRequest(
        filter_groups=[
            {"filters": [{"propertyName": "dealstage", "operator": "EQ", "value": "closedwon"}]},
            {"filters": [{"propertyName": "dealstage", "operator": "EQ",
                          "value": "qualifiedtobuy"}]},
        ],
        sorts=[{"propertyName": "amount", "direction": "DESCENDING"}],
        properties=["dealname"], limit=1)
    first = client.crm.deals.search_api.do_search(request)
    assert first.total == 2
    assert [r.id for r in first.results] == [small_crm["Beta"]]
    assert first.results[0].properties["dealname"] == "Beta Expansion"
    request.after = first.paging.next.after
    second = client.crm.deals.search_api.do_search(request)
    assert [r.id for r in second.results] == [small_crm["Alpha"]]
    assert second.paging is None


@pytest.mark.parametrize(("groups", "limit"), [
    ([{"filters": [{"propertyName": "amount", "operator": "HAS_PROPERTY"}]}] * 6, 10),
    ([{"filters": [{"propertyName": "amount", "operator": "HAS_PROPERTY"}] * 11}], 10),
    ([{"filters": [{"propertyName": "amount", "operator": "HAS_PROPERTY"}] * 9}] * 3, 10),
    ([], 201),
    ([{"filters": [{"propertyName": "no_such_property", "operator": "HAS_PROPERTY"}]}], 10),
])
def test_search_refuses_requests_over_the_limits(
    client: Any, groups: list[Any], limit: int
) -> None:
    with pytest.raises(ApiException) as refused:
        client.crm.deals.search_api.do_search(
            PublicObjectSearchRequest(filter_groups=groups, limit=limit))
    assert refused.value.status == 400
    assert body_of(refused.value)["category"] == "VALIDATION_ERROR"


def test_search_cannot_page_past_10000_results(emulator: HubSpotEmulator, client: Any) -> None:
    seed_contacts(emulator, 10_050)
    request = PublicObjectSearchRequest(
        filter_groups=[{"filters": [{"propertyName": "email", "operator": "HAS_PROPERTY"}]}],
        sorts=[{"propertyName": "hs_object_id", "direction": "ASCENDING"}], limit=200)
    read = 0
    while True:
        try:
            page = client.crm.contacts.search_api.do_search(request)
        except ApiException as exc:
            failure = exc
            break
        assert page.total == 10_050
        read += len(page.results)
        request.after = page.paging.next.after
    assert read == 10_000
    assert request.after == "10000"
    assert failure.status == 400
    body = body_of(failure)
    assert body["status"] == "error"
    assert body["category"] == "VALIDATION_ERROR"
    assert "10000" in body["message"]


def test_search_results_lag_writes_when_configured(
    emulator: HubSpotEmulator, client: Any
) -> None:
    emulator.configure({"search_lag_ms": 3000})
    client.crm.contacts.basic_api.create(
        SimplePublicObjectInputForCreate(properties={"email": "late@example.com"}))
    request = PublicObjectSearchRequest(filter_groups=[{"filters": [
        {"propertyName": "email", "operator": "EQ", "value": "late@example.com"}]}])
    assert client.crm.contacts.search_api.do_search(request).total == 0
    WALL.advance(3)
    assert client.crm.contacts.search_api.do_search(request).total == 1


# -------------------------------------------------------------------- batch
def test_batch_upsert_creates_then_updates_by_refsync_id(
    emulator: HubSpotEmulator, client: Any
) -> None:
    def upsert(status: str) -> Any:
        return client.crm.contacts.batch_api.upsert(BatchInputSimplePublicObjectBatchInputUpsert(
            inputs=[SimplePublicObjectBatchInputUpsert(
                id=f"rs-{i}", id_property="refsync_id",
                properties={"email": f"u{i}@example.com", "refsync_status": status})
                for i in range(3)]))

    first = upsert("submitted")
    assert {r.new for r in first.results} == {True}
    assert len({r.updated_at for r in first.results}) == 1
    second = upsert("accepted")
    assert {r.new for r in second.results} == {False}
    assert [r.id for r in second.results] == [r.id for r in first.results]
    assert second.results[0].updated_at > first.results[0].updated_at
    stored = emulator.records("contacts")
    assert len(stored) == 3
    assert {r["properties"]["refsync_status"] for r in stored} == {"accepted"}


def test_batch_upsert_reports_failed_inputs_in_a_207(client: Any) -> None:
    result = client.crm.contacts.batch_api.upsert(BatchInputSimplePublicObjectBatchInputUpsert(
        inputs=[
            SimplePublicObjectBatchInputUpsert(id="ok-1", id_property="refsync_id",
                                               properties={"refsync_status": "won"}),
            SimplePublicObjectBatchInputUpsert(id="bad-1", id_property="refsync_id",
                                               object_write_trace_id="trace-7",
                                               properties={"refsync_status": "maybe"}),
        ]))
    assert type(result).__name__ == "BatchResponseSimplePublicUpsertObjectWithErrors"
    assert result.num_errors == 1
    error = result.errors[0]
    assert error.category == "VALIDATION_ERROR"
    assert error.context == {"objectWriteTraceId": ["trace-7"], "ids": ["bad-1"]}
    assert error.errors[0].code == "INVALID_OPTION"
    assert [r.properties["refsync_status"] for r in result.results] == ["won"]


@pytest.mark.parametrize("inputs", [
    [{"id": "a", "idProperty": "firstname", "properties": {}}],
    [{"id": "a", "idProperty": "refsync_id", "properties": {}}] * 2,
    [{"id": str(i), "idProperty": "refsync_id", "properties": {}} for i in range(101)],
])
def test_batch_upsert_refuses_bad_batches_whole(
    server: SandboxServer, emulator: HubSpotEmulator, inputs: list[dict[str, Any]]
) -> None:
    answer = requests.post(f"{server.url}/crm/v3/objects/contacts/batch/upsert",
                           json={"inputs": inputs},
                           headers={"Authorization": f"Bearer {TOKEN}"}, timeout=5)
    assert answer.status_code == 400
    assert answer.json()["category"] == "VALIDATION_ERROR"
    assert emulator.records("contacts") == []


def test_batch_create_partial_success_needs_object_write_trace_ids(
    emulator: HubSpotEmulator, client: Any
) -> None:
    def inputs(traced: bool) -> BatchInputSimplePublicObjectBatchInputForCreate:
        rows = [{"email": "one@example.com"}, {"email": "not-an-email"}]
        return BatchInputSimplePublicObjectBatchInputForCreate(inputs=[
            SimplePublicObjectBatchInputForCreate(
                properties=row, object_write_trace_id=f"t{i}" if traced else None)
            for i, row in enumerate(rows)])

    with pytest.raises(ApiException) as whole:
        client.crm.contacts.batch_api.create(inputs(traced=False))
    assert whole.value.status == 400
    assert body_of(whole.value)["errors"][0]["code"] == "INVALID_EMAIL"
    assert emulator.records("contacts") == []
    partial = client.crm.contacts.batch_api.create(inputs(traced=True))
    assert partial.num_errors == 1
    assert partial.errors[0].context == {"objectWriteTraceId": ["t1"]}
    assert [r.properties["email"] for r in partial.results] == ["one@example.com"]


def test_batch_read_update_archive(emulator: HubSpotEmulator, client: Any) -> None:
    seed_contacts(emulator, 3)
    ids = [r["id"] for r in emulator.records("contacts")]
    read = client.crm.contacts.batch_api.read(BatchReadInputSimplePublicObjectId(
        inputs=[{"id": ids[0]}, {"id": "424242"}], properties=["firstname"]))
    assert [r.properties["firstname"] for r in read.results] == ["First0"]
    assert read.errors[0].category == "OBJECT_NOT_FOUND"
    assert read.errors[0].context == {"ids": ["424242"]}
    updated = client.crm.contacts.batch_api.update(BatchInputSimplePublicObjectBatchInput(
        inputs=[SimplePublicObjectBatchInput(id=i, properties={"jobtitle": "VP"})
                for i in ids[:2]]))
    assert {r.properties["jobtitle"] for r in updated.results} == {"VP"}
    assert len({r.properties["lastmodifieddate"] for r in updated.results}) == 1
    client.crm.contacts.batch_api.archive(BatchInputSimplePublicObjectId(
        inputs=[{"id": ids[2]}]))
    assert [r["archived"] for r in emulator.records("contacts")] == [False, False, True]


# --------------------------------------------------------------- properties
def test_properties_api_describes_types_options_and_uniqueness(client: Any) -> None:
    contact_props = {p.name: p for p in client.crm.properties.core_api.get_all("contacts").results}
    assert contact_props["refsync_id"].has_unique_value is True
    assert contact_props["email"].has_unique_value is True
    status = contact_props["refsync_status"]
    assert status.type == "enumeration"
    assert [o.value for o in status.options] == [
        "submitted", "accepted", "qualified", "opportunity", "won", "lost", "rejected",
        "duplicate", "expired"]
    assert contact_props["hs_lastmodifieddate"].modification_metadata.read_only_value is True
    assert contact_props["refsync_partner_key"].modification_metadata.read_only_value is False
    stage = client.crm.properties.core_api.get_by_name("deals", "dealstage")
    assert "closedwon" in [o.value for o in stage.options]
    assert stage.field_type == "radio"
    with pytest.raises(ApiException) as missing:
        client.crm.properties.core_api.get_by_name("deals", "nope")
    assert missing.value.status == 404


# ------------------------------------------------------------- associations
def test_associations_are_created_and_read_back_both_ways(
    emulator: HubSpotEmulator, client: Any
) -> None:
    emulator.seed({"contacts": [{"email": "c1@example.com"}, {"email": "c2@example.com"}],
                   "companies": [{"name": "Acme"}], "deals": [{"dealname": "Big"}]})
    c1, c2 = (r["id"] for r in emulator.records("contacts"))
    company = emulator.records("companies")[0]["id"]
    deal = emulator.records("deals")[0]["id"]
    client.crm.associations.v4.basic_api.create_default("contacts", c1, "companies", company)
    client.crm.associations.v4.batch_api.create("deals", "contacts",
        BatchInputPublicAssociationMultiPost(inputs=[
            {"from": {"id": deal}, "to": {"id": c},
             "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 3}]}
            for c in (c1, c2)]))
    to_company = client.crm.associations.v4.basic_api.get_page("contacts", c1, "companies")
    assert [(r.to_object_id, r.association_types[0].type_id) for r in to_company.results] == [
        (company, 279)]
    back = client.crm.associations.v4.basic_api.get_page("companies", company, "contacts")
    assert [(r.to_object_id, r.association_types[0].type_id) for r in back.results] == [
        (c1, 280)]
    of_deal = client.crm.associations.v4.basic_api.get_page("deals", deal, "contacts")
    assert [r.to_object_id for r in of_deal.results] == [c1, c2]
    to_deal = client.crm.associations.v4.basic_api.get_page("contacts", c2, "deals")
    assert to_deal.results[0].association_types[0].type_id == 4


def test_batch_default_associations_and_batch_read(
    emulator: HubSpotEmulator, client: Any
) -> None:
    emulator.seed({"contacts": [{"email": "c@example.com"}], "companies": [{"name": "Acme"}]})
    contact = emulator.records("contacts")[0]["id"]
    company = emulator.records("companies")[0]["id"]
    made = client.crm.associations.v4.batch_api.create_default(
        "companies", "contacts", BatchInputPublicDefaultAssociationMultiPost(
            inputs=[{"from": {"id": company}, "to": {"id": contact}}]))
    assert made.results[0].association_spec.association_type_id == 280
    read = client.crm.associations.v4.batch_api.get_page(
        "contacts", "companies", BatchInputPublicFetchAssociationsBatchRequest(
            inputs=[{"id": contact}]))
    assert read.results[0].to[0].to_object_id == company


# ------------------------------------------------------- auth and the limits
def test_unknown_token_gets_hubspots_401(server: SandboxServer, emulator: HubSpotEmulator) -> None:
    stranger = hubspot.Client.create(access_token="pat-na1-wrong", host=server.url)
    with pytest.raises(ApiException) as denied:
        stranger.crm.contacts.basic_api.get_page()
    assert denied.value.status == 401
    assert body_of(denied.value)["category"] == "INVALID_AUTHENTICATION"


def test_oauth_refresh_issues_tokens_that_expire(
    server: SandboxServer, emulator: HubSpotEmulator
) -> None:
    emulator.configure({"oauth_token_lifetime_s": 60})
    creds = emulator.credentials()
    issued = requests.post(f"{server.url}/oauth/v1/token", data={
        "grant_type": "refresh_token", "client_id": creds["client_id"],
        "client_secret": creds["client_secret"], "refresh_token": creds["refresh_token"],
    }, timeout=5)
    assert issued.status_code == 200
    assert issued.json()["expires_in"] == 60
    oauth = hubspot.Client.create(access_token=issued.json()["access_token"], host=server.url)
    _, status, headers = oauth.crm.contacts.basic_api.get_page_with_http_info()
    assert status == 200
    assert "X-HubSpot-RateLimit-Max" in headers
    assert "X-HubSpot-RateLimit-Daily" not in headers
    WALL.advance(61)
    with pytest.raises(ApiException) as expired:
        oauth.crm.contacts.basic_api.get_page()
    assert expired.value.status == 401
    assert body_of(expired.value)["category"] == "EXPIRED_AUTHENTICATION"
    refused = requests.post(f"{server.url}/oauth/v1/token", data={
        "grant_type": "refresh_token", "client_id": creds["client_id"],
        "client_secret": creds["client_secret"], "refresh_token": "stolen"}, timeout=5)
    assert refused.status_code == 400
    assert refused.json()["status"] == "BAD_REFRESH_TOKEN"


def test_ten_secondly_bucket_gives_429_with_usage_headers(
    emulator: HubSpotEmulator, client: Any
) -> None:
    emulator.configure({"enforce_rate_limits": True, "ten_secondly_max": 4})
    remaining = []
    for _ in range(4):
        _, _, headers = client.crm.contacts.basic_api.get_page_with_http_info()
        remaining.append(headers["X-HubSpot-RateLimit-Remaining"])
        assert headers["X-HubSpot-RateLimit-Max"] == "4"
        assert headers["X-HubSpot-RateLimit-Interval-Milliseconds"] == "10000"
        assert headers["X-HubSpot-RateLimit-Daily"] == "500000"
    assert remaining == ["3", "2", "1", "0"]
    with pytest.raises(ApiException) as limited:
        client.crm.contacts.basic_api.get_page()
    assert limited.value.status == 429
    body = body_of(limited.value)
    assert body["policyName"] == "TEN_SECONDLY_ROLLING"
    assert body["errorType"] == "RATE_LIMIT"
    assert limited.value.headers["X-HubSpot-RateLimit-Remaining"] == "0"
    assert limited.value.headers["X-HubSpot-RateLimit-Daily-Remaining"] == "499996"
    MONOTONIC.advance(10)
    assert client.crm.contacts.basic_api.get_page().results == []


def test_daily_limit_gives_the_daily_policy(emulator: HubSpotEmulator, client: Any) -> None:
    emulator.configure({"enforce_rate_limits": True, "daily_max": 1000, "daily_used": 999})
    _, _, headers = client.crm.contacts.basic_api.get_page_with_http_info()
    assert headers["X-HubSpot-RateLimit-Daily-Remaining"] == "0"
    with pytest.raises(ApiException) as limited:
        client.crm.contacts.basic_api.get_page()
    assert limited.value.status == 429
    assert body_of(limited.value)["policyName"] == "DAILY"


def test_search_has_its_own_per_second_limit(emulator: HubSpotEmulator, client: Any) -> None:
    emulator.configure({"enforce_rate_limits": True, "search_per_second": 2})
    request = PublicObjectSearchRequest(limit=1)
    client.crm.contacts.search_api.do_search(request)
    client.crm.contacts.search_api.do_search(request)
    client.crm.contacts.basic_api.get_page()
    with pytest.raises(ApiException) as limited:
        client.crm.contacts.search_api.do_search(request)
    assert limited.value.status == 429
    assert body_of(limited.value)["policyName"] == "SECONDLY"
    MONOTONIC.advance(1)
    client.crm.contacts.search_api.do_search(request)


# ------------------------------------------------------------ fault presets
def add_preset(server: SandboxServer, name: str, **overrides: Any) -> None:
    answer = requests.post(f"{server.url}/_sandbox/faults", json={"preset": name, **overrides},
                           timeout=5)
    assert answer.status_code == 200, answer.text


def test_preset_daily_limit(server: SandboxServer, client: Any) -> None:
    add_preset(server, "daily_limit")
    for _ in range(2):
        with pytest.raises(ApiException) as limited:
            client.crm.contacts.basic_api.get_page()
        assert limited.value.status == 429
        assert body_of(limited.value)["policyName"] == "DAILY"
        assert limited.value.headers["X-HubSpot-RateLimit-Daily-Remaining"] == "0"


def test_preset_rate_limit_burst(server: SandboxServer, client: Any) -> None:
    add_preset(server, "rate_limit_burst")
    for _ in range(3):
        with pytest.raises(ApiException) as limited:
            client.crm.contacts.basic_api.get_page()
        assert body_of(limited.value)["policyName"] == "TEN_SECONDLY_ROLLING"
        assert "X-HubSpot-RateLimit-Max" in limited.value.headers
    assert client.crm.contacts.basic_api.get_page().results == []


def test_preset_expired_token(server: SandboxServer, client: Any) -> None:
    add_preset(server, "expired_token")
    with pytest.raises(ApiException) as expired:
        client.crm.contacts.basic_api.get_page()
    assert expired.value.status == 401
    assert body_of(expired.value)["category"] == "EXPIRED_AUTHENTICATION"
    assert client.crm.contacts.basic_api.get_page().results == []


def test_preset_partial_batch_failure(
    server: SandboxServer, emulator: HubSpotEmulator, client: Any
) -> None:
    add_preset(server, "partial_batch_failure")
    result = client.crm.contacts.batch_api.upsert(BatchInputSimplePublicObjectBatchInputUpsert(
        inputs=[SimplePublicObjectBatchInputUpsert(
            id=ref, id_property="refsync_id", properties={"firstname": ref})
            for ref in ("good-1", f"{PARTIAL_FAILURE_MARKER}-2", "good-3")]))
    assert result.num_errors == 1
    assert result.errors[0].context == {"ids": [f"{PARTIAL_FAILURE_MARKER}-2"]}
    assert result.errors[0].errors[0].code == "INVALID_OPTION"
    assert [r.properties["firstname"] for r in result.results] == ["good-1", "good-3"]
    assert len(emulator.records("contacts")) == 2
    faults = requests.get(f"{server.url}/_sandbox/faults", timeout=5).json()
    assert faults["injected"] == {"partial_batch_failure": 1}


# ---------------------------------------------------------- seed and demo
def test_seed_creates_custom_objects_and_links(emulator: HubSpotEmulator, client: Any) -> None:
    counts = emulator.seed({
        "$properties": {"contacts": [{"name": "partner_tier", "type": "enumeration",
                                      "options": ["gold", "silver"]}]},
        "contacts": [{"properties": {"email": "p@example.com", "partner_tier": "gold"}}],
        "referral_programs": [{"name": "Spring", "refsync_id": "prog-1"}],
        "deals": [{"dealname": "Linked", "associations": [
            {"to": "contacts", "id": "p@example.com", "idProperty": "email"}]}],
    })
    assert counts == {"contacts": 1, "referral_programs": 1, "deals": 1}
    page = client.crm.objects.basic_api.get_page("referral_programs", properties=["name"])
    assert page.results[0].properties["name"] == "Spring"
    tier = client.crm.properties.core_api.get_by_name("contacts", "partner_tier")
    assert [o.value for o in tier.options] == ["gold", "silver"]
    deal = emulator.records("deals")[0]["id"]
    linked = client.crm.associations.v4.basic_api.get_page("deals", deal, "contacts")
    assert len(linked.results) == 1


def test_a_seed_with_one_bad_link_or_record_writes_nothing(
    server: SandboxServer, emulator: HubSpotEmulator, client: Any
) -> None:
    emulator.seed({"contacts": [{"email": "kept@example.com"}]})
    properties_before = {p.name for p in
                         client.crm.properties.core_api.get_all("contacts").results}

    def refused(payload: dict[str, Any], reason: str) -> None:
        response = requests.post(f"{server.url}/_sandbox/seed", json=payload, timeout=5)
        assert response.status_code == 400, response.text
        assert reason in response.json()["error"]

    links = [{"to": "contacts", "id": "kept@example.com", "idProperty": "firstname"}]
    refused({"$properties": {"contacts": [{"name": "partner_tier", "type": "string"}]},
             "referral_programs": [{"name": "Spring"}],
             "companies": [{"name": "Big Co"}],
             "deals": [{"dealname": "big", "associations": links}]},
            'Property "firstname" is not a unique identifier for contacts')
    refused({"deals": [{"dealname": "big", "associations": [
        {"to": "contacts", "id": "nobody@example.com", "idProperty": "email"}]}]},
            "resource not found")
    refused({"contacts": [{"email": "twice@example.com"}, {"email": "TWICE@example.com"}]},
            "contacts[1]: email 'twice@example.com' is already used by contacts[0]")
    refused({"companies": [{"name": "Fine"}], "contacts": [{"email": "not an address"}]},
            "contacts[0]:")

    assert [r["properties"]["email"] for r in emulator.records("contacts")] == [
        "kept@example.com"]
    assert emulator.records("deals") == [] and emulator.records("companies") == []
    with pytest.raises(KeyError):
        emulator.records("referral_programs")
    assert {p.name for p in client.crm.properties.core_api.get_all("contacts").results} \
        == properties_before

    # links to records of the same seed still resolve through a unique property
    counts = emulator.seed({"contacts": [{"email": "new@example.com"}],
                            "deals": [{"dealname": "linked", "associations": [
                                {"to": "contacts", "id": "NEW@example.com",
                                 "idProperty": "email"}]}]})
    assert counts == {"contacts": 1, "deals": 1}
    deal = emulator.records("deals")[0]["id"]
    linked = client.crm.associations.v4.basic_api.get_page("deals", deal, "contacts")
    assert len(linked.results) == 1


def test_simulate_moves_deals_deterministically(emulator: HubSpotEmulator) -> None:
    payload = {
        "contacts": [{"email": f"d{i}@example.com"} for i in range(6)],
        "deals": [{"dealname": f"D{i}", "dealstage": "contractsent", "associations": [
            {"to": "contacts", "id": f"d{i}@example.com", "idProperty": "email"}]}
            for i in range(6)] + [{"dealname": "Early", "dealstage": "appointmentscheduled"}],
    }
    emulator.seed(payload)
    outcome = emulator.simulate({"steps": 1})
    assert outcome["advanced"] == 1
    assert len(outcome["won"]) + len(outcome["lost"]) == 6
    assert outcome["won"] and outcome["lost"]
    deals = {r["id"]: r["properties"] for r in emulator.records("deals")}
    for deal_id in outcome["won"]:
        assert deals[deal_id]["dealstage"] == "closedwon"
        assert float(deals[deal_id]["amount"]) >= 1000
        assert deals[deal_id]["closedate"]
    customers = [r["properties"]["lifecyclestage"] for r in emulator.records("contacts")]
    assert customers.count("customer") == len(outcome["won"])
    emulator.reset()
    emulator.seed(payload)
    assert emulator.simulate({"steps": 1}) == outcome


def test_runner_serves_hubspot_and_partnerstack_with_demo_data(tmp_path: Any) -> None:
    from refsync.sandbox.runner import start_sandbox

    with start_sandbox(seed="demo", ports={"salesforce": 0, "hubspot": 0, "partnerstack": 0},
                       workdir=tmp_path) as sandbox:
        hs = hubspot.Client.create(access_token=sandbox.credentials["hubspot"]["access_token"],
                                   host=sandbox.urls["hubspot"])
        assert hs.crm.deals.basic_api.get_page(limit=100).results
        ps = sandbox.credentials["partnerstack"]
        leads = requests.get(f"{sandbox.urls['partnerstack']}/api/v2/leads",
                             auth=(ps["public_key"], ps["secret_key"]), timeout=5)
        assert leads.status_code == 200 and leads.json()["data"]["items"]


def test_write_clock_never_repeats_or_goes_back() -> None:
    wall = FakeTime(100.0)
    clock = WriteClock(wall)
    first = clock.tick()
    wall.advance(-5)
    second = clock.tick()
    wall.advance(60)
    third = clock.tick()
    assert first == 100_000 and second == 100_001 and third == 155_000
