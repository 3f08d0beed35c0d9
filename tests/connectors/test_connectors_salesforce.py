"""Salesforce connector behaviour beyond the contract, against the emulator over TLS."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from pydantic import ValidationError

from refsync.connectors.base import ConnectorContext
from refsync.connectors.errors import Action
from refsync.connectors.salesforce import SalesforceSettings
from refsync.errors import FatalConnectorError, QuotaExhaustedError
from refsync.sandbox.faults import FaultRule
from refsync.sandbox.salesforce.soql import format_datetime
from refsync.testing.fakes import ManualClock, SleepRecorder
from refsync.testing.salesforce import SalesforcePeer, running_salesforce


@pytest.fixture(scope="module")
def module_peer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SalesforcePeer]:
    with running_salesforce(tmp_path_factory.mktemp("tls")) as peer:
        yield peer


@pytest.fixture
def peer(module_peer: SalesforcePeer) -> SalesforcePeer:
    return module_peer


@pytest.fixture
def clock(peer: SalesforcePeer) -> ManualClock:
    return peer.fresh()


def lead(key: str, **extra: str) -> dict[str, str]:
    return {"Refsync_Id__c": key, "LastName": f"Lead {key}", "Company": "Acme", **extra}


def test_an_expired_session_is_renewed_once(peer: SalesforcePeer, clock: ManualClock) -> None:
    sleeps = SleepRecorder(clock)
    connector = peer.connector(clock, sleep=sleeps)
    assert connector.check().ok
    peer.emulator.faults.add(peer.emulator.all_fault_presets()["session_expired"])
    schema = connector.discover("Lead")
    assert "Refsync_Id__c" in schema.fields
    assert sleeps.calls == [0.0], "no backoff before the retry with a fresh session"
    assert connector.context.api_calls.count("crm", "client_error") == 1


def test_daily_limit_exceeded_stops_without_retrying(
    peer: SalesforcePeer, clock: ManualClock
) -> None:
    sleeps = SleepRecorder(clock)
    connector = peer.connector(clock, sleep=sleeps)
    peer.emulator.faults.add(peer.emulator.all_fault_presets()["request_limit_exceeded"])
    with pytest.raises(QuotaExhaustedError, match="daily API allowance is spent"):
        connector.discover("Lead")
    assert sleeps.calls == []


def test_server_errors_are_retried_with_backoff(peer: SalesforcePeer, clock: ManualClock) -> None:
    sleeps = SleepRecorder(clock)
    connector = peer.connector(clock, sleep=sleeps)
    peer.emulator.faults.add([FaultRule(path="/describe", status=503, times=2)])
    assert "LastName" in connector.discover("Lead").fields
    assert sleeps.calls == [1.0, 2.0]
    assert connector.context.api_calls.count("crm", "server_error") == 2


def test_usage_header_feeds_the_daily_reserve(peer: SalesforcePeer, clock: ManualClock) -> None:
    peer.emulator.configure({"daily_api_max": 1000, "api_used": 990})
    connector = peer.connector(clock, daily_reserve=5)
    report = connector.check()
    assert report.api_budget is not None and report.api_budget.limit == 1000
    assert [f.severity for f in report.findings] == ["warning"]
    calls_before = peer.emulator.api_used
    for _ in range(3):
        connector.discover("Lead")
    with pytest.raises(QuotaExhaustedError, match="reserve 5"):
        for _ in range(10):
            connector.discover("Lead")
    assert peer.emulator.api_used <= 1000 - 5 + 1
    assert peer.emulator.api_used > calls_before


def test_discover_describes_fields(peer: SalesforcePeer, clock: ManualClock) -> None:
    schema = peer.connector(clock).discover("Lead")
    ref = schema.fields["Refsync_Id__c"]
    assert (ref.external_id, ref.unique, ref.writable) == (True, True, True)
    assert schema.fields["LastName"].required
    assert not schema.fields["Status"].required, "defaulted on create"
    assert "Open - Not Contacted" in (schema.fields["Status"].picklist_values or [])
    assert not schema.fields["SystemModstamp"].writable


def test_unknown_object_is_fatal_with_a_fix(peer: SalesforcePeer, clock: ManualClock) -> None:
    with pytest.raises(FatalConnectorError, match="check the object name"):
        peer.connector(clock).discover("Leed")


def test_deletes_are_read_through_query_all(peer: SalesforcePeer, clock: ManualClock) -> None:
    peer.emulator.seed({"Lead": [lead("a"), lead("b")]})
    clock.advance(1)
    connector = peer.connector(clock)
    pages = list(connector.read("Lead", ["Refsync_Id__c"], None))
    cursor = pages[-1].cursor
    with peer.emulator.lock:
        store = peer.emulator.store
        record = store.find_by("Lead", "Refsync_Id__c", "a")[0]
        store.delete(store.object_def("Lead"), record, format_datetime(store.now()))
    clock.advance(1)
    pages = list(connector.read("Lead", ["Refsync_Id__c"], cursor))
    changed = [r for page in pages for r in page.records]
    assert [(r.data["Refsync_Id__c"], r.deleted) for r in changed] == [("a", True)]


def test_settle_lag_leaves_fresh_changes_for_the_next_run(
    peer: SalesforcePeer, clock: ManualClock
) -> None:
    peer.emulator.seed({"Lead": [lead("a")]})
    connector = peer.connector(clock, settle_lag_seconds=5)
    clock.advance(2)
    assert list(connector.read("Lead", ["Refsync_Id__c"], None)) == []
    clock.advance(5)
    pages = list(connector.read("Lead", ["Refsync_Id__c"], None))
    assert [r.data["Refsync_Id__c"] for r in pages[0].records] == ["a"]


def test_large_batches_are_split_into_collections_of_200(
    peer: SalesforcePeer, clock: ManualClock
) -> None:
    connector = peer.connector(clock)
    records = [lead(f"k{n:03d}") for n in range(450)]
    before = connector.context.api_calls.count("crm")
    results = connector.write("Lead", "Refsync_Id__c", records)
    assert len(results) == 450 and all(r.ok and r.created for r in results)
    assert [r.key for r in results] == [r["Refsync_Id__c"] for r in records]
    sign_in = 1
    assert connector.context.api_calls.count("crm") - before == 3 + sign_in


def test_partial_batch_failure_is_split_out(peer: SalesforcePeer, clock: ManualClock) -> None:
    peer.emulator.faults.add(peer.emulator.all_fault_presets()["partial_batch_failure"])
    connector = peer.connector(clock)
    results = connector.write(
        "Lead", "Refsync_Id__c", [lead("a"), lead("b", Title="SANDBOX_FAIL"), lead("c")]
    )
    assert [r.ok for r in results] == [True, False, True]
    error = results[1].error
    assert error is not None
    assert error.code == "FIELD_CUSTOM_VALIDATION_EXCEPTION"
    assert error.action is Action.RECORD_ERROR
    assert "validation rule" in error.message


def test_picklist_error_names_the_field(peer: SalesforcePeer, clock: ManualClock) -> None:
    results = peer.connector(clock).write("Lead", "Refsync_Id__c", [lead("a", Status="Nope")])
    error = results[0].error
    assert error is not None
    assert error.code == "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST"
    assert error.fields == ("Status",)
    assert "Status" in error.message


def test_wrong_secret_fails_check_with_a_fix(peer: SalesforcePeer, clock: ManualClock) -> None:
    report = peer.connector(clock, consumer_secret="wrong").check()
    assert not report.auth_ok and not report.ok
    assert "consumer_secret" in report.findings[0].message


def test_check_verifies_the_configured_objects(peer: SalesforcePeer, clock: ManualClock) -> None:
    report = peer.connector(clock, objects=["Lead", "Nope__c"]).check()
    assert not report.permissions_ok
    assert [f.severity for f in report.findings] == ["error"]
    assert "Nope__c" in report.findings[0].fix


def test_jwt_bearer_sign_in(peer: SalesforcePeer, clock: ManualClock, tmp_path: Path) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    peer.emulator.configure({"jwt_public_key": public.decode()})
    key_file = tmp_path / "key.pem"
    key_file.write_bytes(pem)
    connector = peer.connector(
        clock, auth="jwt", consumer_secret=None, username="sync@example.com",
        private_key_file=key_file,
    )
    assert connector.check().auth_ok
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    wrong = other.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    refused = peer.connector(
        clock, auth="jwt", consumer_secret=None, username="sync@example.com",
        private_key=wrong.decode(),
    ).check()
    assert not refused.auth_ok
    assert "private_key" in refused.findings[0].message


def test_settings_require_the_credentials_of_the_flow() -> None:
    with pytest.raises(ValidationError, match="needs consumer_secret"):
        SalesforceSettings.model_validate({"consumer_key": "k"})
    with pytest.raises(ValidationError, match="needs username"):
        SalesforceSettings.model_validate({"consumer_key": "k", "auth": "jwt"})
    with pytest.raises(ValidationError, match="extra"):
        SalesforceSettings.model_validate(
            {"consumer_key": "k", "consumer_secret": "s", "pasword": "x"}
        )


def test_two_connectors_on_one_credential_share_a_bucket(
    peer: SalesforcePeer, clock: ManualClock
) -> None:
    context = ConnectorContext(system="crm", clock=clock, sleep=SleepRecorder(clock))
    first = peer.connector(clock, context=context)
    second = peer.connector(clock, context=context)
    assert first.session.bucket is second.session.bucket


def test_the_remote_id_hint_is_never_sent(peer: SalesforcePeer, clock: ManualClock) -> None:
    from refsync.connectors.base import REMOTE_ID_FIELD

    results = peer.connector(clock).write(
        "Lead", "Refsync_Id__c", [{**lead("a"), REMOTE_ID_FIELD: "00Q000000000001AAA"}]
    )
    assert results[0].ok, results[0].error


def test_check_with_the_allowance_spent_is_not_an_auth_failure(
    peer: SalesforcePeer, clock: ManualClock
) -> None:
    peer.emulator.faults.add(peer.emulator.all_fault_presets()["request_limit_exceeded"])
    report = peer.connector(clock).check()
    assert report.auth_ok and not report.ok
    assert "daily API allowance is spent" in report.findings[0].message


def test_check_with_the_host_unreachable_does_not_claim_signed_in(clock: ManualClock) -> None:
    from refsync.connectors.salesforce import SalesforceConnector

    settings = SalesforceSettings.model_validate(
        {"base_url": "https://127.0.0.1:9", "consumer_key": "k", "consumer_secret": "s",
         "max_attempts": 2}
    )
    sleeps = SleepRecorder(clock)
    context = ConnectorContext(system="crm", clock=clock, sleep=sleeps)
    report = SalesforceConnector(settings, context).check()
    assert not report.auth_ok
    assert "could not reach" in report.findings[0].message
    assert sleeps.calls == [1.0]


def test_25000_leads_with_2500_tied_modstamps_read_every_change_exactly_once(
    peer: SalesforcePeer, clock: ManualClock
) -> None:
    base = clock()
    tie = base + timedelta(seconds=30)
    leads = []
    for n in range(25_000):
        # 2,500 records share one SystemModstamp, across page boundaries
        stamp = tie if 10_000 <= n < 12_500 else base + timedelta(milliseconds=n * 7)
        leads.append({**lead(f"k{n:05d}"), "SystemModstamp": format_datetime(stamp)})
    peer.emulator.seed({"Lead": leads})
    clock.advance(600)
    connector = peer.connector(clock)
    fields = ["Refsync_Id__c", "Title"]

    # run 1 is interrupted after three pages; its last committed cursor is kept
    seen: list[str] = []
    cursor = None
    for index, page in enumerate(connector.read("Lead", fields, None)):
        seen.extend(r.data["Refsync_Id__c"] for r in page.records)
        cursor = page.cursor
        if index == 2:
            break
    # run 2 resumes from that cursor and reads the rest
    for page in connector.read("Lead", fields, cursor):
        seen.extend(r.data["Refsync_Id__c"] for r in page.records)
        cursor = page.cursor
    assert len(seen) == 25_000 and len(set(seen)) == 25_000

    # records change in between (tied ones among them), written in one call: new ties
    changed = [f"k{n:05d}" for n in range(9_900, 12_600, 9)]
    results = connector.write("Lead", "Refsync_Id__c",
                              [lead(key, Title="Changed") for key in changed])
    assert all(result.ok for result in results)
    clock.advance(600)
    again: list[str] = []
    for page in connector.read("Lead", fields, cursor):
        again.extend(r.data["Refsync_Id__c"] for r in page.records)
        cursor = page.cursor
    assert sorted(again) == sorted(changed)

    # run 4: nothing changed, nothing returned
    clock.advance(600)
    assert [r for page in connector.read("Lead", fields, cursor) for r in page.records] == []


def test_450_records_with_3_invalid_take_3_calls_and_fail_only_those(
    peer: SalesforcePeer, clock: ManualClock
) -> None:
    connector = peer.connector(clock)
    bad = {17, 230, 449}
    records = [lead(f"w{n:03d}", Status="Bogus") if n in bad else lead(f"w{n:03d}")
               for n in range(450)]
    before = connector.context.api_calls.count("crm")
    results = connector.write("Lead", "Refsync_Id__c", records)
    assert [n for n, r in enumerate(results) if not r.ok] == sorted(bad)
    assert sum(r.ok for r in results) == 447
    for n in bad:
        error = results[n].error
        assert error is not None and error.action is Action.RECORD_ERROR
        assert error.code == "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST"
    sign_in = 1
    assert connector.context.api_calls.count("crm") - before == 3 + sign_in  # ceil(450/200)


# --- secrets, key files, TLS bundle, messages and retry logs --------------------------------


def _jwt_key_pem() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def test_the_session_id_is_registered_with_the_redactor_at_sign_in(
    peer: SalesforcePeer, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    registered: list[str] = []
    monkeypatch.setattr("refsync.connectors.salesforce_auth.register_secret", registered.append)
    connector = peer.connector(clock)
    assert connector.check().ok
    assert connector._client is not None
    assert connector._client.session_id in registered


def test_a_jwt_key_read_from_its_file_and_the_assertion_are_registered(
    peer: SalesforcePeer, clock: ManualClock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    registered: list[str] = []

    def register(value: str, *, expires: bool = True) -> None:
        registered.append(value)

    monkeypatch.setattr("refsync.connectors.salesforce.register_secret", register)
    monkeypatch.setattr("refsync.connectors.salesforce_auth.register_secret", register)
    pem = _jwt_key_pem()
    key_file = tmp_path / "key.pem"
    key_file.write_text(pem)
    connector = peer.connector(clock, auth="jwt", consumer_secret=None,
                               username="sync@example.com", private_key_file=key_file)
    connector.check()
    assert registered[0] == pem
    assert any(value.startswith("eyJ") for value in registered), "the signed assertion"


def test_a_missing_private_key_file_is_a_connector_error_naming_the_setting(
    peer: SalesforcePeer, clock: ManualClock, tmp_path: Path
) -> None:
    # refsync check refuses a key file that is not there...
    with pytest.raises(ValidationError, match="names no file"):
        SalesforceSettings.model_validate({"consumer_key": "k", "auth": "jwt", "username": "u",
                                           "private_key_file": str(tmp_path / "sf.pem")})
    # ...and one removed after the check is a connector error at sign-in
    key_file = tmp_path / "sf.pem"
    key_file.write_text(_jwt_key_pem())
    connector = peer.connector(clock, auth="jwt", consumer_secret=None,
                               username="sync@example.com", private_key_file=key_file)
    key_file.unlink()
    report = connector.check()
    assert not report.auth_ok
    assert "private_key_file" in report.findings[0].message
    assert "does not exist" in report.findings[0].message
    with pytest.raises(FatalConnectorError, match=r"private_key_file .*sf\.pem does not exist"):
        connector.discover("Lead")


def test_an_unreadable_key_file_is_never_quoted() -> None:
    from refsync.connectors.salesforce import read_key_file

    pem_as_path = Path(_jwt_key_pem())
    with pytest.raises(FatalConnectorError) as caught:
        read_key_file(pem_as_path, system="crm")
    body = str(pem_as_path).splitlines()[1]
    assert body not in caught.value.message and "BEGIN" not in caught.value.message
    assert caught.value.__context__ is None and caught.value.__cause__ is None
    with pytest.raises(ValidationError, match="holds a key, not the path"):
        SalesforceSettings.model_validate({"consumer_key": "k", "auth": "jwt", "username": "u",
                                           "private_key_file": str(pem_as_path)})


def test_a_key_file_without_a_pem_key_fails_without_quoting_it(
    peer: SalesforcePeer, clock: ManualClock, tmp_path: Path
) -> None:
    key_file = tmp_path / "sf.pem"
    key_file.write_text("not a key: hunter2-secret-material\n")
    report = peer.connector(clock, auth="jwt", consumer_secret=None,
                            username="sync@example.com", private_key_file=key_file).check()
    assert not report.ok
    assert "not a PEM RSA private key" in report.findings[0].message
    assert "hunter2" not in report.findings[0].message


def test_invalid_field_names_the_field_salesforce_named(
    peer: SalesforcePeer, clock: ManualClock
) -> None:
    with pytest.raises(FatalConnectorError) as caught:
        list(peer.connector(clock).read("Account", ["Name", "AccountType"], None))
    assert caught.value.code == "INVALID_FIELD"
    assert "refused field(s) AccountType:" in caught.value.message
    assert "(unnamed field)" not in caught.value.message
    assert "customers_from" in caught.value.message


def test_a_ca_bundle_gone_at_run_time_is_a_connector_error_with_the_fix(
    peer: SalesforcePeer, clock: ManualClock, tmp_path: Path
) -> None:
    bundle = tmp_path / "ca.pem"
    bundle.write_bytes(peer.ca_bundle.read_bytes())
    connector = peer.connector(clock, ca_bundle=bundle)
    bundle.unlink()
    report = connector.check()
    assert not report.ok
    assert "ca_bundle" in report.findings[0].message
    assert str(bundle) in report.findings[0].message


def test_retries_are_logged_with_the_wait_status_and_attempt(
    peer: SalesforcePeer, clock: ManualClock, logs: list[dict[str, Any]]
) -> None:
    connector = peer.connector(clock)
    peer.emulator.faults.add([FaultRule(path="/describe", status=503, times=2)])
    connector.discover("Lead")
    retries = [line for line in logs if line["event"] == "call retried"]
    assert [(line["attempt"], line["wait_s"], line["status"], line["log_level"])
            for line in retries] == [(1, 1.0, 503, "warning"), (2, 2.0, 503, "warning")]
    assert {line["system"] for line in retries} == {"crm"}
    assert {line["operation"] for line in retries} == {"describe Lead"}
