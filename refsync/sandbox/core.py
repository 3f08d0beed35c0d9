"""The base of every sandbox emulator and the ASGI app that serves one.

An :class:`Emulator` holds one vendor API's state in memory and provides its routes.
:func:`build_app` wraps those routes with what every emulator shares: call counting per route
template, fault injection, optional latency, and the control API under ``/_sandbox/``::

    POST   /_sandbox/reset              back to empty (data, call counts, faults)
    GET    /_sandbox/health             {"status": "ok", "emulator": name}
    POST   /_sandbox/seed               {"<object>": [records in the API's field names]} -> counts
    GET    /_sandbox/records/<object>   every record, deleted/archived ones flagged
    GET    /_sandbox/calls              {"total": N, "by_route": {"GET /path/{template}": N}}
    POST   /_sandbox/faults             {"rules": [rule, ...]} or {"preset": name, ...overrides}
    GET    /_sandbox/faults             active rules with match/fire counts, injected totals by kind
    DELETE /_sandbox/faults             drop every rule (and release hung connections)
    POST   /_sandbox/simulate           deterministic sales activity (CRMs only)
    POST   /_sandbox/settings           emulator knobs (e.g. Salesforce daily API limit)

Control calls are never counted and never faulted.
"""

from __future__ import annotations

import abc
import asyncio
import json
import threading
from collections import Counter
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, ClassVar

from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Match, Mount, Route

from refsync.sandbox.faults import FaultInjector, FaultRule, RecordFaults
from refsync.sandbox.faults import generic_presets as _generic_presets

__all__ = [
    "CONTROL_PREFIX",
    "SANDBOX_CREDENTIALS",
    "CallCounter",
    "Emulator",
    "EmulatorRequestError",
    "FaultInjector",
    "FaultRule",
    "RecordFaults",
    "build_app",
    "json_body",
    "record_faults",
]

CONTROL_PREFIX = "/_sandbox"

#: Fixed credentials every sandbox accepts. They are documented test values, not secrets.
SANDBOX_CREDENTIALS: dict[str, dict[str, str]] = {
    "salesforce": {
        "consumer_key": "refsync-sandbox-key",
        "consumer_secret": "refsync-sandbox-secret",
    },
    "hubspot": {"access_token": "pat-sandbox-refsync"},
    "partnerstack": {"public_key": "pk_sandbox_refsync", "secret_key": "sk_sandbox_refsync"},
}

_RECORD_FAULTS_KEY = "refsync.sandbox.record_faults"

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class EmulatorRequestError(Exception):
    """A control-API request the emulator refuses; answered with ``status`` and ``message``."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


class CallCounter:
    """Thread-safe count of API calls, in all and per ``"METHOD /route/{template}"``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_route: Counter[str] = Counter()

    def add(self, route_key: str) -> None:
        """Count one call of ``route_key``."""
        with self._lock:
            self._by_route[route_key] += 1

    def reset(self) -> None:
        """Forget every count."""
        with self._lock:
            self._by_route.clear()

    def total(self) -> int:
        """Return the number of API calls counted since the last reset."""
        with self._lock:
            return sum(self._by_route.values())

    def get(self, route_key: str) -> int:
        """Return the calls counted for one ``"METHOD /template"`` key."""
        with self._lock:
            return self._by_route[route_key]

    def snapshot(self) -> dict[str, Any]:
        """Return ``{"total": N, "by_route": {...}}`` as served by ``GET /_sandbox/calls``."""
        with self._lock:
            return {"total": sum(self._by_route.values()), "by_route": dict(self._by_route)}


