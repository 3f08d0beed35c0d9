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

from refsync.sandbox.core import Emulator, EmulatorRequestError, build_app
from refsync.sandbox.salesforce import SalesforceEmulator
from refsync.sandbox.server import SandboxServer
from refsync.sandbox.tls import TLSMaterial, make_tls_material
from refsync.yamlsource import did_you_mean

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
        ValueError: the file cannot be read, does not hold an object per system, or names a
            system the sandbox does not have.
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
    for system in data:
        if system not in DEFAULT_PORTS:
            raise ValueError(f"{_seed_source(seed)}: {_unknown_system(str(system))}")
    return data


def _seed_source(seed: str | dict[str, Any] | None) -> str:
    """How messages name a seed: its file, or the data given in the call."""
    return f"sandbox seed file {seed}" if isinstance(seed, str) else "sandbox seed"


def _unknown_system(system: str) -> str:
    systems = f"the sandbox's systems are {', '.join(DEFAULT_PORTS)}"
    guess = did_you_mean(system, DEFAULT_PORTS)
    if guess is not None:
        return f"no system {system!r} — did you mean {guess!r}? ({systems})"
    return f"no system {system!r} — {systems}"


def _seeded_emulators(
    payloads: dict[str, dict[str, Any]], seed: str | dict[str, Any] | None
) -> dict[str, Emulator]:
    """A new emulator per available system, each holding its part of the seed.

    Raises:
        ValueError: an emulator refuses its part; the message names the seed, the system and
            what is wrong with it.
    """
    emulators: dict[str, Emulator] = {}
    for system, emulator_class in available_emulators().items():
        emulator = emulator_class()
        if system in payloads:
            try:
                emulator.seed(payloads[system])
            except EmulatorRequestError as exc:
                what = "the file" if isinstance(seed, str) else "the seed"
                raise ValueError(
                    f"{_seed_source(seed)}, {system}: {exc.message} — correct {what} (records "
                    "in the API's own field names) and start the sandbox again") from exc
        emulator.calls.reset()
        emulators[system] = emulator
    return emulators


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
        ValueError: bad seed (nothing is bound or written then).
        ServerStartError: a port could not be bound; the TLS files are written only once every
            port is bound, so those of a sandbox running in ``workdir`` stay as they are.
    """
    emulators = _seeded_emulators(load_seed(seed), seed)
    wanted_ports = {**DEFAULT_PORTS, **(ports or {})}
    temporary = workdir is None
    directory = Path(tempfile.mkdtemp(prefix="refsync-sandbox-")) if workdir is None else Path(
        workdir)
    tls = TLSMaterial.in_directory(directory)
    servers: dict[str, SandboxServer] = {}
    try:
        for system, emulator in emulators.items():
            servers[system] = SandboxServer(
                build_app(emulator, latency_ms=latency_ms),
                host=host,
                port=wanted_ports.get(system, 0),
                certfile=tls.certfile if emulator.tls else None,
                keyfile=tls.keyfile if emulator.tls else None,
            )
        # every port first: a sandbox that cannot listen leaves alone the TLS files of one
        # already running in the same directory (its clients trust that CA)
        for server in servers.values():
            server.bind()
        make_tls_material(directory)
        for server in servers.values():
            server.start()
    except BaseException:
        for server in servers.values():
            server.stop()
        if temporary:
            shutil.rmtree(directory, ignore_errors=True)
        raise
    return RunningSandbox(emulators, servers, tls.ca_bundle,
                          temporary_dir=directory if temporary else None)
