"""``refsync sandbox`` as a user runs it: a foreground process printing where to connect."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

FREE_PORTS = ["--salesforce-port", "0", "--hubspot-port", "0", "--partnerstack-port", "0"]
READY_TIMEOUT = 60.0  # a guard against hanging forever, not a performance assertion


def start(*args: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if k != "REQUESTS_CA_BUNDLE"}
    return subprocess.Popen(
        [sys.executable, "-m", "refsync", "sandbox", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )


def read_line(process: subprocess.Popen[str]) -> str:
    lines: queue.Queue[str] = queue.Queue()
    assert process.stdout is not None
    stdout = process.stdout
    threading.Thread(target=lambda: lines.put(stdout.readline()), daemon=True).start()
    try:
        return lines.get(timeout=READY_TIMEOUT)
    except queue.Empty:
        process.kill()
        pytest.fail("refsync sandbox printed nothing")


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait(10)


def test_json_line_gives_urls_credentials_and_ca_bundle(
    processes: list[subprocess.Popen[str]],
) -> None:
    began = time.monotonic()
    process = start("--json", *FREE_PORTS)
    processes.append(process)
    ready = json.loads(read_line(process))
    elapsed = time.monotonic() - began
    print(f"refsync sandbox --json ready after {elapsed:.2f}s (process start included)")
    systems = ready["systems"]
    assert systems["salesforce"]["url"].startswith("https://127.0.0.1:")
    assert systems["salesforce"]["credentials"]["consumer_key"] == "refsync-sandbox-key"
    assert Path(ready["ca_bundle"]).is_file()
    with requests.Session() as http:
        http.trust_env = False
        http.verify = ready["ca_bundle"]
        for system in systems.values():
            health = http.get(f"{system['url']}/_sandbox/health", timeout=10)
            assert health.json()["status"] == "ok"
        leads = http.get(f"{systems['salesforce']['url']}/_sandbox/records/Lead", timeout=10)
        assert len(leads.json()) > 0  # demo data loaded by default
    process.send_signal(signal.SIGTERM)
    assert process.wait(15) == 0


def test_readable_summary_and_ctrl_c(processes: list[subprocess.Popen[str]],
                                     tmp_path: Path) -> None:
    seed = tmp_path / "seed.json"
    seed.write_text(json.dumps({"salesforce": {"Lead": [{"LastName": "Solo", "Company": "S"}]}}))
    process = start("--seed", str(seed), *FREE_PORTS)
    processes.append(process)
    first = read_line(process)
    assert first.startswith("refsync sandbox ready in")
    url_line = read_line(process)
    assert url_line.split()[0] == "salesforce" and url_line.split()[1].startswith("https://")
    process.send_signal(signal.SIGINT)
    assert process.wait(15) == 0
    assert process.stderr is not None and "sandbox stopped" in process.stderr.read()


def test_bad_seed_file_is_a_clear_error(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "refsync", "sandbox", "--seed", str(tmp_path / "nope.json"),
         *FREE_PORTS], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 1
    assert "cannot read sandbox seed file" in result.stderr