class Emulator(abc.ABC):
    """One emulated API. Subclasses hold their state in memory, guarded by ``self.lock``.

    Subclasses set ``name``, implement the abstract methods and, where their vendor has its own
    flavour, override :meth:`fault_presets`, :meth:`fault_body`, :meth:`simulate`,
    :meth:`configure` and :meth:`not_found_body`. Handlers that process batches call
    :func:`record_faults` to honour ``match_record`` fault rules.
    """

    name: ClassVar[str]
    #: whether the emulator must be served over HTTPS (simple-salesforce only speaks https).
    tls: ClassVar[bool] = False
    #: treat ``/a/b/`` as ``/a/b`` for API calls (Salesforce accepts both spellings).
    ignore_trailing_slash: ClassVar[bool] = False

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.calls = CallCounter()
        self.faults = FaultInjector()

    @abc.abstractmethod
    def reset(self) -> None:
        """Return to the empty state.

        Subclasses drop their data and must call ``super().reset()``, which clears the call
        counts and the fault rules (the control API's ``POST /_sandbox/reset`` relies on it).
        """
        self.calls.reset()
        self.faults.reset()

    @abc.abstractmethod
    def seed(self, payload: dict[str, Any]) -> dict[str, int]:
        """Add records given as ``{"<object>": [records in API field names]}``; return counts.

        Raises:
            EmulatorRequestError: the payload names an unknown object or holds invalid records.
        """

    @abc.abstractmethod
    def records(self, object_name: str) -> list[dict[str, Any]]:
        """Return every record of ``object_name`` including deleted/archived ones, flagged.

        Raises:
            KeyError: no such object.
        """

    @abc.abstractmethod
    def api_routes(self) -> list[BaseRoute]:
        """Return the vendor API routes; their path templates key the call counts."""

    def fault_presets(self) -> dict[str, list[FaultRule]]:
        """Return vendor-specific presets; they are merged over the generic ones."""
        return {}

    def all_fault_presets(self) -> dict[str, list[FaultRule]]:
        """Return the generic presets overlaid with this emulator's own."""
        presets = _generic_presets()
        presets.update(self.fault_presets())
        return presets

    def fault_body(self, status: int) -> Any:
        """Return the vendor's error body for an injected ``status`` when a rule gives none."""
        return {"status": status, "message": f"Sandbox fault: HTTP {status}"}

    def response_headers(self) -> dict[str, str]:
        """Return headers added to injected fault responses (e.g. usage headers)."""
        return {}

    def not_found_body(self, path: str) -> Any:
        """Return the vendor's body for a request no route matches."""
        return {"status": 404, "message": f"No such resource: {path}"}

    def simulate(self, payload: dict[str, Any]) -> dict[str, Any]:
        """Make deterministic 'sales activity' happen (CRMs override this).

        Raises:
            EmulatorRequestError: this emulator has no simulation.
        """
        raise EmulatorRequestError(f"{self.name} does not support simulate")

    def configure(self, settings: dict[str, Any]) -> dict[str, Any]:
        """Change emulator knobs (``POST /_sandbox/settings``); return the current settings.

        Raises:
            EmulatorRequestError: unknown setting.
        """
        if settings:
            raise EmulatorRequestError(f"{self.name} has no settings: {sorted(settings)}")
        return {}

    def credentials(self) -> dict[str, str]:
        """Return the fixed sandbox credentials clients use against this emulator."""
        return dict(SANDBOX_CREDENTIALS.get(self.name, {}))


def record_faults(request: Request) -> RecordFaults | None:
    """Return the record-level fault rules that matched this call, if any.

    A batch handler asks ``faults.error_for(json.dumps(record))`` per record and, when it gets
    an error back, reports that record as failed with it.
    """
    value = request.scope.get(_RECORD_FAULTS_KEY)
    return value if isinstance(value, RecordFaults) and value else None


async def json_body(request: Request) -> Any:
    """Parse the request body as JSON; an empty body is ``{}``.

    Raises:
        EmulatorRequestError: the body is not JSON.
    """
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise EmulatorRequestError(f"request body is not valid JSON: {exc}") from exc


