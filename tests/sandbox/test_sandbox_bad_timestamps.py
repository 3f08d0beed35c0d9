"""PartnerStack seed items whose ``created_at``, ``updated_at`` or ``key`` is not what the
listings sort on (epoch milliseconds, a text key) are refused like other invalid seed items,
through the control API and in a seed file; the listings keep working."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from click.testing import CliRunner

from refsync.cli import cli
from refsync.sandbox.runner import RunningSandbox, available_emulators, start_sandbox

PARTNER = {"key": "part_x", "email": "p@x.example", "first_name": "P", "last_name": "X"}
GOOD_LEAD = {"name": "Good Date", "company": "Good Inc", "email": "good@good.example",
             "partner_key": "part_x"}
LAST_EPOCH_MS = 253_402_300_799_999

#: (field, value) pairs a seed lead is refused for
BAD_VALUES: list[tuple[str, Any]] = [
    ("created_at", "yesterday"),
    ("created_at", "1767225600000"),
    ("created_at", 1_767_225_600_000.5),
    ("created_at", True),
    ("created_at", -1),
    ("created_at", LAST_EPOCH_MS + 1),
    ("created_at", {"at": 1}),
    ("updated_at", "2026-01-01T00:00:00Z"),
    ("key", 5),
    ("key", ""),
]


def bad_lead(field: str, value: Any) -> dict[str, Any]:
    return {"name": "Bad Date", "company": "BadDate Inc", "email": "baddate@baddate.example",
            "partner_key": "part_x", field: value}


@pytest.fixture(scope="module")
def sandbox() -> Iterator[RunningSandbox]:
    with start_sandbox(seed=None, ports=dict.fromkeys(available_emulators(), 0)) as running:
        yield running


@pytest.fixture
def url(sandbox: RunningSandbox) -> str:
    base = sandbox.urls["partnerstack"]
    requests.post(f"{base}/_sandbox/reset", json={}, timeout=10).raise_for_status()
    return base


def api_leads(sandbox: RunningSandbox, url: str) -> requests.Response:
    creds = sandbox.credentials["partnerstack"]
    return requests.get(f"{url}/api/v2/leads", auth=(creds["public_key"], creds["secret_key"]),
                        timeout=10)


@pytest.mark.parametrize(("field", "value"), BAD_VALUES)
def test_the_control_api_refuses_a_lead_with_a_bad_system_field(
    sandbox: RunningSandbox, url: str, field: str, value: Any
) -> None:
    seeded = requests.post(f"{url}/_sandbox/seed", timeout=10,
                           json={"partnerships": [PARTNER], "leads": [GOOD_LEAD]})
    assert seeded.status_code == 200, seeded.text
    refused = requests.post(f"{url}/_sandbox/seed", json={"leads": [bad_lead(field, value)]},
                            timeout=10)
    assert refused.status_code == 400
    message = refused.json()["error"]
    assert message.startswith(f"leads[0]: Invalid request: {field}: Not a valid ")
    assert repr(value) in message
    # nothing of the refused lead was stored: every listing still answers
    listed = api_leads(sandbox, url)
    assert listed.status_code == 200, listed.text
    assert [lead["email"] for lead in listed.json()["data"]["items"]] == [GOOD_LEAD["email"]]
    records = requests.get(f"{url}/_sandbox/records/leads", timeout=10)
    assert records.status_code == 200, records.text
    assert [lead["email"] for lead in records.json()] == [GOOD_LEAD["email"]]


def test_the_message_says_what_a_timestamp_must_be(url: str) -> None:
    refused = requests.post(f"{url}/_sandbox/seed", timeout=10, json={
        "partnerships": [PARTNER], "leads": [GOOD_LEAD, bad_lead("created_at", "yesterday")]})
    assert refused.status_code == 400
    assert refused.json()["error"] == (
        "leads[1]: Invalid request: created_at: Not a valid timestamp: expected epoch "
        f"milliseconds (an integer from 0 to {LAST_EPOCH_MS}), got 'yesterday'.")


def test_every_bad_field_of_a_lead_is_named_with_its_other_problems(url: str) -> None:
    lead = {**bad_lead("created_at", "yesterday"), "updated_at": "later", "email": "nope"}
    refused = requests.post(f"{url}/_sandbox/seed", timeout=10,
                            json={"partnerships": [PARTNER], "leads": [lead]})
    assert refused.status_code == 400
    message = refused.json()["error"]
    assert message.startswith("leads[0]: Invalid request: created_at: Not a valid timestamp")
    assert "; email: Not a valid email address.; " in message
    assert "; updated_at: Not a valid timestamp" in message


def test_epoch_millisecond_timestamps_and_text_keys_are_kept_as_given(
    sandbox: RunningSandbox, url: str
) -> None:
    lead = {**GOOD_LEAD, "key": "lead_given", "created_at": 0, "updated_at": LAST_EPOCH_MS}
    seeded = requests.post(f"{url}/_sandbox/seed", timeout=10,
                           json={"partnerships": [PARTNER], "leads": [lead]})
    assert seeded.status_code == 200, seeded.text
    (item,) = api_leads(sandbox, url).json()["data"]["items"]
    assert (item["key"], item["created_at"], item["updated_at"]) == (
        "lead_given", 0, LAST_EPOCH_MS)


def test_a_seed_file_with_a_bad_created_at_starts_nothing(tmp_path: Path) -> None:
    path = tmp_path / "seed.json"
    path.write_text(json.dumps({"partnerstack": {
        "partnerships": [PARTNER], "leads": [bad_lead("created_at", "yesterday"), GOOD_LEAD]}}))
    with pytest.raises(ValueError) as refused:
        start_sandbox(seed=str(path), ports=dict.fromkeys(available_emulators(), 0),
                      workdir=tmp_path / "tls")
    assert str(refused.value).startswith(
        f"sandbox seed file {path}, partnerstack: leads[0]: Invalid request: created_at: "
        "Not a valid timestamp")
    assert not (tmp_path / "tls").exists()


def test_the_cli_reports_a_bad_created_at_in_a_seed_file_in_one_line(tmp_path: Path) -> None:
    path = tmp_path / "seed.json"
    path.write_text(json.dumps({"partnerstack": {
        "partnerships": [PARTNER], "leads": [GOOD_LEAD, bad_lead("created_at", "yesterday")]}}))
    result = CliRunner().invoke(cli, [
        "sandbox", "--seed", str(path), "--workdir", str(tmp_path / "tls"),
        "--salesforce-port", "0", "--hubspot-port", "0", "--partnerstack-port", "0",
    ], prog_name="refsync")
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit)
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"Error: sandbox seed file {path}, partnerstack: leads[1]: Invalid "
                           "request: created_at: Not a valid timestamp: expected epoch "
                           "milliseconds")
    assert "got 'yesterday'" in line
    assert line.endswith("correct the file (records in the API's own field names) and start "
                         "the sandbox again")
    assert not (tmp_path / "tls").exists()
