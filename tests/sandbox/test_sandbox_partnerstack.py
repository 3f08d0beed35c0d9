"""The PartnerStack emulator over loopback HTTP, driven with requests."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests

from refsync.sandbox.core import build_app
from refsync.sandbox.partnerstack import PartnerStackEmulator
from refsync.sandbox.server import SandboxServer

AUTH = ("pk_sandbox_refsync", "sk_sandbox_refsync")


class FakeTime:
    """Wall-clock seconds the tests move by hand."""

    def __init__(self, start: float) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


WALL = FakeTime(1_767_225_600.0)


@pytest.fixture(scope="module")
def server() -> Iterator[SandboxServer]:
    with SandboxServer(build_app(PartnerStackEmulator(now=WALL))) as running:
        yield running


@pytest.fixture
def emulator(server: SandboxServer) -> PartnerStackEmulator:
    em = server.app.state.emulator
    assert isinstance(em, PartnerStackEmulator)
    em.reset()
    return em


@pytest.fixture
def api(server: SandboxServer, emulator: PartnerStackEmulator) -> Iterator[requests.Session]:
    session = requests.Session()
    session.auth = AUTH
    session.base_url = server.url + "/api/v2"  # type: ignore[attr-defined]
    yield session
    session.close()


def url(api: requests.Session, path: str) -> str:
    return f"{api.base_url}{path}"  # type: ignore[attr-defined]


def seed_program(emulator: PartnerStackEmulator, leads: int = 0) -> None:
    emulator.seed({
        "partnerships": [{"key": "part_alice", "email": "alice@partners.example",
                          "first_name": "Alice", "last_name": "Ng"}],
        "leads": [{"partner_key": "part_alice", "email": f"lead{i}@prospect.example",
                   "name": f"Lead {i}", "created_at": 1_700_000_000_000 + i,
                   "updated_at": 1_700_000_000_000 + i} for i in range(leads)],
    })


def read_all(api: requests.Session, resource: str, **params: Any) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        query = dict(params, starting_after=cursor) if cursor else params
        answer = api.get(url(api, f"/{resource}"), params=query, timeout=5)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["status"] == 200 and body["message"]
        items.extend(body["data"]["items"])
        if not body["data"]["has_more"]:
            return items
        cursor = body["data"]["items"][-1]["key"]


def test_paging_newest_first_visits_every_item_once(
    emulator: PartnerStackEmulator, api: requests.Session
) -> None:
    seed_program(emulator, leads=53)
    first = api.get(url(api, "/leads"), timeout=5).json()["data"]
    assert len(first["items"]) == 10 and first["has_more"] is True
    items = read_all(api, "leads", limit=20)
    assert len(items) == len({i["key"] for i in items}) == 53
    created = [i["created_at"] for i in items]
    assert created == sorted(created, reverse=True)
    oldest_first = read_all(api, "leads", limit=25, order_by="created_at")
    assert [i["key"] for i in oldest_first] == [i["key"] for i in reversed(items)]
    before = api.get(url(api, "/leads"), params={"ending_before": items[30]["key"], "limit": 5},
                     timeout=5).json()["data"]
    assert [i["key"] for i in before["items"]] == [i["key"] for i in items[25:30]]
    assert before["has_more"] is True


@pytest.mark.parametrize("params", [
    {"limit": 0}, {"limit": 251}, {"limit": "ten"}, {"starting_after": "lead_missing"},
    {"order_by": "name"}, {"min_updated": "yesterday"},
])
def test_bad_list_parameters_are_400s(
    emulator: PartnerStackEmulator, api: requests.Session, params: dict[str, Any]
) -> None:
    seed_program(emulator, leads=1)
    answer = api.get(url(api, "/leads"), params=params, timeout=5)
    assert answer.status_code == 400
    body = answer.json()
    assert body["status"] == 400 and body["data"] is None and body["errors"]


def test_update_time_filter_combines_with_paging(
    emulator: PartnerStackEmulator, api: requests.Session
) -> None:
    seed_program(emulator, leads=40)
    bound = 1_700_000_000_000 + 25
    recent = read_all(api, "leads", limit=4, min_updated=bound)
    assert len(recent) == 15
    assert all(i["updated_at"] >= bound for i in recent)
    window = read_all(api, "leads", limit=4, min_updated=bound, max_updated=bound + 4)
    assert [i["updated_at"] for i in window] == [bound + 4 - n for n in range(5)]
    old_key = read_all(api, "leads", max_updated=1_700_000_000_000)[0]["key"]
    touched = api.patch(url(api, f"/leads/{old_key}"), json={"status": "qualified"}, timeout=5)
    assert touched.status_code == 200
    again = read_all(api, "leads", limit=4, min_updated=bound)
    assert old_key in {i["key"] for i in again}
    by_update = read_all(api, "leads", limit=7, order_by="-updated_at")
    assert by_update[0]["key"] == old_key


def test_create_and_update_leads(emulator: PartnerStackEmulator, api: requests.Session) -> None:
    seed_program(emulator)
    created = api.post(url(api, "/leads"), json={
        "partner_key": "part_alice", "email": "new@prospect.example", "name": "New Prospect",
        "company": "Prospect Inc", "fields": {"refsync_id": "rs-9", "region": "EU"},
    }, timeout=5)
    assert created.status_code == 200
    lead = created.json()["data"]
    assert lead["key"].startswith("lead_") and lead["status"] == "new"
    assert lead["created_at"] == lead["updated_at"]
    patched = api.patch(url(api, f"/leads/{lead['key']}"), json={
        "status": "qualified", "fields": {"region": "US"}}, timeout=5).json()["data"]
    assert patched["fields"] == {"refsync_id": "rs-9", "region": "US"}
    assert patched["status"] == "qualified"
    assert patched["updated_at"] > lead["updated_at"]
    fetched = api.get(url(api, f"/leads/{lead['key']}"), timeout=5).json()["data"]
    assert fetched == patched
    only_alice = read_all(api, "leads", partner_key="part_alice", status="qualified")
    assert [i["key"] for i in only_alice] == [lead["key"]]


def test_invalid_lead_lists_every_problem(
    emulator: PartnerStackEmulator, api: requests.Session
) -> None:
    seed_program(emulator)
    answer = api.post(url(api, "/leads"), json={"partner_key": "part_nobody",
                                                "amount": "12.50", "colour": "red"}, timeout=5)
    assert answer.status_code == 400
    errors = answer.json()["errors"]
    assert set(errors) == {"partner_key", "email", "amount", "colour"}
    assert read_all(api, "leads") == []


def test_authentication_is_required(server: SandboxServer, emulator: PartnerStackEmulator) -> None:
    for auth in (None, ("pk_sandbox_refsync", "wrong"), ("someone", "sk_sandbox_refsync")):
        answer = requests.get(f"{server.url}/api/v2/leads", auth=auth, timeout=5)
        assert answer.status_code == 401
        assert answer.json() == {"data": None, "status": 401,
                                 "message": "Unauthorized: check your public and secret key"}
    bearer = requests.get(f"{server.url}/api/v2/leads", timeout=5,
                          headers={"Authorization": "Bearer sk_sandbox_refsync"})
    assert bearer.status_code == 401


def test_unknown_items_and_resources_are_404s(
    emulator: PartnerStackEmulator, api: requests.Session
) -> None:
    missing = api.get(url(api, "/leads/lead_00000999"), timeout=5)
    assert missing.status_code == 404
    assert missing.json() == {"data": None, "message": "Lead not found", "status": 404}
    assert api.get(url(api, "/widgets"), timeout=5).status_code == 404


def test_transactions_earn_the_referring_partner_a_reward(
    emulator: PartnerStackEmulator, api: requests.Session
) -> None:
    seed_program(emulator)
    customer = api.post(url(api, "/customers"), json={
        "customer_key": "cus-1", "email": "buyer@prospect.example", "partner_key": "part_alice",
    }, timeout=5)
    assert customer.status_code == 200
    duplicate = api.post(url(api, "/customers"), json={
        "customer_key": "cus-1", "email": "other@prospect.example"}, timeout=5)
    assert duplicate.status_code == 409
    assert api.get(url(api, "/customers/cus-1"), timeout=5).json()["data"]["email"] == (
        "buyer@prospect.example")
    sale = api.post(url(api, "/transactions"), json={
        "customer_key": "cus-1", "amount": 12_500, "currency": "usd"}, timeout=5)
    assert sale.status_code == 200
    rewards = read_all(api, "rewards", partner_key="part_alice")
    assert [(r["amount"], r["reward_status"], r["transaction_key"]) for r in rewards] == [
        (2_500, "pending", sale.json()["data"]["key"])]
    assert api.patch(url(api, f"/transactions/{sale.json()['data']['key']}"),
                     json={"amount": 1}, timeout=5).status_code == 405


def test_records_flag_deleted_items(emulator: PartnerStackEmulator, api: requests.Session) -> None:
    seed_program(emulator, leads=2)
    key = read_all(api, "leads")[0]["key"]
    assert api.delete(url(api, f"/leads/{key}"), timeout=5).status_code == 200
    assert len(read_all(api, "leads")) == 1
    flags = {r["key"]: r["deleted"] for r in emulator.records("leads")}
    assert flags[key] is True and list(flags.values()).count(False) == 1
    with pytest.raises(KeyError):
        emulator.records("widgets")


def test_seed_rejects_dangling_references(emulator: PartnerStackEmulator) -> None:
    from refsync.sandbox.core import EmulatorRequestError

    with pytest.raises(EmulatorRequestError, match=r"leads\[0\].*part_ghost"):
        emulator.seed({"leads": [{"partner_key": "part_ghost", "email": "x@example.com"}]})


def test_fault_presets_use_partnerstack_bodies(
    server: SandboxServer, emulator: PartnerStackEmulator, api: requests.Session
) -> None:
    added = requests.post(f"{server.url}/_sandbox/faults", json={"preset": "unauthorized"},
                          timeout=5)
    assert added.status_code == 200
    denied = api.get(url(api, "/leads"), timeout=5)
    assert denied.status_code == 401 and denied.json()["status"] == 401
    assert api.get(url(api, "/leads"), timeout=5).status_code == 200
    requests.post(f"{server.url}/_sandbox/faults", json={"preset": "server_error"}, timeout=5)
    failed = api.get(url(api, "/leads"), timeout=5)
    assert failed.status_code == 503
    assert failed.json() == {"data": None, "message": "Sandbox fault: HTTP 503", "status": 503}


def test_simulate_submits_leads_from_approved_partners(
    server: SandboxServer, emulator: PartnerStackEmulator, api: requests.Session
) -> None:
    emulator.seed({"partnerships": [
        {"key": "part_a", "email": "a@partners.example"},
        {"key": "part_b", "email": "b@partners.example"},
        {"key": "part_c", "email": "c@partners.example", "approved_status": "pending"},
    ]})
    answer = requests.post(f"{server.url}/_sandbox/simulate", json={"new_leads": 3}, timeout=5)
    assert answer.status_code == 200
    keys = answer.json()["new_leads"]
    leads = {i["key"]: i for i in read_all(api, "leads")}
    assert sorted(leads) == sorted(keys)
    assert [leads[k]["partner_key"] for k in keys] == ["part_a", "part_b", "part_a"]
    assert {leads[k]["status"] for k in keys} == {"new"}
