"""``refsync check --online`` against the sandbox emulators."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import trustme
import urllib3.util.connection
from click.testing import CliRunner

from refsync.cli import cli
from refsync.sandbox.runner import RunningSandbox, start_sandbox

EXAMPLE = Path(__file__).parents[2] / "config.example.yaml"


@pytest.fixture(scope="module")
def sandbox() -> Iterator[RunningSandbox]:
    with start_sandbox(seed="demo", ports={"salesforce": 0, "hubspot": 0, "partnerstack": 0}) \
            as running:
        yield running


def config_for(sandbox: RunningSandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("SALESFORCE_URL", sandbox.urls["salesforce"])
    monkeypatch.setenv("SALESFORCE_CA_BUNDLE", str(sandbox.ca_bundle))
    monkeypatch.setenv("HUBSPOT_URL", sandbox.urls["hubspot"])
    monkeypatch.setenv("PARTNERSTACK_URL", sandbox.urls["partnerstack"] + "/api/v2")
    monkeypatch.setenv("REFSYNC_DATABASE_URL", f"sqlite:///{tmp_path / 'state.db'}")
    path = tmp_path / "refsync.yaml"
    path.write_text(EXAMPLE.read_text())
    return path


def test_example_config_passes_online_against_the_sandbox(
    sandbox: RunningSandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = config_for(sandbox, tmp_path, monkeypatch)
    result = CliRunner().invoke(cli, ["check", "-c", str(path), "--online", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert set(report["systems"]) == {"partnerstack", "salesforce", "hubspot"}


def test_a_field_missing_in_salesforce_fails_with_exit_3_and_names_it(
    sandbox: RunningSandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from refsync.mapping import default_mapping_path

    mapping = default_mapping_path("salesforce-lead").read_text().replace(
        "remote: Title,", "remote: Job_Title__c,")
    (tmp_path / "lead.yaml").write_text(mapping)
    path = config_for(sandbox, tmp_path, monkeypatch)
    path.write_text(path.read_text().replace("builtin:salesforce-lead", "lead.yaml"))
    result = CliRunner().invoke(cli, ["check", "-c", str(path), "--online"])
    assert result.exit_code == 3, result.output
    assert "salesforce: FAILED" in result.output
    assert "Job_Title__c" in result.output
    assert "hubspot: OK" in result.output


def test_a_customer_field_the_crm_does_not_have_fails_at_its_line(
    sandbox: RunningSandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = config_for(sandbox, tmp_path, monkeypatch)
    text = path.read_text().replace(
        "customers_from: {system: salesforce, object: Account}",
        "customers_from: {system: salesforce, object: Account, type_field: AccountType}",
    ).replace("closed_field: IsClosed", "closed_field: IsClosd")
    path.write_text(text)
    result = CliRunner().invoke(cli, ["check", "-c", str(path), "--online"])
    assert result.exit_code == 3, result.output
    assert "salesforce: FAILED" in result.output and "hubspot: OK" in result.output
    lines = text.splitlines()
    customers = next(i for i, line in enumerate(lines, 1) if "type_field: AccountType" in line)
    closed = next(i for i, line in enumerate(lines, 1) if "closed_field: IsClosd" in line)
    assert f"refsync.yaml:{customers}:" in result.output
    assert "rules.customers_from.type_field is 'AccountType', but Account in salesforce has " \
        "no such field" in result.output
    assert f"refsync.yaml:{closed}:" in result.output
    assert "did you mean closed_field: IsClosed?" in result.output


def _customers_from_hubspot_companies(path: Path) -> Path:
    """The config at ``path`` reading existing customers from HubSpot's companies, with the
    Salesforce field defaults, and no open-deal rule."""
    text = path.read_text().replace(
        "customers_from: {system: salesforce, object: Account}",
        "customers_from: {system: hubspot, object: companies}")
    path.write_text(text[:text.index("  open_opportunities_from:\n    system")])
    return path


def test_customers_read_from_hubspot_with_the_salesforce_defaults_fail(
    sandbox: RunningSandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _customers_from_hubspot_companies(config_for(sandbox, tmp_path, monkeypatch))
    result = CliRunner().invoke(cli, ["check", "-c", str(path), "--online", "--json"])
    assert result.exit_code == 3, result.output
    report = json.loads(result.stdout)["systems"]
    assert report["salesforce"]["ok"] and not report["hubspot"]["ok"]
    messages = [finding["message"] for finding in report["hubspot"]["findings"]]
    assert any("rules.customers_from.name_field is 'Name' (the default), but companies in "
               "hubspot has no such field" in message for message in messages), messages
    assert any("rules.customers_from.website_field is 'Website' (the default)" in message
               for message in messages), messages


def test_a_refused_token_is_reported_once_not_again_for_each_mapping(
    sandbox: RunningSandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = config_for(sandbox, tmp_path, monkeypatch)
    monkeypatch.setenv("HUBSPOT_ACCESS_TOKEN", "pat-revoked")
    result = CliRunner().invoke(cli, ["check", "-c", str(path), "--online", "--json"])
    assert result.exit_code == 3, result.output
    report = json.loads(result.stdout)["systems"]
    assert report["salesforce"]["ok"] and report["partnerstack"]["ok"]
    messages = [finding["message"] for finding in report["hubspot"]["findings"]]
    assert len(messages) == 1, messages
    assert "rejected the private-app access token" in messages[0]


def test_under_json_logging_a_failed_check_is_also_logged_as_events(
    sandbox: RunningSandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = config_for(sandbox, tmp_path, monkeypatch)
    monkeypatch.setenv("HUBSPOT_ACCESS_TOKEN", "pat-revoked")
    result = CliRunner().invoke(cli, ["--log-format", "json", "check", "-c", str(path),
                                      "--online"])
    assert result.exit_code == 3, result.output
    assert "hubspot: FAILED" in result.stdout
    events = [json.loads(line) for line in result.stderr.splitlines()]
    failed = [event for event in events if event["event"] == "check failed"]
    assert [event["system"] for event in failed] == ["hubspot"]
    assert "rejected the private-app access token" in failed[0]["error"]
    assert events[-1]["event"] == "command failed"
    assert events[-1]["error"] == "the online check failed for hubspot"
    assert events[-1]["exit_code"] == 3
    assert "pat-revoked" not in result.stderr


def _closed_url(scheme: str = "http") -> str:
    """The URL of a loopback port nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"{scheme}://127.0.0.1:{probe.getsockname()[1]}"