def _error(message: str, status: int = 400) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _control_routes(emulator: Emulator) -> list[BaseRoute]:
    """The ``/_sandbox/`` control API of one emulator."""

    def guarded(
        handler: Callable[[Request], Awaitable[Response]],
    ) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            try:
                return await handler(request)
            except EmulatorRequestError as exc:
                return _error(exc.message, exc.status)
            except ValidationError as exc:
                return _error(str(exc), 400)

        return endpoint

    async def reset(request: Request) -> Response:
        with emulator.lock:
            emulator.reset()
            emulator.calls.reset()
            emulator.faults.reset()
        return JSONResponse({"reset": True})

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok", "emulator": emulator.name})

    async def seed(request: Request) -> Response:
        payload = await json_body(request)
        if not isinstance(payload, dict):
            raise EmulatorRequestError('seed body must be an object: {"<object>": [records]}')
        with emulator.lock:
            counts = emulator.seed(payload)
        return JSONResponse({"seeded": counts})

    async def records(request: Request) -> Response:
        object_name = request.path_params["object_name"]
        try:
            with emulator.lock:
                rows = emulator.records(object_name)
        except KeyError:
            return _error(f"{emulator.name} has no object {object_name!r}", 404)
        return JSONResponse(rows)

    async def calls(request: Request) -> Response:
        return JSONResponse(emulator.calls.snapshot())

    async def list_faults(request: Request) -> Response:
        data = emulator.faults.snapshot()
        data["presets"] = sorted(emulator.all_fault_presets())
        return JSONResponse(data)

    async def add_faults(request: Request) -> Response:
        payload = await json_body(request)
        if not isinstance(payload, dict):
            raise EmulatorRequestError('faults body must be {"rules": [...]} or {"preset": ...}')
        rules: list[FaultRule]
        if "preset" in payload:
            overrides = dict(payload)
            preset_name = overrides.pop("preset")
            presets = emulator.all_fault_presets()
            if preset_name not in presets:
                raise EmulatorRequestError(
                    f"unknown preset {preset_name!r}; known: {', '.join(sorted(presets))}"
                )
            rules = [
                FaultRule.model_validate({**rule.model_dump(), **overrides})
                for rule in presets[preset_name]
            ]
        elif isinstance(payload.get("rules"), list):
            rules = [FaultRule.model_validate(rule) for rule in payload["rules"]]
        else:
            raise EmulatorRequestError('faults body must be {"rules": [...]} or {"preset": ...}')
        ids = emulator.faults.add(rules)
        return JSONResponse({"added": ids, "rules": [r.model_dump() for r in rules]})

    async def clear_faults(request: Request) -> Response:
        emulator.faults.clear()
        return JSONResponse({"cleared": True})

    async def simulate(request: Request) -> Response:
        payload = await json_body(request)
        if not isinstance(payload, dict):
            raise EmulatorRequestError("simulate body must be an object")
        with emulator.lock:
            return JSONResponse(emulator.simulate(payload))

    async def settings(request: Request) -> Response:
        payload = await json_body(request)
        if not isinstance(payload, dict):
            raise EmulatorRequestError("settings body must be an object")
        with emulator.lock:
            return JSONResponse(emulator.configure(payload))

    routes: list[BaseRoute] = [
        Route("/reset", guarded(reset), methods=["POST"]),
        Route("/health", guarded(health), methods=["GET"]),
        Route("/seed", guarded(seed), methods=["POST"]),
        Route("/records/{object_name}", guarded(records), methods=["GET"]),
        Route("/calls", guarded(calls), methods=["GET"]),
        Route("/faults", guarded(list_faults), methods=["GET"]),
        Route("/faults", guarded(add_faults), methods=["POST"]),
        Route("/faults", guarded(clear_faults), methods=["DELETE"]),
        Route("/simulate", guarded(simulate), methods=["POST"]),
        Route("/settings", guarded(settings), methods=["POST"]),
    ]
    return [Mount(CONTROL_PREFIX, routes=routes)]


