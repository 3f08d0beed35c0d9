"""Start every sandbox emulator at once, each on its own loopback port.

>>> with start_sandbox(ports={"salesforce": 0, "hubspot": 0, "partnerstack": 0}) as sandbox:
...     sandbox.urls["salesforce"]          # doctest: +SKIP
'https://127.0.0.1:40123'
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import shutil
import tempfile
from pathlib import Path
from types import TracebackType
from typing import Any

from refsync.sandbox.core import Emulator, build_app
from refsync.sandbox.salesforce import SalesforceEmulator
from refsync.sandbox.server import SandboxServer
from refsync.sandbox.tls import make_tls_material

__all__ = ["DEFAULT_PORTS", "RunningSandbox", "available_emulators", "load_seed", "start_sandbox"]

DEFAULT_PORTS: dict[str, int] = {"salesforce": 8701, "hubspot": 8702, "partnerstack": 8703}

# Emulators living in optional modules: (system, module, class name).
_OPTIONAL_EMULATORS = (
    ("hubspot", "refsync.sandbox.hubspot", "HubSpotEmulator"),
    ("partnerstack", "refsync.sandbox.partnerstack", "PartnerStackEmulator"),
)


def available_emulators() -> dict[str, type[Emulator]]:
    """Return the emulator classes present in this installation, by system name."""
    found: dict[str, type[Emulator]] = {"salesforce": SalesforceEmulator}
    for system, module_name, class_name in _OPTIONAL_EMULATORS:
        if importlib.util.find_spec(module_name) is None:
            continue
        module = importlib.import_module(module_name)
        emulator_class = getattr(module, class_name, None)
        if isinstance(emulator_class, type) and issubclass(emulator_class, Emulator):
            found[system] = emulator_class
    return found


def load_seed(seed: str | dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    """Turn a ``seed`` argument into a payload per system.

    Args:
        seed: ``"demo"`` for the generated demo data, ``None`` or ``"none"`` for empty systems,
            a path to a JSON file ``{"<system>": {"<object>": [records]}}``, or such a dict.

    Raises:
        ValueError: the file cannot be read or does not hold an object per system.
    """
    if seed is None or seed == "none":
        return {}
    if seed == "demo":
        from refsync.sandbox.demo import generate_demo

        return generate_demo()
    if isinstance(seed, str):
        path = Path(seed)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ValueError(f"cannot read sandbox seed file {path}: {exc}") from exc
    else:
        data = seed
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise ValueError('a sandbox seed must be {"<system>": {"<object>": [records]}}')
    return data


class RunningSandbox:
    """The running emulators: their URLs, credentials, CA bundle; stops them on exit.

    Attributes:
        urls: base URL per system (Salesforce is https, the others http).
        credentials: fixed sandbox credentials per system.
        ca_bundle: PEM file of the CA that signed the https servers' certificates.
        emulators: the emulator objects, for in-process inspection.
        servers: the servers, one per system.
    """

    def __init__(
        self,
        emulators: dict[str, Emulator],
        servers: dict[str, SandboxServer],
        ca_bundle: Path,
        *,
        temporary_dir: Path | None = None,
    ) -> None:
        self._temporary_dir = temporary_dir
        self.emulators = emulators
        self.servers = servers
        self.ca_bundle = ca_bundle
        self.urls = {system: server.url for system, server in servers.items()}
        self.credentials: dict[str, dict[str, str]] = {}
        for system, emulator in emulators.items():
            creds = emulator.credentials()
            if system == "salesforce":
                creds["token_url"] = f"{self.urls[system]}/services/oauth2/token"
            self.credentials[system] = creds

    def as_json(self) -> dict[str, Any]:
        """Return URLs, credentials and the CA bundle, JSON-ready (``refsync sandbox --json``)."""
        return {
            "systems": {
                system: {"url": self.urls[system], "credentials": self.credentials[system]}
                for system in self.urls
            },
            "ca_bundle": str(self.ca_bundle),
        }

    def stop(self) -> None:
        """Stop every server and remove the TLS files if they live in a temporary directory."""
        for server in self.servers.values():
            server.stop()
        if self._temporary_dir is not None:
            shutil.rmtree(self._temporary_dir, ignore_errors=True)
            self._temporary_dir = None

    def __enter__(self) -> RunningSandbox:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def start_sandbox(
    *,
    seed: str | dict[str, Any] | None = "demo",
    host: str = "127.0.0.1",
    ports: dict[str, int] | None = None,
    latency_ms: int = 0,
    workdir: Path | str | None = None,
) -> RunningSandbox:
    """Start every available emulator, seeded, and return once all accept connections.

    Args:
        seed: see :func:`load_seed`.
        host: interface to bind (loopback by default; the sandbox has no real security).
        ports: port per system; 0 picks a free one; systems missing use :data:`DEFAULT_PORTS`.
        latency_ms: added to every API call's answer.
        workdir: where to write the TLS files; a temporary directory when omitted.

    Raises:
        ValueError: bad seed. ServerStartError: a port could not be bound.
    """
    payloads = load_seed(seed)
    wanted_ports = {**DEFAULT_PORTS, **(ports or {})}
    temporary = workdir is None
    directory = Path(tempfile.mkdtemp(prefix="refsync-sandbox-")) if workdir is None else Path(
        workdir)
    tls = make_tls_material(directory)
    emulators: dict[str, Emulator] = {}
    servers: dict[str, SandboxServer] = {}
    try:
        for system, emulator_class in available_emulators().items():
            emulator = emulator_class()
            if system in payloads:
                emulator.seed(payloads[system])
            emulator.calls.reset()
            server = SandboxServer(
                build_app(emulator, latency_ms=latency_ms),
                host=host,
                port=wanted_ports.get(system, 0),
                certfile=tls.certfile if emulator_class.tls else None,
                keyfile=tls.keyfile if emulator_class.tls else None,
            )
            server.start()
            emulators[system] = emulator
            servers[system] = server
    except BaseException:
        for server in servers.values():
            server.stop()
        if temporary:
            shutil.rmtree(directory, ignore_errors=True)
        raise
    return RunningSandbox(emulators, servers, tls.ca_bundle,
                          temporary_dir=directory if temporary else None)