def _without_backoff(path: Path) -> None:
    """Give every system of the config retries that do not wait (the default attempts)."""
    path.write_text(path.read_text().replace("    settings:\n",
                                             "    settings:\n      backoff_seconds: 0\n"))


def _counting_connections(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Record the port of every TCP connection attempted from now on (HTTP clients included)."""
    ports: list[int] = []
    connect = urllib3.util.connection.create_connection

    def counted(address: tuple[str, int], *args: Any, **kwargs: Any) -> socket.socket:
        ports.append(address[1])
        return connect(address, *args, **kwargs)

    monkeypatch.setattr(urllib3.util.connection, "create_connection", counted)
    return ports


def test_systems_that_cannot_be_reached_are_reported_once_each_after_one_attempt(
    sandbox: RunningSandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = config_for(sandbox, tmp_path, monkeypatch)
    urls = {"salesforce": _closed_url("https"), "hubspot": _closed_url(),
            "partnerstack": _closed_url()}
    monkeypatch.setenv("SALESFORCE_URL", urls["salesforce"])
    monkeypatch.setenv("HUBSPOT_URL", urls["hubspot"])
    monkeypatch.setenv("PARTNERSTACK_URL", urls["partnerstack"] + "/api/v2")
    _without_backoff(path)  # a sync would retry each call 5 times: the check must not
    ports = _counting_connections(monkeypatch)
    result = CliRunner().invoke(cli, ["check", "-c", str(path), "--online", "--json"])
    assert result.exit_code == 3, result.output
    report = json.loads(result.stdout)["systems"]
    assert set(report) == {"partnerstack", "salesforce", "hubspot"}
    for name, entry in report.items():
        assert not entry["ok"]
        assert len(entry["findings"]) == 1, (name, entry["findings"])
        finding = entry["findings"][0]
        assert "could not" in finding["message"] and "in time" not in finding["message"], name
        assert finding["fix"].startswith("check base_url (host and port)"), (name, finding)
        port = int(urls[name].rpartition(":")[2])
        assert ports.count(port) == 1, (name, ports)
    assert "call retried" not in result.stderr


def test_an_https_url_at_a_plain_http_server_is_reported_at_once_with_the_scheme_fix(
    sandbox: RunningSandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = config_for(sandbox, tmp_path, monkeypatch)
    plain = sandbox.urls["partnerstack"].replace("http://", "https://")
    monkeypatch.setenv("PARTNERSTACK_URL", plain + "/api/v2")
    monkeypatch.setenv("HUBSPOT_URL", sandbox.urls["hubspot"].replace("http://", "https://"))
    _without_backoff(path)
    result = CliRunner().invoke(cli, ["check", "-c", str(path), "--online", "--json"])
    assert result.exit_code == 3, result.output
    report = json.loads(result.stdout)["systems"]
    assert report["salesforce"]["ok"]
    for name in ("partnerstack", "hubspot"):
        findings = report[name]["findings"]
        assert len(findings) == 1, (name, findings)
        assert "did not speak TLS" in findings[0]["message"], (name, findings)
        assert findings[0]["fix"] == \
            "check the scheme (https:// or http://) and the port of base_url", name
    assert f"the server at {plain} did not speak TLS" in \
        report["partnerstack"]["findings"][0]["message"]
    assert "call retried" not in result.stderr, "a server that does not speak TLS is not retried"


def test_a_ca_bundle_that_does_not_sign_the_server_is_reported_at_once_with_its_fix(
    sandbox: RunningSandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = config_for(sandbox, tmp_path, monkeypatch)
    other = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other))
    monkeypatch.setenv("SALESFORCE_CA_BUNDLE", str(other))
    result = CliRunner().invoke(cli, ["check", "-c", str(path), "--online"])
    assert result.exit_code == 3, result.output
    assert "partnerstack: OK" in result.stdout and "hubspot: OK" in result.stdout
    failed = result.stdout[result.stdout.index("salesforce: FAILED"):]
    findings = [line for line in failed.splitlines()[1:] if line.startswith("  error:")]
    assert len(findings) == 1, failed
    assert f"the TLS certificate of {sandbox.urls['salesforce']} could not be verified" in \
        findings[0]
    assert f"check the ca_bundle setting ({other})" in findings[0]
    assert "call retried" not in result.stderr, "a failed certificate check is not retried"


def _hubspot_fault(sandbox: RunningSandbox, rule: dict[str, object]) -> None:
    response = requests.post(f"{sandbox.urls['hubspot']}/_sandbox/faults",
                             json={"rules": [rule]}, timeout=10)
    response.raise_for_status()


def test_a_rules_object_that_cannot_be_described_is_pointed_at_only_when_it_does_not_exist(
    sandbox: RunningSandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _customers_from_hubspot_companies(config_for(sandbox, tmp_path, monkeypatch))
    _hubspot_fault(sandbox, {"path": "/crm/v3/properties/companies", "status": 403, "times": 1})
    try:
        refused = CliRunner().invoke(cli, ["check", "-c", str(path), "--online", "--json"])
    finally:
        requests.delete(f"{sandbox.urls['hubspot']}/_sandbox/faults", timeout=10)
    assert refused.exit_code == 3, refused.output
    findings = json.loads(refused.stdout)["systems"]["hubspot"]["findings"]
    assert len(findings) == 1, findings
    assert "rules.customers_from reads object 'companies'" in findings[0]["message"]
    assert "set object:" not in findings[0]["fix"], "the object exists: a permission is missing"

    path.write_text(path.read_text().replace("object: companies}", "object: widgets}"))
    unknown = CliRunner().invoke(cli, ["check", "-c", str(path), "--online", "--json"])
    assert unknown.exit_code == 3, unknown.output
    findings = json.loads(unknown.stdout)["systems"]["hubspot"]["findings"]
    assert [finding["fix"] for finding in findings] == [
        "set object: to the API name of the object to read"]
