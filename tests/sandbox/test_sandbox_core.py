"""The sandbox core: control API, call counting, fault rules, servers, TLS, runner, demo data."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from typing import Any, ClassVar

import pytest
import requests
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from refsync.sandbox.core import Emulator, build_app, json_body, record_faults
from refsync.sandbox.demo import generate_demo
from refsync.sandbox.faults import FaultInjector, FaultRule
from refsync.sandbox.runner import available_emulators, load_seed, start_sandbox
from refsync.sandbox.server import SandboxServer, ServerStartError
from refsync.sandbox.tls import make_tls_material


class NotesEmulator(Emulator):
    """A tiny emulator: notes by id, and a batch endpoint honouring record faults."""

    name: ClassVar[str] = "notes"

    def __init__(self) -> None:
        super().__init__()
        self.notes: dict[str, dict[str, Any]] = {}

    def reset(self) -> None:
        super().reset()
        self.notes.clear()

    def seed(self, payload: dict[str, Any]) -> dict[str, int]:
        for note in payload.get("notes", []):
            self.notes[str(note["id"])] = dict(note)
        return {"notes": len(payload.get("notes", []))}

    def records(self, object_name: str) -> list[dict[str, Any]]:
        if object_name != "notes":
            raise KeyError(object_name)
        return list(self.notes.values())

    def api_routes(self) -> list[BaseRoute]:
        async def get_note(request: Request) -> Response:
            note = self.notes.get(request.path_params["note_id"])
            return JSONResponse(note or {"error": "missing"}, status_code=200 if note else 404)

        async def batch(request: Request) -> Response:
            faults = record_faults(request)
            results = []
            for note in (await json_body(request))["notes"]:
                error = faults.error_for(json.dumps(note)) if faults else None
                if error is None:
                    self.notes[str(note["id"])] = note
                results.append({"id": note["id"], "ok": error is None, "error": error})
            return JSONResponse(results)

        return [
            Route("/v1/notes/{note_id}", get_note, methods=["GET"]),
            Route("/v1/notes/batch", batch, methods=["POST"]),
        ]

    def fault_presets(self) -> dict[str, list[FaultRule]]:
        return {"server_error": [FaultRule(status=502, times=1, preset="server_error")]}


@pytest.fixture(scope="module")
def notes_server() -> Iterator[tuple[NotesEmulator, str]]:
    emulator = NotesEmulator()
    server = SandboxServer(build_app(emulator))
    server.start()
    yield emulator, server.url
    server.stop()


@pytest.fixture
def notes(notes_server: tuple[NotesEmulator, str]) -> Iterator[tuple[NotesEmulator, str]]:
    emulator, url = notes_server
    with requests.Session() as http:
        http.trust_env = False
        assert http.post(f"{url}/_sandbox/reset").json() == {"reset": True}
        http.post(f"{url}/_sandbox/seed", json={"notes": [{"id": 1, "text": "hello"}]})
    yield emulator, url


def get(url: str, **kwargs: Any) -> requests.Response:
    return requests.get(url, timeout=kwargs.pop("timeout", 10), **kwargs)


def post(url: str, body: Any) -> requests.Response:
    return requests.post(url, json=body, timeout=10)


def test_calls_are_counted_by_route_template(notes: tuple[NotesEmulator, str]) -> None:
    _, url = notes
    assert get(f"{url}/v1/notes/1").json() == {"id": 1, "text": "hello"}
    assert get(f"{url}/v1/notes/2").status_code == 404
    assert get(f"{url}/v1/nowhere").status_code == 404
    calls = get(f"{url}/_sandbox/calls").json()
    assert calls == {"total": 3, "by_route": {"GET /v1/notes/{note_id}": 2,
                                              "GET (no route)": 1}}


def test_control_api_records_health_and_errors(notes: tuple[NotesEmulator, str]) -> None:
    _, url = notes
    assert get(f"{url}/_sandbox/health").json() == {"status": "ok", "emulator": "notes"}
    assert get(f"{url}/_sandbox/records/notes").json() == [{"id": 1, "text": "hello"}]
    assert get(f"{url}/_sandbox/records/widgets").status_code == 404
    assert post(f"{url}/_sandbox/simulate", {}).status_code == 400
    assert post(f"{url}/_sandbox/settings", {"x": 1}).status_code == 400
    bad = requests.post(f"{url}/_sandbox/seed", data="{nope", timeout=10)
    assert bad.status_code == 400 and "not valid JSON" in bad.json()["error"]


def test_fault_rule_matching_by_method_path_body_times_and_after(
    notes: tuple[NotesEmulator, str],
) -> None:
    _, url = notes
    rule = {"method": "POST", "path": r"/batch$", "status": 409, "body": {"why": "conflict"},
            "headers": {"X-Fault": "yes"}, "times": 2, "after": 1, "match_body": "boom"}
    assert post(f"{url}/_sandbox/faults", {"rules": [rule]}).json()["added"] == [1]
    batch = f"{url}/v1/notes/batch"
    assert post(batch, {"notes": [{"id": 5, "text": "quiet"}]}).status_code == 200
    assert post(batch, {"notes": [{"id": 6, "text": "boom"}]}).status_code == 200  # after=1
    hit = post(batch, {"notes": [{"id": 7, "text": "boom"}]})
    assert (hit.status_code, hit.json(), hit.headers["X-Fault"]) == (409, {"why": "conflict"},
                                                                      "yes")
    assert post(batch, {"notes": [{"id": 8, "text": "boom"}]}).status_code == 409
    assert post(batch, {"notes": [{"id": 9, "text": "boom"}]}).status_code == 200  # times=2
    assert get(f"{url}/v1/notes/1").status_code == 200  # GET never matched
    listed = get(f"{url}/_sandbox/faults").json()
    assert listed["rules"][0]["matched"] == 4 and listed["rules"][0]["fired"] == 2
    assert listed["injected"] == {"status_409": 2}
    assert requests.delete(f"{url}/_sandbox/faults", timeout=10).json() == {"cleared": True}
    after_clear = get(f"{url}/_sandbox/faults").json()
    assert after_clear["rules"] == [] and after_clear["injected_total"] == 2


def test_presets_merge_generic_and_emulator_ones(notes: tuple[NotesEmulator, str]) -> None:
    _, url = notes
    presets = get(f"{url}/_sandbox/faults").json()["presets"]
    assert {"rate_limit_burst", "server_error", "slow", "hang"} <= set(presets)
    assert post(f"{url}/_sandbox/faults", {"preset": "server_error"}).status_code == 200
    assert get(f"{url}/v1/notes/1").status_code == 502  # the emulator's flavour won
    assert post(f"{url}/_sandbox/faults", {"preset": "rate_limit_burst", "times": 1}).ok
    limited = get(f"{url}/v1/notes/1")
    assert limited.status_code == 429 and limited.headers["Retry-After"] == "1"
    assert limited.json() == {"status": 429, "message": "Sandbox fault: HTTP 429"}
    unknown = post(f"{url}/_sandbox/faults", {"preset": "meteor"})
    assert unknown.status_code == 400 and "known:" in unknown.json()["error"]
    invalid = post(f"{url}/_sandbox/faults", {"rules": [{"path": "(", "status": 500}]})
    assert invalid.status_code == 400
    assert post(f"{url}/_sandbox/faults", {"rules": [{"status": 700}]}).status_code == 400


def test_record_faults_fail_only_matching_records(notes: tuple[NotesEmulator, str]) -> None:
    emulator, url = notes
    rule = {"path": "/batch", "match_record": "poison", "body": {"code": "REJECTED"}}
    post(f"{url}/_sandbox/faults", {"rules": [rule]})
    results = post(f"{url}/v1/notes/batch", {"notes": [
        {"id": 10, "text": "fine"}, {"id": 11, "text": "poison"}, {"id": 12, "text": "ok"}]}).json()
    assert [r["ok"] for r in results] == [True, False, True]
    assert results[1]["error"] == {"code": "REJECTED"}
    assert sorted(emulator.notes) == ["1", "10", "12"]
    assert get(f"{url}/_sandbox/faults").json()["injected"] == {"record_error": 1}


def test_slow_and_hung_calls_make_clients_time_out(notes: tuple[NotesEmulator, str]) -> None:
    _, url = notes
    post(f"{url}/_sandbox/faults", {"preset": "slow", "delay_ms": 1000, "times": 1})
    with pytest.raises(requests.exceptions.ReadTimeout):
        get(f"{url}/v1/notes/1", timeout=0.2)
    post(f"{url}/_sandbox/faults", {"preset": "hang"})
    with pytest.raises(requests.exceptions.ReadTimeout):
        get(f"{url}/v1/notes/1", timeout=0.2)
    assert get(f"{url}/v1/notes/1").status_code == 200
    assert get(f"{url}/_sandbox/faults").json()["injected"] == {"slow": 1, "hang": 1}


def test_probability_is_seeded_and_reproducible() -> None:
    def fired(seed: int) -> list[bool]:
        injector = FaultInjector(seed=seed)
        injector.add([FaultRule(status=500, probability=0.5)])
        return [injector.decide("GET", "/x", b"").response_rule is not None for _ in range(40)]

    assert fired(1) == fired(1)
    assert 5 < sum(fired(1)) < 35
    never = FaultInjector()
    never.add([FaultRule(status=500, probability=0.0)])
    assert all(never.decide("GET", "/x", b"").response_rule is None for _ in range(20))


def test_reset_clears_data_calls_and_faults(notes: tuple[NotesEmulator, str]) -> None:
    emulator, url = notes
    post(f"{url}/_sandbox/faults", {"rules": [{"status": 500}]})
    get(f"{url}/v1/notes/1")
    post(f"{url}/_sandbox/reset", {})
    assert emulator.notes == {}
    assert get(f"{url}/_sandbox/calls").json()["total"] == 0
    assert get(f"{url}/_sandbox/faults").json()["rules"] == []


def test_latency_is_added_to_api_calls_only() -> None:
    emulator = NotesEmulator()
    emulator.seed({"notes": [{"id": 1}]})
    with SandboxServer(build_app(emulator, latency_ms=800)) as server:
        with pytest.raises(requests.exceptions.ReadTimeout):
            get(f"{server.url}/v1/notes/1", timeout=0.2)
        assert get(f"{server.url}/_sandbox/health", timeout=0.5).status_code == 200


def test_stop_releases_a_hung_connection() -> None:
    emulator = NotesEmulator()
    server = SandboxServer(build_app(emulator))
    server.start()
    emulator.faults.add([FaultRule(hang=True)])
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as client:
        client.sendall(b"GET /v1/notes/1 HTTP/1.1\r\nHost: x\r\n\r\n")
        server.stop(timeout=10)
        answer = client.recv(1024)
    assert answer == b"" or answer.startswith(b"HTTP/1.1 503")


def test_tls_server_is_trusted_through_the_ca_bundle(tmp_path: Any) -> None:
    tls = make_tls_material(tmp_path)
    assert tls.ca_bundle.read_text().startswith("-----BEGIN CERTIFICATE-----")
    emulator = NotesEmulator()
    with SandboxServer(build_app(emulator), certfile=tls.certfile,
                       keyfile=tls.keyfile) as server, requests.Session() as http:
        assert server.url.startswith("https://127.0.0.1:")
        http.trust_env = False
        http.verify = str(tls.ca_bundle)
        assert http.get(f"{server.url}/_sandbox/health", timeout=10).ok
        http.verify = True
        with pytest.raises(requests.exceptions.SSLError):
            http.get(f"{server.url}/_sandbox/health", timeout=10)


def test_port_in_use_is_reported() -> None:
    with SandboxServer(build_app(NotesEmulator())) as first, pytest.raises(
        ServerStartError, match="cannot listen"
    ):
        SandboxServer(build_app(NotesEmulator()), port=first.port).start()


def test_runner_starts_every_available_emulator(tmp_path: Any) -> None:
    with start_sandbox(seed=None, ports=dict.fromkeys(available_emulators(), 0),
                       workdir=tmp_path) as sandbox:
        assert "salesforce" in sandbox.urls
        assert sandbox.urls["salesforce"].startswith("https://")
        assert sandbox.credentials["salesforce"]["consumer_key"] == "refsync-sandbox-key"
        assert sandbox.ca_bundle.parent == tmp_path
        described = sandbox.as_json()
        assert set(described["systems"]) == set(sandbox.urls)
        with requests.Session() as http:
            http.trust_env = False
            http.verify = str(sandbox.ca_bundle)
            for url in sandbox.urls.values():
                assert http.get(f"{url}/_sandbox/health", timeout=10).json()["status"] == "ok"


def test_load_seed_forms(tmp_path: Any) -> None:
    assert load_seed(None) == {} and load_seed("none") == {}
    assert load_seed("demo") == generate_demo()
    path = tmp_path / "seed.json"
    path.write_text(json.dumps({"salesforce": {"Lead": []}}))
    assert load_seed(str(path)) == {"salesforce": {"Lead": []}}
    with pytest.raises(ValueError, match="cannot read"):
        load_seed(str(tmp_path / "missing.json"))
    with pytest.raises(ValueError, match="must be"):
        load_seed({"salesforce": []})


def test_demo_data_is_deterministic_and_awkward() -> None:
    demo = generate_demo()
    assert demo == generate_demo() and demo != generate_demo(seed=8)
    leads = demo["partnerstack"]["leads"]
    assert len(leads) == 61 and len(demo["partnerstack"]["partnerships"]) == 8
    emails = [lead["email"].strip().lower() for lead in leads]
    twice = [e for e in set(emails) if emails.count(e) > 1]
    assert twice, "one prospect is referred by two partners"
    pair = [lead for lead in leads if lead["email"].strip().lower() == twice[0]]
    assert len({lead["partner_key"] for lead in pair}) == 2
    assert any(lead["email"] != lead["email"].strip() for lead in pair)
    customers = [a["Name"] for a in demo["salesforce"]["Account"]
                 if a["Type"] == "Customer - Direct"]
    assert {lead["company"] for lead in leads} & set(customers)
    sf_emails = {lead["Email"] for lead in demo["salesforce"]["Lead"]}
    assert any(e.isupper() and e.lower() in emails for e in sf_emails)
    assert any(not lead["name"].isascii() for lead in leads)
    assert all(isinstance(lead["created_at"], int) for lead in leads)
    assert {"contacts", "companies", "deals"} <= set(demo["hubspot"])
