"""Serve one sandbox app with uvicorn in a background thread, on the loopback interface."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path
from typing import Any

import uvicorn
from starlette.applications import Starlette

__all__ = ["SandboxServer", "ServerStartError"]


class ServerStartError(RuntimeError):
    """The server did not come up (port taken, bad certificate, ...)."""


class SandboxServer:
    """One uvicorn server for one sandbox app, running in a daemon thread.

    Args:
        app: the ASGI app (from :func:`refsync.sandbox.core.build_app`).
        host: interface to bind; loopback by default.
        port: TCP port; 0 picks a free one (read it from :attr:`port` after :meth:`start`).
        certfile: server certificate chain (PEM); with ``keyfile`` the server speaks https.
        keyfile: the certificate's private key (PEM).
    """

    def __init__(
        self,
        app: Starlette,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        certfile: Path | str | None = None,
        keyfile: Path | str | None = None,
    ) -> None:
        self.app = app
        self.host = host
        self._requested_port = port
        self.port = port
        self.tls = certfile is not None
        ssl: dict[str, Any] = {}
        if certfile is not None:
            if keyfile is None:
                raise ValueError("keyfile is required with certfile")
            ssl = {"ssl_certfile": str(certfile), "ssl_keyfile": str(keyfile)}
        self._config = uvicorn.Config(
            app,
            host=host,
            port=port,
            log_level="warning",
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=1,
            **ssl,
        )
        self._server = uvicorn.Server(self._config)
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None

    @property
    def url(self) -> str:
        """Base URL, e.g. ``https://127.0.0.1:8701``."""
        scheme = "https" if self.tls else "http"
        return f"{scheme}://{self.host}:{self.port}"

    def bind(self) -> None:
        """Take the port without serving yet (:meth:`start` does it when not done before).

        A caller starting several servers binds them all first, so that one whose port is
        taken fails before anything else happens (such as writing the certificate files).

        Raises:
            ServerStartError: the port cannot be bound.
        """
        if self._socket is not None:
            return
        # proto IPPROTO_TCP (not 0): asyncio only sets TCP_NODELAY on accepted sockets whose
        # proto says TCP; without it, keep-alive answers wait ~40 ms for a delayed ACK.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, self._requested_port))
        except OSError as exc:
            sock.close()
            raise ServerStartError(
                f"cannot listen on {self.host}:{self._requested_port}: {exc.strerror}; "
                "choose another port (0 picks a free one)"
            ) from exc
        # listening at once holds the port (SO_REUSEADDR lets another socket bind a port no
        # socket listens on); connections wait in the backlog until serving starts
        sock.listen(self._config.backlog)
        sock.set_inheritable(True)
        self._socket = sock
        self.port = sock.getsockname()[1]

    def start(self, timeout: float = 10.0) -> None:
        """Bind the port if :meth:`bind` has not, start serving and return once the server
        accepts connections.

        Raises:
            ServerStartError: the port cannot be bound or the server did not start in time.
        """
        self.bind()
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._socket]},
            name=f"sandbox-{self.port}", daemon=True,
        )
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive():
                raise ServerStartError(f"sandbox server on port {self.port} exited during start")
            if time.monotonic() > deadline:
                self.stop()
                raise ServerStartError(f"sandbox server on port {self.port} did not start")
            time.sleep(0.01)

    def stop(self, timeout: float = 5.0, grace: float = 0.3) -> None:
        """Stop serving: release hung connections, let requests in flight finish for ``grace``
        seconds, then close whatever is left (idle TLS keep-alive connections would otherwise
        hold the shutdown) and wait up to ``timeout`` for the thread to end.
        """
        emulator = getattr(self.app.state, "emulator", None)
        if emulator is not None:
            emulator.faults.release_hangs.set()
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(grace)
            if self._thread.is_alive():
                self._server.force_exit = True
                self._thread.join(timeout)
            self._thread = None
        if self._socket is not None:
            self._socket.close()
            self._socket = None

    def __enter__(self) -> SandboxServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
