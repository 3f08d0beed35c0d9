"""Calls that get no answer, the same way in every connector.

A refused connection is a connection error and a silent server a timeout (in messages, codes
and the call counter's outcomes); a server whose TLS certificate fails the check is a fatal
error naming the ca_bundle setting, and a server that does not speak TLS at an https:// URL one
naming the URL's scheme and port, neither ever retried; and ``check()`` reports a system it
could not reach once, with the fix of a connection problem, after one attempt when a person
waits on it (an interactive context).
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import trustme
import urllib3.exceptions

from refsync.connectors.base import ConnectorContext
from refsync.connectors.errors import got_no_answer, names_unknown_object
from refsync.connectors.http import certificate_failure
from refsync.connectors.hubspot import HubSpotConnector, HubSpotSettings
from refsync.connectors.hubspot.transport import no_answer_kind
from refsync.connectors.partnerstack import PartnerStackConnector, PartnerStackSettings
from refsync.connectors.salesforce import SalesforceConnector, SalesforceSettings
from refsync.connectors.usage import ApiCallCounter
from refsync.errors import ConnectorError, FatalConnectorError, RetryableError
from refsync.testing import ManualClock, SleepRecorder
from refsync.testing.partnerstack import running_partnerstack
from refsync.testing.salesforce import SalesforcePeer, running_salesforce

SYSTEM = "crm"


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SalesforcePeer]:
    """A TLS server signed by a CA of its own (the Salesforce emulator is one)."""
    with running_salesforce(tmp_path_factory.mktemp("tls")) as peer:
        yield peer


@pytest.fixture(scope="module")
def other_ca(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A readable CA bundle holding a CA that did not sign the server's certificate."""
    path = tmp_path_factory.mktemp("other-ca") / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(path))
    return path


@pytest.fixture(scope="module")
def plain_http_as_https() -> Iterator[str]:
    """An https:// URL at a plain-HTTP server (the PartnerStack emulator speaks no TLS)."""
    with running_partnerstack() as peer:
        yield peer.url.replace("http://", "https://")


@pytest.fixture
def closed_url() -> str:
    """The URL of a loopback port nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@pytest.fixture
def silent_url() -> Iterator[str]:
    """The URL of a port that accepts connections and never answers."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        yield f"http://127.0.0.1:{server.getsockname()[1]}"


class Harness:
    """A connector of one kind pointed at ``url``, its counter and its waits."""

    def __init__(self, kind: str, url: str, *, interactive: bool = False, **settings: Any
                 ) -> None:
        self.counter = ApiCallCounter()
        self.sleeps = SleepRecorder()
        context = ConnectorContext(system=SYSTEM, clock=ManualClock(), sleep=self.sleeps,
                                   api_calls=self.counter, interactive=interactive)
        common = {"base_url": url, "settle_lag_seconds": 0, **settings}
        self.connector: Any
        if kind == "salesforce":
            self.connector = SalesforceConnector(SalesforceSettings.model_validate(
                {"consumer_key": "k", "consumer_secret": "s", **common}), context)
        elif kind == "hubspot":
            self.connector = HubSpotConnector(HubSpotSettings.model_validate(
                {"access_token": "pat-na1-00000000-0000", **common}), context)
        else:
            self.connector = PartnerStackConnector(PartnerStackSettings.model_validate(
                {"public_key": "pk", "secret_key": "sk", **common}), context)
        self.kind = kind

    def call(self) -> None:
        """Make one API call (retried as the settings say)."""
        if self.kind == "salesforce":
            self.connector.discover("Lead")
        elif self.kind == "hubspot":
            self.connector.discover("contacts")
        else:
            list(self.connector.read("leads", [], None))


KINDS = ["salesforce", "hubspot", "partnerstack"]


@pytest.mark.parametrize("kind", KINDS)
def test_a_refused_connection_is_a_connection_error_not_a_timeout(
    kind: str, closed_url: str
) -> None:
    harness = Harness(kind, closed_url, max_attempts=2)
    with pytest.raises(RetryableError) as caught:
        harness.call()
    assert caught.value.code == "connection_error"
    assert "in time" not in caught.value.message
    assert "could not" in caught.value.message
    assert harness.counter.count(SYSTEM, "connection_error") == 2
    assert harness.counter.count(SYSTEM, "timeout") == 0
    assert harness.sleeps.calls == [1.0], "a refused connection may be transient: retried"


@pytest.mark.parametrize("kind", KINDS)
def test_a_server_that_does_not_answer_is_a_timeout(kind: str, silent_url: str) -> None:
    harness = Harness(kind, silent_url, max_attempts=1, connect_timeout=0.3, read_timeout=0.3)
    with pytest.raises(RetryableError) as caught:
        harness.call()
    assert caught.value.code == "timeout"
    assert harness.counter.count(SYSTEM, "timeout") == 1
    assert harness.counter.count(SYSTEM, "connection_error") == 0