class _SandboxMiddleware:
    """Counts, delays and faults API calls before they reach the emulator's routes."""

    def __init__(
        self, app: ASGIApp, emulator: Emulator, api_routes: list[BaseRoute], latency_ms: int
    ) -> None:
        self.app = app
        self.emulator = emulator
        self.api_routes = api_routes
        self.latency_ms = latency_ms

    def _route_key(self, scope: Scope) -> str:
        method = scope["method"]
        partial: str | None = None
        for route in self.api_routes:
            match, _ = route.matches(scope)
            template = getattr(route, "path", scope["path"])
            if match == Match.FULL:
                return f"{method} {template}"
            if match == Match.PARTIAL and partial is None:
                partial = template
        return f"{method} {partial if partial is not None else '(no route)'}"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(CONTROL_PREFIX + "/"):
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        if self.emulator.ignore_trailing_slash and len(path) > 1 and path.endswith("/"):
            scope = dict(scope, path=path.rstrip("/"), raw_path=path.rstrip("/").encode())
        self.emulator.calls.add(self._route_key(scope))
        body, more = await _read_body(receive)
        decision = self.emulator.faults.decide(scope["method"], scope["path"], body)
        if self.latency_ms:
            await asyncio.sleep(self.latency_ms / 1000)
        rule = decision.response_rule
        delay_ms = rule.delay_ms if rule is not None else decision.delay_ms
        if delay_ms:
            await asyncio.sleep(delay_ms / 1000)
        if rule is not None and rule.hang:
            released = await _hold(receive, self.emulator.faults.release_hangs)
            if released:
                await self._send_fault(send, FaultRule(status=503, preset="hang"))
            return
        if rule is not None:
            await self._send_fault(send, rule)
            return
        if decision.record_rules:
            scope[_RECORD_FAULTS_KEY] = self.emulator.faults.record_faults(decision)
        await self.app(scope, _replay(body, more, receive), send)

    async def _send_fault(self, send: Send, rule: FaultRule) -> None:
        status = rule.status if rule.status is not None else 500
        body = rule.body if rule.body is not None else self.emulator.fault_body(status)
        response: Response
        if isinstance(body, str):
            response = Response(body, status_code=status, media_type="text/plain")
        else:
            response = JSONResponse(body, status_code=status)
        response.headers.update(self.emulator.response_headers())
        response.headers.update(rule.headers)
        await response({"type": "http"}, _no_receive, send)


async def _no_receive() -> Message:
    return {"type": "http.disconnect"}


async def _read_body(receive: Receive) -> tuple[bytes, bool]:
    """Read the whole request body; return it and whether the client disconnected meanwhile."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return b"".join(chunks), False
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks), True


def _replay(body: bytes, connected: bool, receive: Receive) -> Receive:
    """A receive callable that gives the already-read body once, then defers to the real one."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        if not connected:
            return {"type": "http.disconnect"}
        return await receive()

    return replay


async def _hold(receive: Receive, release: threading.Event) -> bool:
    """Hold a connection open; return True if released by the server, False on disconnect."""
    pending = asyncio.ensure_future(receive())
    try:
        while not release.is_set():
            done, _ = await asyncio.wait({pending}, timeout=0.05)
            if done:
                if pending.result()["type"] == "http.disconnect":
                    return False
                pending = asyncio.ensure_future(receive())
        return True
    finally:
        pending.cancel()


def build_app(emulator: Emulator, *, latency_ms: int = 0) -> Starlette:
    """Build the ASGI app serving ``emulator``: its API routes plus the control API.

    Args:
        emulator: the emulator to serve; the app keeps it as ``app.state.emulator``.
        latency_ms: added before every API call's answer (control calls are never delayed).
    """
    api_routes = emulator.api_routes()

    async def not_found(request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        if status == 404:
            response = JSONResponse(emulator.not_found_body(request.url.path), status_code=404)
        else:
            detail = exc.detail if isinstance(exc, HTTPException) else "internal error"
            response = JSONResponse({"status": status, "message": detail}, status_code=status)
        if not request.url.path.startswith(CONTROL_PREFIX + "/"):
            response.headers.update(emulator.response_headers())
        return response

    app = Starlette(
        routes=[*_control_routes(emulator), *api_routes],
        exception_handlers={HTTPException: not_found},
    )
    app.add_middleware(
        _SandboxMiddleware,
        emulator=emulator,
        api_routes=api_routes,
        latency_ms=latency_ms,
    )
    app.state.emulator = emulator
    return app
