"""The Salesforce emulator, driven over TLS by the real simple-salesforce client."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest
import requests
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import (
    SalesforceExpiredSession,
    SalesforceGeneralError,
    SalesforceMalformedRequest,
    SalesforceMoreThanOneRecord,
    SalesforceRefusedRequest,
    SalesforceResourceNotFound,
)

from refsync.sandbox.core import build_app
from refsync.sandbox.salesforce import SalesforceEmulator
from refsync.sandbox.salesforce.errors import ApiError
from refsync.sandbox.salesforce.schema import standard_objects
from refsync.sandbox.salesforce.soql import compile_query
from refsync.sandbox.server import SandboxServer
from refsync.sandbox.tls import make_tls_material

VERSION = "62.0"
KEY, SECRET = "refsync-sandbox-key", "refsync-sandbox-secret"


class FakeClock:
    """A clock the tests move by hand."""

    def __init__(self) -> None:
        self.now = datetime(2026, 3, 2, 9, 0, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


class Sandbox:
    """The running emulator plus helpers for its control API."""

    def __init__(self, emulator: SalesforceEmulator, server: SandboxServer, ca: str,
                 clock: FakeClock) -> None:
        self.emulator = emulator
        self.server = server
        self.url = server.url
        self.clock = clock
        self.http = requests.Session()
        self.http.verify = ca
        # requests lets REQUESTS_CA_BUNDLE override session.verify unless trust_env is off.
        self.http.trust_env = False

    def control(self, method: str, path: str, body: Any = None) -> Any:
        response = self.http.request(method, f"{self.url}/_sandbox/{path}", json=body, timeout=30)
        assert response.status_code == 200, response.text
        return response.json()

    def token(self) -> dict[str, Any]:
        response = self.http.post(f"{self.url}/services/oauth2/token", data={
            "grant_type": "client_credentials", "client_id": KEY, "client_secret": SECRET})
        assert response.status_code == 200, response.text
        return response.json()

    def client(self) -> Salesforce:
        token = self.token()
        return Salesforce(instance_url=token["instance_url"], session_id=token["access_token"],
                          session=self.http, version=VERSION)

    def calls(self, route: str) -> int:
        return int(self.control("GET", "calls")["by_route"].get(route, 0))


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    tls = make_tls_material(tmp_path_factory.mktemp("tls"))
    clock = FakeClock()
    emulator = SalesforceEmulator(clock=clock)
    server = SandboxServer(build_app(emulator), certfile=tls.certfile, keyfile=tls.keyfile)
    server.start()
    sandbox = Sandbox(emulator, server, str(tls.ca_bundle), clock)
    yield sandbox
    sandbox.http.close()
    server.stop()


@pytest.fixture
def sandbox(running: Sandbox) -> Sandbox:
    running.control("POST", "reset")
    return running


@pytest.fixture
def sf(sandbox: Sandbox) -> Salesforce:
    return sandbox.client()


def lead(i: int, **extra: Any) -> dict[str, Any]:
    return {"FirstName": f"Ada{i}", "LastName": f"Lovelace{i}", "Company": f"Analytical {i}",
            "Email": f"ada{i}@example.com", **extra}


def upsert_record(refsync_id: str, **fields: Any) -> dict[str, Any]:
    return {"attributes": {"type": "Lead"}, "Refsync_Id__c": refsync_id, **fields}


# -- OAuth ------------------------------------------------------------------------------------

def test_client_credentials_token_and_wrong_secret(sandbox: Sandbox) -> None:
    token = sandbox.token()
    assert token["token_type"] == "Bearer"
    assert token["instance_url"] == sandbox.url
    refused = sandbox.http.post(f"{sandbox.url}/services/oauth2/token", data={
        "grant_type": "client_credentials", "client_id": KEY, "client_secret": "wrong"})
    assert refused.status_code == 400
    assert refused.json()["error"] == "invalid_client"


def test_jwt_bearer_grant_checks_issuer(sandbox: Sandbox) -> None:
    exp = int(sandbox.clock.now.timestamp()) + 300
    good = jwt.encode({"iss": KEY, "sub": "integration@example.com", "aud": "x", "exp": exp},
                      "any-key-material-at-least-32-bytes!", algorithm="HS256")
    bad = jwt.encode({"iss": "someone-else", "sub": "u", "exp": exp},
                     "any-key-material-at-least-32-bytes!", algorithm="HS256")
    grant = "urn:ietf:params:oauth:grant-type:jwt-bearer"
    url = f"{sandbox.url}/services/oauth2/token"
    accepted = sandbox.http.post(url, data={"grant_type": grant, "assertion": good})
    assert accepted.status_code == 200 and accepted.json()["access_token"]
    refused = sandbox.http.post(url, data={"grant_type": grant, "assertion": bad})
    assert refused.status_code == 400
    assert refused.json()["error"] == "invalid_client_id"


def test_expired_token_gives_invalid_session_id(sandbox: Sandbox, sf: Salesforce) -> None:
    assert sf.query("SELECT COUNT() FROM Lead")["totalSize"] == 0
    sandbox.clock.advance(hours=2, seconds=1)
    with pytest.raises(SalesforceExpiredSession) as caught:
        sf.query("SELECT COUNT() FROM Lead")
    assert caught.value.content == [
        {"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}]


def test_unknown_token_is_refused(sandbox: Sandbox) -> None:
    sf = Salesforce(instance_url=sandbox.url, session_id="00Dforged!token", session=sandbox.http,
                    version=VERSION)
    with pytest.raises(SalesforceExpiredSession):
        sf.query("SELECT Id FROM Lead")


# -- reading ----------------------------------------------------------------------------------

def test_query_all_iter_reads_4500_leads_in_pages(sandbox: Sandbox, sf: Salesforce) -> None:
    sandbox.control("POST", "seed", {"Lead": [lead(i) for i in range(4500)]})
    soql = "SELECT Id, Email, SystemModstamp FROM Lead ORDER BY SystemModstamp, Id"
    emails = [r["Email"] for r in sf.query_all_iter(soql)]
    assert len(emails) == 4500 and len(set(emails)) == 4500
    assert sandbox.calls("GET /services/data/{version}/query") == 1
    assert sandbox.calls("GET /services/data/{version}/query/{locator}") == 2
    assert sf.api_usage["api-usage"].used == 3

    small = list(sf.query_all_iter(soql, headers={"Sforce-Query-Options": "batchSize=500"}))
    assert len(small) == 4500
    assert sandbox.calls("GET /services/data/{version}/query/{locator}") == 2 + 8


def test_query_page_shape_and_count(sandbox: Sandbox, sf: Salesforce) -> None:
    sandbox.control("POST", "seed", {"Lead": [lead(i) for i in range(2500)]})
    page = sf.query("SELECT Id, LastName FROM Lead WHERE LastName LIKE 'lovelace1%'")
    assert page["totalSize"] == 1111 and page["done"] is True
    first = page["records"][0]
    assert first["attributes"]["type"] == "Lead"
    assert first["attributes"]["url"] == f"/services/data/v{VERSION}/sobjects/Lead/{first['Id']}"
    assert list(first) == ["attributes", "Id", "LastName"]
    big = sf.query("SELECT Id FROM Lead")
    assert big["done"] is False and len(big["records"]) == 2000
    assert big["nextRecordsUrl"].startswith(f"/services/data/v{VERSION}/query/")
    assert sf.query("SELECT COUNT() FROM Lead") == {"totalSize": 2500, "done": True,
                                                    "records": []}


def test_twenty_five_thousand_leads_page_by_modstamp(sandbox: Sandbox, sf: Salesforce) -> None:
    sandbox.control("POST", "seed", {"Lead": [lead(i) for i in range(25_000)]})
    ids = [r["Id"] for r in sf.query_all_iter(
        "SELECT Id FROM Lead WHERE SystemModstamp >= 2020-01-01T00:00:00Z "
        "ORDER BY SystemModstamp, Id")]
    assert len(ids) == 25_000 and ids == sorted(ids)
    assert sandbox.calls("GET /services/data/{version}/query/{locator}") == 12


def test_soql_errors_have_salesforce_bodies(sandbox: Sandbox, sf: Salesforce) -> None:
    with pytest.raises(SalesforceMalformedRequest) as bad_field:
        sf.query("SELECT Id, Nope__c FROM Lead")
    assert bad_field.value.content[0]["errorCode"] == "INVALID_FIELD"
    assert "No such column 'Nope__c' on entity 'Lead'" in bad_field.value.content[0]["message"]
    with pytest.raises(SalesforceMalformedRequest) as malformed:
        sf.query("SELECT Id FROM Lead WHERE")
    assert malformed.value.content[0]["errorCode"] == "MALFORMED_QUERY"
    with pytest.raises(SalesforceMalformedRequest) as bad_type:
        sf.query("SELECT Id FROM Widget__c")
    assert bad_type.value.content[0]["errorCode"] == "INVALID_TYPE"


def test_query_all_sees_deleted_records(sandbox: Sandbox, sf: Salesforce) -> None:
    sandbox.control("POST", "seed", {"Lead": [lead(1), lead(2)]})
    doomed = sf.query("SELECT Id FROM Lead WHERE Email = 'ADA1@example.com'")["records"][0]["Id"]
    assert sf.Lead.delete(doomed) == 204
    assert [r["Email"] for r in sf.query_all_iter("SELECT Email FROM Lead")] == [
        "ada2@example.com"]
    everything = {r["Id"]: r["IsDeleted"] for r in sf.query_all_iter(
        "SELECT Id, IsDeleted FROM Lead", include_deleted=True)}
    assert everything[doomed] is True and len(everything) == 2
    flagged = sandbox.control("GET", "records/Lead")
    assert [r["IsDeleted"] for r in flagged if r["Id"] == doomed] == [True]
    with pytest.raises(SalesforceResourceNotFound) as gone:
        sf.Lead.get(doomed)
    assert gone.value.content[0]["errorCode"] == "ENTITY_IS_DELETED"


def test_updated_and_deleted_windows(sandbox: Sandbox, sf: Salesforce) -> None:
    sandbox.control("POST", "seed", {"Lead": [lead(1), lead(2), lead(3)]})
    ids = [r["Id"] for r in sf.query("SELECT Id FROM Lead ORDER BY Id")["records"]]
    start = sandbox.clock.now + timedelta(minutes=1)
    sandbox.clock.advance(minutes=5)
    sf.Lead.update(ids[0], {"Title": "CTO"})
    sf.Lead.delete(ids[1])
    end = sandbox.clock.now + timedelta(minutes=1)
    updated = sf.Lead.updated(start, end)
    assert updated["ids"] == [ids[0]]
    deleted = sf.Lead.deleted(start, end)
    assert [d["id"] for d in deleted["deletedRecords"]] == [ids[1]]
    deleted_at = deleted["deletedRecords"][0]["deletedDate"]
    assert deleted_at.startswith(sandbox.clock.now.strftime("%Y-%m-%dT%H:%M:%S"))


def test_describe_reports_fields_and_custom_metadata(sandbox: Sandbox, sf: Salesforce) -> None:
    sandbox.control("POST", "seed", {"_metadata": {"Lead": {"fields": [
        {"name": "Partner_Tier__c", "type": "picklist", "picklistValues": ["Gold", "Silver"],
         "restrictedPicklist": True}]}}})
    fields = {f["name"]: f for f in sf.Lead.describe()["fields"]}
    status = fields["Status"]
    assert status["type"] == "picklist" and status["restrictedPicklist"] is True
    assert [p["value"] for p in status["picklistValues"]] == [
        "Open - Not Contacted", "Working - Contacted", "Closed - Converted",
        "Closed - Not Converted"]
    assert all(p["active"] for p in status["picklistValues"])
    refsync_id = fields["Refsync_Id__c"]
    assert (refsync_id["type"], refsync_id["length"], refsync_id["externalId"],
            refsync_id["unique"]) == ("string", 36, True, True)
    assert fields["LastName"]["nillable"] is False
    assert fields["SystemModstamp"]["updateable"] is False
    assert fields["Partner_Tier__c"]["custom"] is True
    stages = {f["name"]: f for f in sf.Opportunity.describe()["fields"]}["StageName"]
    assert "Closed Won" in [p["value"] for p in stages["picklistValues"]]
    names = [o["name"] for o in sf.describe()["sobjects"]]
    assert {"Lead", "Contact", "Account", "Opportunity"} <= set(names)


def test_limits_and_daily_quota_exhaustion(sandbox: Sandbox, sf: Salesforce) -> None:
    sandbox.control("POST", "settings", {"daily_api_max": 3})
    limits = sf.limits()
    assert limits["DailyApiRequests"] == {"Max": 3, "Remaining": 2}
    sf.query("SELECT COUNT() FROM Lead")
    sf.query("SELECT COUNT() FROM Lead")
    assert sf.api_usage["api-usage"].used == 3 and sf.api_usage["api-usage"].total == 3
    with pytest.raises(SalesforceRefusedRequest) as refused:
        sf.query("SELECT COUNT() FROM Lead")
    assert refused.value.content[0]["errorCode"] == "REQUEST_LIMIT_EXCEEDED"


# -- writing ----------------------------------------------------------------------------------

def test_collections_upsert_with_three_invalid_records(sandbox: Sandbox, sf: Salesforce) -> None:
    records = [upsert_record(str(uuid.UUID(int=i)), LastName=f"Byron{i}", Company="Byron Ltd")
               for i in range(200)]
    records[10].pop("LastName")
    records[50]["Status"] = "Maybe Later"
    records[150]["Company"] = "x" * 256
    results = sf.restful("composite/sobjects/Lead/Refsync_Id__c", method="PATCH",
                         json={"allOrNone": False, "records": records})
    assert len(results) == 200
    assert sum(r["success"] for r in results) == 197
    assert all(r["created"] for r in results if r["success"])
    failed = {i: r["errors"] for i, r in enumerate(results) if not r["success"]}
    assert failed == {
        10: [{"statusCode": "REQUIRED_FIELD_MISSING",
              "message": "Required fields are missing: [LastName]", "fields": ["LastName"]}],
        50: [{"statusCode": "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
              "message": "Lead Status: bad value for restricted picklist field: Maybe Later",
              "fields": ["Status"]}],
        150: [{"statusCode": "STRING_TOO_LONG", "fields": ["Company"],
               "message": failed[150][0]["message"]}],
    }
    assert "max length=255" in failed[150][0]["message"]
    assert sandbox.calls(
        "PATCH /services/data/{version}/composite/sobjects/{object_name}/{ext_field}") == 1
    stored = sandbox.control("GET", "records/Lead")
    assert len(stored) == 197
    assert len({r["SystemModstamp"] for r in stored}) == 1  # one call, one modstamp

    again = sf.restful("composite/sobjects/Lead/Refsync_Id__c", method="PATCH", json={
        "allOrNone": False, "records": [upsert_record(str(uuid.UUID(int=0)), Title="CEO")]})
    assert again[0]["success"] is True and again[0]["created"] is False
    assert again[0]["id"] == results[0]["id"]


def test_a_custom_field_without_a_label_is_named_in_errors_by_its_name(
    sandbox: Sandbox, sf: Salesforce
) -> None:
    sandbox.control("POST", "seed", {"_metadata": {"Lead": {"fields": [
        {"name": "Partner_Tier__c", "type": "picklist", "picklistValues": ["Gold", "Silver"],
         "restrictedPicklist": True}]}}})
    (result,) = sf.restful("composite/sobjects/Lead/Refsync_Id__c", method="PATCH", json={
        "allOrNone": False,
        "records": [upsert_record("tier-1", LastName="Byron", Company="Byron Ltd",
                                  Partner_Tier__c="Bronze")]})
    assert result["errors"] == [{
        "statusCode": "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
        "message": "Partner Tier: bad value for restricted picklist field: Bronze",
        "fields": ["Partner_Tier__c"]}]
    label = {f["name"]: f["label"] for f in sf.Lead.describe()["fields"]}["Partner_Tier__c"]
    assert label == "Partner Tier"


def test_collections_all_or_none_rolls_back(sandbox: Sandbox, sf: Salesforce) -> None:
    records = [upsert_record(f"r-{i}", LastName="L", Company="C") for i in range(3)]
    records[1]["Bogus__c"] = 1
    results = sf.restful("composite/sobjects/Lead/Refsync_Id__c", method="PATCH",
                         json={"allOrNone": True, "records": records})
    assert [r["success"] for r in results] == [False, False, False]
    assert results[1]["errors"][0]["statusCode"] == "INVALID_FIELD"
    assert results[0]["errors"][0]["statusCode"] == "ALL_OR_NONE_OPERATION_ROLLED_BACK"
    assert sandbox.control("GET", "records/Lead") == []


def test_collections_limits_and_duplicate_keys(sandbox: Sandbox, sf: Salesforce) -> None:
    too_many = [upsert_record(f"r-{i}", LastName="L", Company="C") for i in range(201)]
    with pytest.raises(SalesforceMalformedRequest) as refused:
        sf.restful("composite/sobjects/Lead/Refsync_Id__c", method="PATCH",
                   json={"records": too_many})
    assert refused.value.content[0]["errorCode"] == "EXCEEDED_ID_LIMIT"
    twins = [upsert_record("same", LastName="A", Company="C"),
             upsert_record("SAME", LastName="B", Company="C"),
             upsert_record("other", LastName="C", Company="C")]
    results = sf.restful("composite/sobjects/Lead/Refsync_Id__c", method="PATCH",
                         json={"records": twins})
    assert [r["success"] for r in results] == [False, False, True]
    assert results[0]["errors"][0]["statusCode"] == "DUPLICATE_EXTERNAL_ID"
    with pytest.raises(SalesforceMalformedRequest) as not_external:
        sf.restful("composite/sobjects/Lead/Email", method="PATCH", json={"records": []})
    assert not_external.value.content[0]["errorCode"] == "INVALID_FIELD"


def test_single_upsert_created_updated_and_ambiguous(sandbox: Sandbox, sf: Salesforce) -> None:
    assert sf.Lead.upsert("Refsync_Id__c/abc", {"LastName": "Hopper", "Company": "Navy"}) == 201
    assert sf.Lead.upsert("Refsync_Id__c/abc", {"Title": "Rear Admiral"}) == 204
    found = sf.Lead.get_by_custom_id("Refsync_Id__c", "abc")
    assert found["Title"] == "Rear Admiral" and found["LastName"] == "Hopper"
    sandbox.control("POST", "seed", {
        "_metadata": {"Lead": {"fields": [{"name": "Legacy_Key__c", "externalId": True}]}},
        "Lead": [lead(1, Legacy_Key__c="L-1"), lead(2, Legacy_Key__c="L-1")]})
    with pytest.raises(SalesforceMoreThanOneRecord) as ambiguous:
        sf.Lead.upsert("Legacy_Key__c/L-1", {"Title": "x"})
    assert len(ambiguous.value.content) == 2


def test_record_crud_and_validation(sandbox: Sandbox, sf: Salesforce) -> None:
    created = sf.Lead.create({"LastName": "Curie", "Company": "Sorbonne",
                              "Refsync_Id__c": "rid-1"})
    assert created["success"] is True and created["id"].startswith("00Q")
    record = sf.Lead.get(created["id"])
    assert record["Status"] == "Open - Not Contacted" and record["IsDeleted"] is False
    assert sf.Lead.update(created["id"], {"Status": "Working - Contacted"}) == 204
    with pytest.raises(SalesforceMalformedRequest) as unknown:
        sf.Lead.update(created["id"], {"Shoe_Size__c": 42})
    assert unknown.value.content[0]["errorCode"] == "INVALID_FIELD"
    with pytest.raises(SalesforceMalformedRequest) as duplicate:
        sf.Lead.create({"LastName": "Other", "Company": "X", "Refsync_Id__c": "rid-1"})
    assert duplicate.value.content[0]["errorCode"] == "DUPLICATE_VALUE"
    with pytest.raises(SalesforceMalformedRequest) as read_only:
        sf.Lead.update(created["id"], {"IsConverted": True})
    assert read_only.value.content[0]["errorCode"] == "INVALID_FIELD_FOR_INSERT_UPDATE"
    opportunity = sf.Opportunity.create({"Name": "Deal", "StageName": "Closed Won",
                                         "CloseDate": "2026-04-01", "Amount": 1200.5})
    won = sf.Opportunity.get(opportunity["id"])
    assert (won["IsClosed"], won["IsWon"], won["Amount"]) == (True, True, 1200.5)


def test_modstamps_are_monotonic_even_with_a_frozen_clock(sandbox: Sandbox,
                                                         sf: Salesforce) -> None:
    first = sf.Lead.create(lead(1))["id"]
    second = sf.Lead.create(lead(2))["id"]
    stamps = [sf.Lead.get(i)["SystemModstamp"] for i in (first, second)]
    assert stamps[0] < stamps[1]
    assert stamps[0].endswith("+0000") and len(stamps[0]) == len("2026-03-02T09:00:00.000+0000")
    before = sf.Lead.get(first)["LastModifiedDate"]
    sf.Lead.update(first, {"Title": "CFO"})
    after = sf.Lead.get(first)
    assert after["LastModifiedDate"] > before and after["SystemModstamp"] > stamps[1]


def test_simulate_is_deterministic_and_converts_leads(sandbox: Sandbox, sf: Salesforce) -> None:
    def run() -> list[dict[str, Any]]:
        sandbox.control("POST", "reset")
        sandbox.control("POST", "seed", {"Lead": [
            lead(i, Refsync_Id__c=f"rid-{i}", Status="Working - Contacted") for i in range(20)]})
        return [sandbox.control("POST", "simulate", {"seed": 3, "fraction": 0.5})
                for _ in range(2)]

    first, second = run(), run()
    strip = [{k: v for k, v in r.items() if k != "stamp"} for r in first]
    assert strip == [{k: v for k, v in r.items() if k != "stamp"} for r in second]
    converted = first[0]["leads_converted"] + first[1]["leads_converted"]
    assert first[0]["leads_converted"] and first[1]["opportunities_advanced"] + first[1][
        "opportunities_won"] + first[1]["opportunities_lost"]
    sf = sandbox.client()
    opportunities = sf.query("SELECT Id, Refsync_Id__c, StageName FROM Opportunity")["records"]
    assert len(opportunities) == len(converted)
    assert all(o["Refsync_Id__c"].startswith("rid-") for o in opportunities)
    leads = sf.query("SELECT Id FROM Lead WHERE IsConverted = true")["records"]
    assert sorted(r["Id"] for r in leads) == sorted(converted)


# -- faults -----------------------------------------------------------------------------------

def test_fault_session_expired_preset(sandbox: Sandbox, sf: Salesforce) -> None:
    sandbox.control("POST", "faults", {"preset": "session_expired"})
    with pytest.raises(SalesforceExpiredSession) as caught:
        sf.query("SELECT Id FROM Lead")
    assert caught.value.content[0]["errorCode"] == "INVALID_SESSION_ID"
    assert sf.query("SELECT Id FROM Lead")["totalSize"] == 0


def test_fault_request_limit_exceeded_preset(sandbox: Sandbox, sf: Salesforce) -> None:
    sandbox.control("POST", "faults", {"preset": "request_limit_exceeded", "times": 2})
    for _ in range(2):
        with pytest.raises(SalesforceRefusedRequest) as caught:
            sf.limits()
        assert caught.value.content == [{"message": "TotalRequests Limit exceeded.",
                                         "errorCode": "REQUEST_LIMIT_EXCEEDED"}]
    assert "DailyApiRequests" in sf.limits()


def test_fault_rate_limit_burst_has_retry_after(sandbox: Sandbox, sf: Salesforce) -> None:
    sandbox.control("POST", "faults", {"preset": "rate_limit_burst"})
    with pytest.raises(SalesforceGeneralError) as caught:
        sf.query("SELECT Id FROM Lead")
    assert caught.value.status == 429
    token = sandbox.token()["access_token"]
    raw = sandbox.http.get(f"{sandbox.url}/services/data/v{VERSION}/limits",
                           headers={"Authorization": f"Bearer {token}"})
    assert raw.status_code == 429 and raw.headers["Retry-After"] == "1"
    assert raw.headers["Sforce-Limit-Info"].startswith("api-usage=")
    with pytest.raises(SalesforceGeneralError):
        sf.query("SELECT Id FROM Lead")  # the burst is three calls
    assert sf.query("SELECT COUNT() FROM Lead")["totalSize"] == 0


def test_fault_server_error_preset(sandbox: Sandbox, sf: Salesforce) -> None:
    sandbox.control("POST", "faults", {"preset": "server_error", "times": 1})
    with pytest.raises(SalesforceGeneralError) as caught:
        sf.query("SELECT Id FROM Lead")
    assert caught.value.status == 503
    assert caught.value.content[0]["errorCode"] == "SERVER_UNAVAILABLE"
    assert sf.query("SELECT COUNT() FROM Lead")["totalSize"] == 0


def test_fault_slow_responses(sandbox: Sandbox, sf: Salesforce) -> None:
    sandbox.control("POST", "faults", {"preset": "slow", "delay_ms": 1500, "times": 1})
    with pytest.raises(requests.exceptions.ReadTimeout):
        sf.query("SELECT Id FROM Lead", timeout=0.3)
    sandbox.control("POST", "faults", {"preset": "slow", "delay_ms": 50})
    assert sf.query("SELECT COUNT() FROM Lead", timeout=10)["totalSize"] == 0
    assert sandbox.control("GET", "faults")["injected"]["slow"] == 2


def test_fault_hung_connection_times_the_client_out(sandbox: Sandbox, sf: Salesforce) -> None:
    sandbox.control("POST", "faults", {"preset": "hang"})
    with pytest.raises(requests.exceptions.ReadTimeout):
        sf.query("SELECT Id FROM Lead", timeout=0.3)
    assert sf.query("SELECT COUNT() FROM Lead", timeout=10)["totalSize"] == 0
    faults = sandbox.control("GET", "faults")
    assert faults["injected"] == {"hang": 1}
    assert faults["rules"][0]["exhausted"] is True


def test_fault_partial_batch_failure_for_matching_records(sandbox: Sandbox,
                                                          sf: Salesforce) -> None:
    sandbox.control("POST", "faults", {"preset": "partial_batch_failure",
                                       "match_record": "Blocked Corp"})
    records = [upsert_record(f"r-{i}", LastName="L",
                             Company="Blocked Corp" if i % 10 == 0 else "Fine Inc")
               for i in range(50)]
    results = sf.restful("composite/sobjects/Lead/Refsync_Id__c", method="PATCH",
                         json={"allOrNone": False, "records": records})
    failed = [i for i, r in enumerate(results) if not r["success"]]
    assert failed == list(range(0, 50, 10))
    assert results[0]["errors"] == [{"statusCode": "FIELD_CUSTOM_VALIDATION_EXCEPTION",
                                     "message": "Rejected by the sandbox validation rule",
                                     "fields": []}]
    assert len(sandbox.control("GET", "records/Lead")) == 45
    assert sandbox.control("GET", "faults")["injected"] == {"partial_batch_failure": 5}


def test_control_api_is_neither_counted_nor_faulted(sandbox: Sandbox) -> None:
    sandbox.control("POST", "faults", {"rules": [{"status": 500}]})
    assert sandbox.control("GET", "health") == {"status": "ok", "emulator": "salesforce"}
    assert sandbox.control("GET", "calls") == {"total": 0, "by_route": {}}


# -- SOQL parser (no HTTP) --------------------------------------------------------------------

ROWS: list[dict[str, Any]] = [
    {"Id": "1", "LastName": "Alpha", "Email": "a@x.com", "NumberOfEmployees": 10,
     "IsConverted": False, "Status": "Open - Not Contacted",
     "SystemModstamp": "2026-01-01T10:00:00.000+0000", "ConvertedDate": None},
    {"Id": "2", "LastName": "beta", "Email": None, "NumberOfEmployees": 250,
     "IsConverted": True, "Status": "Closed - Converted",
     "SystemModstamp": "2026-01-02T10:00:00.000+0000", "ConvertedDate": "2026-01-02"},
    {"Id": "3", "LastName": "Gamma", "Email": "g@y.org", "NumberOfEmployees": None,
     "IsConverted": False, "Status": "Working - Contacted",
     "SystemModstamp": "2026-01-02T10:00:00.000+0000", "ConvertedDate": None},
]


def ids(soql: str) -> list[str]:
    return [r["Id"] for r in compile_query(soql, standard_objects()).run(ROWS)]


@pytest.mark.parametrize(("where", "expected"), [
    ("LastName = 'ALPHA'", ["1"]),
    ("LastName != 'alpha'", ["2", "3"]),
    ("NumberOfEmployees > 10", ["2"]),
    ("NumberOfEmployees >= 10", ["1", "2"]),
    ("NumberOfEmployees < 100", ["1"]),
    ("NumberOfEmployees <= 250.0", ["1", "2"]),
    ("Email = null", ["2"]),
    ("Email != null", ["1", "3"]),
    ("IsConverted = true", ["2"]),
    ("Status IN ('Open - Not Contacted', 'working - contacted')", ["1", "3"]),
    ("Status NOT IN ('Closed - Converted')", ["1", "3"]),
    ("Email LIKE '%@x.%'", ["1"]),
    ("LastName LIKE 'g_mma'", ["3"]),
    ("SystemModstamp >= 2026-01-02T10:00:00Z", ["2", "3"]),
    ("SystemModstamp > 2026-01-02T10:30:00+01:00", ["2", "3"]),
    ("SystemModstamp < 2026-01-02T10:00:00.000Z", ["1"]),
    ("ConvertedDate = 2026-01-02", ["2"]),
    ("(LastName = 'Alpha' OR LastName = 'Gamma') AND IsConverted = false", ["1", "3"]),
    ("LastName = 'Alpha' OR (IsConverted = true AND NumberOfEmployees > 100)", ["1", "2"]),
    ("NOT LastName = 'Alpha'", ["2", "3"]),
])
def test_soql_where(where: str, expected: list[str]) -> None:
    assert ids(f"SELECT Id FROM Lead WHERE {where}") == expected


def test_soql_order_by_several_fields_limit_offset() -> None:
    assert ids("SELECT Id FROM Lead ORDER BY SystemModstamp DESC, Id ASC") == ["2", "3", "1"]
    assert ids("SELECT Id FROM Lead ORDER BY LastName") == ["1", "2", "3"]
    assert ids("SELECT Id FROM Lead ORDER BY NumberOfEmployees") == ["3", "1", "2"]
    assert ids("SELECT Id FROM Lead ORDER BY NumberOfEmployees DESC") == ["2", "1", "3"]
    assert ids("SELECT Id FROM Lead ORDER BY NumberOfEmployees ASC NULLS LAST") == [
        "1", "2", "3"]
    assert ids("SELECT Id FROM Lead ORDER BY Id DESC LIMIT 2") == ["3", "2"]
    assert ids("SELECT Id FROM Lead ORDER BY Id LIMIT 1 OFFSET 1") == ["2"]


def test_soql_keywords_and_fields_are_case_insensitive() -> None:
    query = compile_query("select id, lastname from lead where isconverted = FALSE",
                          standard_objects())
    assert query.object_name == "Lead" and query.fields == ["Id", "LastName"]
    assert query.count_only is False
    assert compile_query("SELECT COUNT() FROM Lead", standard_objects()).count_only is True


@pytest.mark.parametrize(("soql", "code", "words"), [
    ("SELECT Id FROM Lead WHERE LastName = 'a' AND Email = 'b' OR Id = 'c'",
     "MALFORMED_QUERY", "unexpected token: 'OR'"),
    ("SELECT Id FROM Lead WHERE", "MALFORMED_QUERY", "unexpected end"),
    ("SELECT Id FROM Lead LIMIT many", "MALFORMED_QUERY", "unexpected token: 'many'"),
    ("SELECT Id FROM Lead WHERE LastName = 'open", "MALFORMED_QUERY", "unexpected token"),
    ("SELECT Id, Foo FROM Lead", "INVALID_FIELD", "No such column 'Foo' on entity 'Lead'"),
    ("SELECT Id FROM Lead WHERE SystemModstamp > '2026-01-01T00:00:00Z'", "INVALID_FIELD",
     "must be of type dateTime and should not be enclosed in quotes"),
    ("SELECT Id FROM Lead WHERE LastName = 5", "INVALID_FIELD", "must be of type string"),
    ("SELECT Id FROM Lead WHERE IsConverted = 'yes'", "INVALID_FIELD", "of type boolean"),
    ("SELECT Id FROM Leed", "INVALID_TYPE", "sObject type 'Leed' is not supported"),
    ("", "MALFORMED_QUERY", "query string"),
])
def test_soql_errors(soql: str, code: str, words: str) -> None:
    with pytest.raises(ApiError) as caught:
        compile_query(soql, standard_objects())
    assert caught.value.error_code == code
    assert words in caught.value.message


def test_seed_rejects_invalid_records_with_a_reason(sandbox: Sandbox) -> None:
    response = sandbox.http.post(f"{sandbox.url}/_sandbox/seed",
                                 json={"Lead": [{"LastName": "No company"}]})
    assert response.status_code == 400
    assert "REQUIRED_FIELD_MISSING" in response.json()["error"]
    unknown = sandbox.http.post(f"{sandbox.url}/_sandbox/seed", json={"Widget": []})
    assert unknown.status_code == 400


def test_demo_data_seeds_cleanly(sandbox: Sandbox, sf: Salesforce) -> None:
    from refsync.sandbox.demo import generate_demo

    payload = json.loads(json.dumps(generate_demo()["salesforce"]))
    counts = sandbox.control("POST", "seed", payload)["seeded"]
    assert counts == {name: len(rows) for name, rows in payload.items()}
    customers = sf.query("SELECT Name FROM Account WHERE Type = 'Customer - Direct'")
    assert customers["totalSize"] >= 1


def test_replication_window_limits_and_query_all_paging(sandbox: Sandbox,
                                                        sf: Salesforce) -> None:
    with pytest.raises(SalesforceMalformedRequest) as too_old:
        sf.Lead.updated(sandbox.clock.now - timedelta(days=31), sandbox.clock.now)
    assert too_old.value.content[0]["errorCode"] == "INVALID_REPLICATION_DATE"
    sandbox.control("POST", "seed", {"Lead": [lead(i) for i in range(2100)]})
    first = sf.query_all("SELECT Id FROM Lead", include_deleted=True)
    assert first["totalSize"] == 2100 and len(first["records"]) == 2100
    assert sandbox.calls("GET /services/data/{version}/queryAll/{locator}") == 1


def test_unknown_resource_and_settings(sandbox: Sandbox, sf: Salesforce) -> None:
    token = sandbox.token()["access_token"]
    missing = sandbox.http.get(f"{sandbox.url}/services/data/v{VERSION}/nothing/here",
                               headers={"Authorization": f"Bearer {token}"})
    assert missing.status_code == 404 and missing.json()[0]["errorCode"] == "NOT_FOUND"
    assert missing.headers["Sforce-Limit-Info"].startswith("api-usage=")
    old = sandbox.http.get(f"{sandbox.url}/services/data/v42.0/limits",
                           headers={"Authorization": f"Bearer {token}"})
    assert old.status_code == 404
    settings = sandbox.control("POST", "settings", {"expire_tokens": True})
    assert settings["daily_api_max"] == 100_000
    with pytest.raises(SalesforceExpiredSession):
        sf.limits()
    refused = sandbox.http.post(f"{sandbox.url}/_sandbox/settings", json={"colour": "red"})
    assert refused.status_code == 400 and "known" in refused.json()["error"]
