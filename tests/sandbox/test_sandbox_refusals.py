"""A sandbox that cannot start says why in one line and leaves a running sandbox's files alone:
a port in use, a seed file an emulator refuses, a seed naming a system the sandbox lacks."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import requests
from click.testing import CliRunner, Result

from refsync.cli import cli
from refsync.sandbox.runner import available_emulators, load_seed, start_sandbox
from refsync.sandbox.server import ServerStartError

FREE_PORTS = ["--salesforce-port", "0", "--hubspot-port", "0", "--partnerstack-port", "0"]

#: seeds an emulator refuses: (seed, the system named, what the message says is wrong)
REFUSED_SEEDS: list[tuple[dict[str, Any], str, str]] = [
    ({"salesforce": {"Lead": [{"Company": "X"}]}}, "salesforce",
     "REQUIRED_FIELD_MISSING: Required fields are missing: [LastName]"),
    ({"salesforce": {"Leads": [{"LastName": "Curie", "Company": "Sorbonne"}]}}, "salesforce",
     "unknown sObject 'Leads' (did you mean 'Lead'?)"),
    ({"salesforce": {"Lead": ["Curie"]}}, "salesforce", "Lead: expected a list of records"),
    ({"hubspot": {"contacts": [{"refsync_status": "pending"}]}}, "hubspot",
     "contacts[0]: refsync_status: pending was not one of the allowed options"),
    ({"hubspot": {"$properties": {"contacts": [{"type": "string"}]}}}, "hubspot",
     "$properties must be"),
    ({"partnerstack": {"leads": [{"email": "x@y.z"}]}}, "partnerstack",
     "leads[0]: Invalid request: partner_key: Missing data for required field."),
]


def every_port_free() -> dict[str, int]:
    return dict.fromkeys(available_emulators(), 0)


def tls_files(directory: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(directory.iterdir())}


def sandbox_cli(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), prog_name="refsync")


def write_seed(tmp_path: Path, seed: dict[str, Any]) -> Path:
    path = tmp_path / "seed.json"
    path.write_text(json.dumps(seed))
    return path


def test_a_sandbox_that_cannot_listen_leaves_the_running_ones_tls_files(tmp_path: Path) -> None:
    with start_sandbox(seed=None, ports=every_port_free(), workdir=tmp_path) as running:
        before = tls_files(tmp_path)
        # the last system's port is taken: the others would bind, and the old runner had
        # written its certificates and started them by then
        last = list(running.servers)[-1]
        ports = {**every_port_free(), last: running.servers[last].port}
        with pytest.raises(ServerStartError, match="cannot listen"):
            start_sandbox(seed=None, ports=ports, workdir=tmp_path)
        assert tls_files(tmp_path) == before
        with requests.Session() as http:
            http.trust_env = False
            http.verify = str(running.ca_bundle)
            for url in running.urls.values():
                assert http.get(f"{url}/_sandbox/health", timeout=10).json()["status"] == "ok"


def test_the_cli_refuses_a_taken_port_without_touching_the_running_sandboxs_files(
    tmp_path: Path,
) -> None:
    with start_sandbox(seed=None, ports=every_port_free(), workdir=tmp_path) as running:
        before = tls_files(tmp_path)
        result = sandbox_cli("sandbox", "--workdir", str(tmp_path), *FREE_PORTS,
                             "--salesforce-port", str(running.servers["salesforce"].port))
        assert result.exit_code == 1
        assert "cannot listen on 127.0.0.1:" in result.stderr
        assert tls_files(tmp_path) == before


@pytest.mark.parametrize(("seed", "system", "problem"), REFUSED_SEEDS)
def test_a_seed_an_emulator_refuses_starts_nothing(
    tmp_path: Path, seed: dict[str, Any], system: str, problem: str
) -> None:
    path = write_seed(tmp_path, seed)
    with pytest.raises(ValueError) as refused:
        start_sandbox(seed=str(path), ports=every_port_free(), workdir=tmp_path / "tls")
    assert str(refused.value).startswith(f"sandbox seed file {path}, {system}: ")
    assert problem in str(refused.value)
    assert not (tmp_path / "tls").exists()


@pytest.mark.parametrize(("seed", "system", "problem"), REFUSED_SEEDS)
def test_the_cli_reports_a_refused_seed_file_in_one_line_with_the_fix(
    tmp_path: Path, seed: dict[str, Any], system: str, problem: str
) -> None:
    path = write_seed(tmp_path, seed)
    result = sandbox_cli("sandbox", "--seed", str(path), "--workdir", str(tmp_path / "tls"),
                         *FREE_PORTS)
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit)
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"Error: sandbox seed file {path}, {system}: ")
    assert problem in line
    assert line.endswith("correct the file (records in the API's own field names) and start "
                         "the sandbox again")


def test_a_refused_seed_file_is_a_command_failed_event_under_json_logging(
    tmp_path: Path,
) -> None:
    path = write_seed(tmp_path, {"salesforce": {"Lead": [{"Company": "X"}]}})
    result = sandbox_cli("--log-format", "json", "sandbox", "--seed", str(path),
                         "--workdir", str(tmp_path / "tls"), *FREE_PORTS)
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit)
    (event,) = [json.loads(line) for line in result.stderr.splitlines()]
    assert event["event"] == "command failed" and event["exit_code"] == 1
    assert event["error"].startswith(f"sandbox seed file {path}, salesforce: ")
    assert "REQUIRED_FIELD_MISSING" in event["error"]


@pytest.mark.parametrize(("system", "hint"), [
    ("salesforc", "no system 'salesforc' — did you mean 'salesforce'?"),
    ("zoho", "no system 'zoho' — the sandbox's systems are salesforce, hubspot, partnerstack"),
])
def test_a_seed_naming_a_system_the_sandbox_lacks_is_refused(
    tmp_path: Path, system: str, hint: str
) -> None:
    with pytest.raises(ValueError, match="sandbox seed: ") as refused:
        load_seed({system: {"Lead": []}})
    assert hint in str(refused.value)
    path = write_seed(tmp_path, {system: {"Lead": [{"LastName": "Curie", "Company": "S"}]}})
    result = sandbox_cli("sandbox", "--seed", str(path), "--workdir", str(tmp_path / "tls"),
                         *FREE_PORTS)
    assert result.exit_code == 1
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"Error: sandbox seed file {path}: {hint}")
    assert not (tmp_path / "tls").exists()
