"""The daemon's HTTP endpoint: ``/healthz``, ``/readyz`` and ``/metrics`` (Starlette on uvicorn).

uvicorn runs in a thread of its own; the daemon keeps signal handling for itself.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from refsync.daemon.metrics import CONTENT_TYPE

__all__ = ["HttpServer", "bound_socket", "build_http_app"]

ReadinessCheck = Callable[[], tuple[bool, dict[str, Any]]]


def build_http_app(readiness: ReadinessCheck, render_metrics: Callable[[], bytes]) -> Starlette:
    """The Starlette application serving the three endpoints.

    Args:
        readiness: returns (ready, the checks and their outcomes).
        render_metrics: the Prometheus text exposition.
    """

    async def healthz(_: Request) -> Response:
        return JSONResponse({"status": "ok"})

    def readyz(_: Request) -> Response:
        ready, checks = readiness()
        return JSONResponse({"status": "ready" if ready else "not ready", "checks": checks},
                            status_code=200 if ready else 503)

    def metrics(_: Request) -> Response:
        return Response(render_metrics(), media_type=CONTENT_TYPE)

    return Starlette(routes=[
        Route("/healthz", healthz),
        Route("/readyz", readyz),
        Route("/metrics", metrics),
    ])


def bound_socket(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port``; OSError "cannot listen on host:port: why" if it cannot be.

    ``refsync run`` calls it once before it opens the state store (closing the socket), so a
    port another process holds is refused before anything is created.
    """
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise OSError(f"cannot listen on {host}:{port}: {exc.strerror}") from exc
    return sock


class HttpServer:
    """uvicorn serving ``app`` from a background thread.

    Args:
        app: the ASGI application.
        host: address to listen on.
        port: port to listen on (0 picks a free one; :attr:`port` tells which after start).
    """

    def __init__(self, app: Starlette, host: str, port: int) -> None:
        self.host = host
        self.port = port
        config = uvicorn.Config(app, host=host, port=port, log_level="warning",
                                access_log=False, lifespan="off")
        self._server = uvicorn.Server(config)
        self._socket: socket.socket | None = None
        self._thread: threading.Thread | None = None

    def start(self, timeout: float = 10.0) -> None:
        """Bind and start serving; raise OSError when the address cannot be bound."""
        sock = bound_socket(self.host, self.port)
        self._socket = sock
        self.port = int(sock.getsockname()[1])
        self._thread = threading.Thread(target=self._serve, name="refsync-http", daemon=True)
        self._thread.start()
        waited = 0.0
        while not self._server.started:
            if not self._thread.is_alive() or waited > timeout:
                raise OSError(f"the HTTP server did not start on {self.host}:{self.port}")
            time.sleep(0.02)
            waited += 0.02

    def _serve(self) -> None:
        assert self._socket is not None
        # uvicorn calls sys.exit on start-up failures; start() reports them instead
        with contextlib.suppress(SystemExit):
            self._server.run(sockets=[self._socket])

    def stop(self) -> None:
        """Stop serving and wait for the thread to end."""
        self._server.should_exit = True
        if self._thread is not None and self._thread.is_alive():
            self._thread.join(timeout=5)
        if self._socket is not None:
            self._socket.close()