@pytest.mark.parametrize(("error", "kind"), [
    (urllib3.exceptions.NewConnectionError(None, "Connection refused"), "connection_error"),
    (urllib3.exceptions.NameResolutionError("nowhere.invalid", None, OSError("no such host")),
     "connection_error"),
    (urllib3.exceptions.ProtocolError("Connection aborted."), "connection_error"),
    (urllib3.exceptions.ConnectTimeoutError(None, "timed out"), "timeout"),
    (urllib3.exceptions.ReadTimeoutError(None, "/", "Read timed out."), "timeout"),
    (urllib3.exceptions.MaxRetryError(
        None, "/", urllib3.exceptions.NewConnectionError(None, "refused")),
     "connection_error"),
])
def test_urllib3_errors_are_told_apart_by_what_happened(
    error: urllib3.exceptions.HTTPError, kind: str
) -> None:
    assert no_answer_kind(error) == kind


@pytest.mark.parametrize("kind", KINDS)
def test_a_certificate_the_ca_bundle_does_not_trust_is_fatal_at_once(
    kind: str, tls_server: SalesforcePeer, other_ca: Path
) -> None:
    harness = Harness(kind, tls_server.url, ca_bundle=other_ca)
    with pytest.raises(FatalConnectorError) as caught:
        harness.call()
    message = caught.value.message
    assert f"the TLS certificate of {tls_server.url} could not be verified" in message
    assert "unable to get local issuer certificate" in message
    assert f"check the ca_bundle setting ({other_ca})" in message
    assert "could not reach" not in message
    assert caught.value.code == "tls_certificate"
    assert harness.sleeps.calls == [], "a certificate that fails the check is not retried"


def test_without_a_ca_bundle_the_message_says_to_set_one(
    tls_server: SalesforcePeer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    harness = Harness("partnerstack", tls_server.url)
    with pytest.raises(FatalConnectorError) as caught:
        harness.call()
    assert "could not be verified" in caught.value.message
    assert "set it to the certificate of the CA that signed the server's certificate" in \
        caught.value.message


def test_a_salesforce_data_call_whose_certificate_fails_is_fatal_too(
    tls_server: SalesforcePeer, other_ca: Path
) -> None:
    clock = tls_server.fresh()
    sleeps = SleepRecorder(clock)
    connector = tls_server.connector(clock, sleep=sleeps)
    connector.discover("Lead")  # signed in through the right CA
    connector.session.verify = str(other_ca)
    connector.session.close()  # the next call makes a new connection
    with pytest.raises(FatalConnectorError) as caught:
        connector.discover("Lead")
    assert "TLS certificate" in caught.value.message and str(other_ca) in caught.value.message
    assert sleeps.calls == []


@pytest.mark.parametrize("kind", KINDS)
def test_a_server_that_does_not_speak_tls_is_fatal_at_once_naming_scheme_and_port(
    kind: str, plain_http_as_https: str
) -> None:
    harness = Harness(kind, plain_http_as_https)
    with pytest.raises(FatalConnectorError) as caught:
        harness.call()
    message = caught.value.message
    assert f"the server at {plain_http_as_https} did not speak TLS (" in message
    assert "check the scheme and the port of that URL in the settings" in message
    assert "certificate" not in message and "could not connect" not in message
    assert caught.value.code == "not_tls" and got_no_answer(caught.value)
    assert harness.counter.count(SYSTEM, "connection_error") == 1
    assert harness.sleeps.calls == [], "a server that does not speak TLS is not retried"


def test_an_oauth_token_endpoint_whose_certificate_fails_is_not_a_refused_refresh(
    tls_server: SalesforcePeer, other_ca: Path
) -> None:
    sleeps = SleepRecorder()
    settings = HubSpotSettings(client_id="id", client_secret="secret", refresh_token="refresh",
                               base_url=tls_server.url, ca_bundle=other_ca)
    connector = HubSpotConnector(settings, ConnectorContext(system=SYSTEM, clock=ManualClock(),
                                                            sleep=sleeps))
    report = connector.check()
    assert not report.reachable and len(report.findings) == 1
    assert "could not be verified" in report.findings[0].message
    assert "refused the OAuth refresh" not in report.findings[0].message
    assert report.findings[0].fix == "check the ca_bundle setting"
    assert sleeps.calls == []


def test_an_oauth_token_endpoint_that_does_not_speak_tls_is_not_a_refused_refresh(
    plain_http_as_https: str,
) -> None:
    sleeps = SleepRecorder()
    settings = HubSpotSettings(client_id="id", client_secret="secret", refresh_token="refresh",
                               base_url=plain_http_as_https)
    connector = HubSpotConnector(settings, ConnectorContext(system=SYSTEM, clock=ManualClock(),
                                                            sleep=sleeps))
    report = connector.check()
    assert not report.reachable and len(report.findings) == 1
    assert "did not speak TLS" in report.findings[0].message
    assert "refused the OAuth refresh" not in report.findings[0].message
    assert sleeps.calls == []


# --- check() ------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_check_reports_a_system_it_cannot_reach_once_with_a_connection_fix(
    kind: str, closed_url: str
) -> None:
    settings: dict[str, Any] = {"max_attempts": 2}
    if kind == "hubspot":
        settings["check_objects"] = ["contacts", "deals", "companies"]
    harness = Harness(kind, closed_url, **settings)
    report = harness.connector.check()
    assert not report.reachable and not report.ok
    assert len(report.findings) == 1, report.findings
    finding = report.findings[0]
    assert "could not" in finding.message
    assert "base_url (host and port)" in finding.fix and "reachable" in finding.fix
    assert "scope" not in finding.fix and "keys" not in finding.fix
    assert harness.sleeps.calls == [1.0], "one failed call, not one per object"


