"""Settings every HTTP connector shares (base_url, ca_bundle) and the injected logger."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import structlog
from pydantic import ValidationError

from refsync.connectors.base import ConnectorContext, HttpConnectorSettings
from refsync.connectors.hubspot import HubSpotSettings
from refsync.connectors.partnerstack import PartnerStackSettings
from refsync.connectors.salesforce import SalesforceSettings
from refsync.errors import Problem
from refsync.validation import problems_from_validation
from refsync.yamlsource import SourceMap


def _error(**settings: object) -> str:
    with pytest.raises(ValidationError) as caught:
        HttpConnectorSettings.model_validate(settings)
    (error,) = caught.value.errors()
    return str(error["msg"])


@pytest.mark.parametrize("url", ["https://api.hubapi.com", "http://127.0.0.1:8702",
                                 "https://127.0.0.1:8703/api/v2", "https://x.example/$batch"])
def test_an_http_url_with_a_host_is_accepted(url: str) -> None:
    assert HttpConnectorSettings(base_url=url).base_url == url


def test_a_dollar_reference_without_braces_is_told_to_take_braces() -> None:
    assert "write ${HUBSPOT_URL} (with braces)" in _error(base_url="$HUBSPOT_URL")
    assert "write ${PS_URL}/api/v2" in _error(base_url="$PS_URL/api/v2")
    assert "write https://${HOST}/api" in _error(base_url="https://$HOST/api")


@pytest.mark.parametrize("url", ["127.0.0.1:8702", "api.hubapi.com", "ftp://files.example",
                                 "https://", "/api/v2"])
def test_text_that_is_not_an_http_url_is_refused(url: str) -> None:
    assert "must be a URL starting with https:// or http://" in _error(base_url=url)


def test_an_empty_base_url_is_refused_rather_than_meaning_the_default_host() -> None:
    assert "is empty" in _error(base_url="")
    assert "is empty" in _error(base_url="  ")


def test_every_http_connector_checks_its_urls() -> None:
    with pytest.raises(ValidationError, match="with braces"):
        HubSpotSettings(access_token="x", base_url="$HUBSPOT_URL")
    with pytest.raises(ValidationError, match="with braces"):
        PartnerStackSettings(public_key="pk", secret_key="sk", base_url="$PARTNERSTACK_URL")
    with pytest.raises(ValidationError, match="login_url"):
        SalesforceSettings(consumer_key="k", consumer_secret="s", login_url="acme.my.salesforce")


def test_a_ca_bundle_must_exist(tmp_path: Path) -> None:
    assert "names no file" in _error(ca_bundle=str(tmp_path / "sandbox-ca.pm"))
    assert "is empty" in _error(ca_bundle="")
    bundle = tmp_path / "ca.pem"
    bundle.write_text("-----BEGIN CERTIFICATE-----\n")
    settings = HttpConnectorSettings(ca_bundle=bundle)
    assert settings.verify() == str(bundle)
    assert HttpConnectorSettings().verify() is True


def test_the_default_logger_carries_the_system(logs: list[dict[str, Any]]) -> None:
    ConnectorContext(system="salesforce").logger.info("salesforce.signed_in")
    assert logs == [
        {"event": "salesforce.signed_in", "system": "salesforce", "log_level": "info"}]


def test_an_injected_logger_is_used_as_given() -> None:
    logger = structlog.get_logger("elsewhere")
    assert ConnectorContext(system="crm", logger=logger).logger is logger


def _problem(model: type[Any], **settings: object) -> Problem:
    with pytest.raises(ValidationError) as caught:
        model.model_validate(settings)
    (problem,) = problems_from_validation(caught.value, SourceMap("refsync.yaml"), model)
    return problem


@pytest.mark.parametrize(("settings", "message", "fix"), [
    ({"access_token": "pat", "client_id": "c", "client_secret": "s", "refresh_token": "r"},
     "HubSpot settings give both an access_token", "keep one way to sign in"),
    ({"client_id": "c"}, "HubSpot needs credentials",
     "set access_token (private app), or all of client_id, client_secret and refresh_token"),
])
def test_hubspot_sign_in_problems_say_what_to_do(settings: dict[str, object], message: str,
                                                 fix: str) -> None:
    problem = _problem(HubSpotSettings, **settings)
    assert problem.message.startswith(message)
    assert problem.fix.startswith(fix)


def test_a_base_url_that_is_not_a_url_has_a_fix() -> None:
    problem = _problem(HttpConnectorSettings, base_url="api.hubapi.com")
    assert problem.message == ("base_url must be a URL starting with https:// or http:// and "
                               "naming a host (got 'api.hubapi.com')")
    assert problem.fix.startswith("write it like https://api.example.com")


PASTED_CERTIFICATE = "-----BEGIN CERTIFICATE-----\n" + "MIIB" * 80 + "\n-----END CERTIFICATE-----"


def test_a_certificate_pasted_into_ca_bundle_is_refused_without_echoing_it() -> None:
    problem = _problem(HttpConnectorSettings, ca_bundle=PASTED_CERTIFICATE)
    assert problem.message.startswith(
        "ca_bundle holds a certificate, not the path of a CA bundle file")
    assert "MIIB" not in problem.message + problem.fix
    assert problem.fix.startswith("save the certificate to a file")


def test_a_path_too_long_to_look_up_names_no_file_rather_than_crashing() -> None:
    # the system refuses to look a name this long up (ENAMETOOLONG) instead of answering "no"
    problem = _problem(HttpConnectorSettings, ca_bundle="x" * 300)
    assert "names no file" in problem.message
    problem = _problem(SalesforceSettings, auth="jwt", username="u", consumer_key="k",
                       private_key_file="y" * 300)
    assert "names no file" in problem.message


@pytest.mark.parametrize(("settings", "message", "fix"), [
    ({"auth": "client_credentials", "consumer_key": "k"},
     "auth client_credentials needs consumer_secret", "set consumer_secret: "),
    ({"auth": "jwt", "consumer_key": "k", "private_key_file": None},
     "auth jwt needs username and private_key or private_key_file", "set username "),
])
def test_salesforce_sign_in_problems_say_what_to_do(settings: dict[str, object], message: str,
                                                    fix: str) -> None:
    problem = _problem(SalesforceSettings, **settings)
    assert problem.message.startswith(message)
    assert problem.fix.startswith(fix)
