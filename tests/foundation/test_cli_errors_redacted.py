"""What the CLI prints about errors never holds a secret, and connector settings that cannot
work (a URL without a scheme, a missing CA bundle) are refused by ``check`` with the fix."""

from __future__ import annotations

import json
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from refsync.cli import cli
from refsync.cli.common import handle_refsync_errors, report_config_error
from refsync.errors import ConfigError, ConnectorError, Problem
from refsync.logging import redactor, register_secret

EXAMPLE = Path(__file__).parents[2] / "config.example.yaml"
PAT = "pat-na1-0123456789abcdef"


@pytest.fixture(autouse=True)
def _reset_redactor() -> None:
    redactor.clear()


@click.command()
@handle_refsync_errors
def _failing() -> None:
    raise ConnectorError(
        f"hubspot refused the call for missing scopes (This access token ({PAT}) does not have "
        f"proper permissions. Authorization: Bearer {PAT}; session oauth-issued-42)",
        system="hubspot",
    )


def test_an_error_echoing_a_credential_is_printed_masked() -> None:
    register_secret("oauth-issued-42")
    result = CliRunner().invoke(_failing, [])
    assert result.exit_code == 1
    assert result.output.startswith("error: hubspot refused the call for missing scopes")
    assert PAT not in result.output and "oauth-issued-42" not in result.output
    assert "Bearer ***" in result.output


def test_config_problems_are_printed_masked_as_text_and_json() -> None:
    problem = Problem("refsync.yaml", 3, 5, f"access_token: Input is invalid (got '{PAT}')",
                      "give a value of the expected type")

    @click.command()
    @click.option("--json", "as_json", is_flag=True)
    def report(as_json: bool) -> None:
        report_config_error(ConfigError([problem]), as_json=as_json)

    text = CliRunner().invoke(report, [])
    assert text.exit_code == 2 and PAT not in text.output and "refsync.yaml:3:5" in text.output
    as_json = CliRunner().invoke(report, ["--json"])
    assert PAT not in as_json.output
    assert json.loads(as_json.output)["problems"][0]["line"] == 3


def _example(tmp_path: Path, old: str, new: str) -> Path:
    text = EXAMPLE.read_text()
    assert old in text
    path = tmp_path / "refsync.yaml"
    path.write_text(text.replace(old, new))
    return path


def test_check_refuses_an_environment_reference_without_braces_with_the_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HUBSPOT_URL", "http://127.0.0.1:8702")
    path = _example(tmp_path, "${HUBSPOT_URL:-http://127.0.0.1:8702}", "$HUBSPOT_URL")
    result = CliRunner().invoke(cli, ["check", "-c", str(path)])
    assert result.exit_code == 2, result.output
    line = next(n for n, row in enumerate(path.read_text().splitlines(), 1)
                if "$HUBSPOT_URL" in row)
    reported = [row for row in result.output.splitlines() if row.startswith(f"{path}:{line}:")]
    assert len(reported) == 1, result.output
    assert "base_url" in reported[0] and "write ${HUBSPOT_URL}" in reported[0]


def test_check_refuses_a_base_url_without_a_scheme(tmp_path: Path) -> None:
    path = _example(tmp_path, "${HUBSPOT_URL:-http://127.0.0.1:8702}", "127.0.0.1:8702")
    result = CliRunner().invoke(cli, ["check", "-c", str(path)])
    assert result.exit_code == 2, result.output
    assert "base_url must be a URL starting with https:// or http://" in result.output


def test_check_refuses_a_ca_bundle_that_does_not_exist(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SALESFORCE_CA_BUNDLE", str(tmp_path / "sandbox-ca.pm"))
    path = tmp_path / "refsync.yaml"
    path.write_text(EXAMPLE.read_text())
    result = CliRunner().invoke(cli, ["check", "-c", str(path)])
    assert result.exit_code == 2, result.output
    assert "ca_bundle names no file" in result.output
    assert "sandbox-ca.pm" in result.output


def test_an_unexpected_traceback_is_printed_masked(capsys: pytest.CaptureFixture[str]) -> None:
    from refsync.cli.common import print_traceback_redacted

    register_secret("oauth-issued-43")
    try:
        raise FileNotFoundError(2, "No such file or directory",
                                "-----BEGIN PRIVATE KEY-----\nMIIEsecret\n"
                                "-----END PRIVATE KEY-----")
    except FileNotFoundError as error:
        print_traceback_redacted(type(error), error, error.__traceback__)
    try:
        raise RuntimeError("token oauth-issued-43 refused")
    except RuntimeError as error:
        print_traceback_redacted(type(error), error, error.__traceback__)
    printed = capsys.readouterr().err
    assert "Traceback (most recent call last)" in printed and "FileNotFoundError" in printed
    assert "MIIEsecret" not in printed and "oauth-issued-43" not in printed


def test_loading_the_configuration_installs_the_masking_hook(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import sys

    from refsync.cli.common import CliContext, print_traceback_redacted

    monkeypatch.setattr(sys, "excepthook", sys.__excepthook__)
    CliContext().load(str(EXAMPLE))
    assert sys.excepthook is print_traceback_redacted