@pytest.mark.parametrize("kind", KINDS)
def test_an_interactive_check_reports_a_system_it_cannot_reach_after_one_attempt(
    kind: str, closed_url: str
) -> None:
    harness = Harness(kind, closed_url, interactive=True)  # the default 5 attempts
    report = harness.connector.check()
    assert not report.reachable and len(report.findings) == 1, report.findings
    assert "could not" in report.findings[0].message
    assert harness.counter.count(SYSTEM, "connection_error") == 1
    assert harness.sleeps.calls == []


def test_an_interactive_check_gives_an_oauth_token_endpoint_one_attempt(closed_url: str) -> None:
    counter = ApiCallCounter()
    sleeps = SleepRecorder()
    settings = HubSpotSettings(client_id="id", client_secret="secret", refresh_token="refresh",
                               base_url=closed_url)
    context = ConnectorContext(system=SYSTEM, clock=ManualClock(), sleep=sleeps,
                               api_calls=counter, interactive=True)
    report = HubSpotConnector(settings, context).check()
    assert not report.reachable and "could not" in report.findings[0].message
    assert counter.count(SYSTEM, "connection_error") == 1
    assert sleeps.calls == []


@pytest.mark.parametrize("kind", KINDS)
def test_a_sync_still_retries_a_system_it_cannot_reach(kind: str, closed_url: str) -> None:
    harness = Harness(kind, closed_url)  # not interactive: the configured 5 attempts
    with pytest.raises(RetryableError):
        harness.call()
    assert harness.counter.count(SYSTEM, "connection_error") == 5
    assert harness.sleeps.calls == [1.0, 2.0, 4.0, 8.0]


@pytest.mark.parametrize("kind", KINDS)
def test_check_reports_a_server_that_does_not_speak_tls_with_the_scheme_fix(
    kind: str, plain_http_as_https: str
) -> None:
    harness = Harness(kind, plain_http_as_https)
    report = harness.connector.check()
    assert not report.reachable
    assert [finding.fix for finding in report.findings] == [
        "check the scheme (https:// or http://) and the port of base_url"]
    assert "did not speak TLS" in report.findings[0].message


@pytest.mark.parametrize("kind", KINDS)
def test_check_reports_an_untrusted_certificate_with_the_ca_bundle_fix(
    kind: str, tls_server: SalesforcePeer, other_ca: Path
) -> None:
    harness = Harness(kind, tls_server.url, ca_bundle=other_ca)
    report = harness.connector.check()
    assert not report.reachable
    assert [finding.fix for finding in report.findings] == ["check the ca_bundle setting"]
    assert "could not be verified" in report.findings[0].message


# --- the helpers ---------------------------------------------------------------------------


def test_only_a_failed_certificate_check_is_a_certificate_failure() -> None:
    assert certificate_failure(requests.ConnectionError("Connection refused")) is None
    assert certificate_failure(urllib3.exceptions.SSLError("WRONG_VERSION_NUMBER")) is None


@pytest.mark.parametrize(("error", "no_answer", "unknown_object"), [
    (RetryableError("x", code="connection_error"), True, False),
    (RetryableError("x", code="timeout"), True, False),
    (FatalConnectorError("x", code="tls_certificate"), True, False),
    (FatalConnectorError("x", code="ca_bundle"), True, False),
    (FatalConnectorError("x", code="not_tls"), True, False),
    (RetryableError("x", status=504, code="timeout"), False, False),
    (FatalConnectorError("x", status=404, code="NOT_FOUND"), False, True),
    (FatalConnectorError("x", status=400, code="UNKNOWN_OBJECT"), False, True),
    (FatalConnectorError("x", status=403), False, False),
])
def test_errors_say_whether_the_system_answered_and_knew_the_object(
    error: ConnectorError, no_answer: bool, unknown_object: bool
) -> None:
    assert got_no_answer(error) is no_answer
    assert names_unknown_object(error) is unknown_object
