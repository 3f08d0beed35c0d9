"""A throwaway PostgreSQL server for the test suite, started from the machine's binaries.

The server refuses to run as root, so when the tests run as root it is started as the
``postgres`` user (``runuser``) in a fresh temporary directory. It listens on 127.0.0.1 on a free
port with trust authentication and is stopped (and its directory removed) at the end. A test can
also take it down and bring it back on the same port with its data (``pause``, ``resume``), as an
outage of the state database.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

__all__ = ["PostgresServer", "PostgresUnavailable", "start_postgres"]


class PostgresUnavailable(RuntimeError):
    """The PostgreSQL binaries are missing or the server would not start."""


@dataclass
class PostgresServer:
    """A running throwaway server; ``create_database()`` gives each test its own database."""

    bindir: Path
    datadir: Path
    port: int
    run_as: list[str]
    options: str = ""
    """The server options it was started with (``resume`` starts it with them again)."""

    def url(self, database: str = "postgres") -> str:
        """SQLAlchemy URL of one database on this server."""
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self) -> str:
        """Create an empty database and return its URL."""
        import psycopg

        name = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(
            f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres", autocommit=True
        ) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        """Stop the server immediately and delete its files."""
        subprocess.run(
            [*self.run_as, str(self.bindir / "pg_ctl"), "-D", str(self.datadir), "-m",
             "immediate", "-w", "stop"],
            capture_output=True, check=False, timeout=60,
        )
        shutil.rmtree(self.datadir.parent, ignore_errors=True)

    def pause(self) -> None:
        """Take the server down, keeping its files and every committed transaction (a fast
        shutdown: the server ends its connections): new connections are refused until
        :meth:`resume`."""
        self._pg_ctl("-m", "fast", "-w", "stop")

    def resume(self) -> None:
        """Start the server again after :meth:`pause`, on the same port with the same data
        (nothing to do when it is running)."""
        status = subprocess.run(
            [*self.run_as, str(self.bindir / "pg_ctl"), "-D", str(self.datadir), "status"],
            capture_output=True, check=False, timeout=30,
        )
        if status.returncode == 0:
            return
        self._pg_ctl("-o", self.options, "-l", str(self.datadir.parent / "server.log"),
                     "-w", "-t", "60", "start")

    def _pg_ctl(self, *arguments: str) -> None:
        subprocess.run(
            [*self.run_as, str(self.bindir / "pg_ctl"), "-D", str(self.datadir), *arguments],
            capture_output=True, text=True, check=True, timeout=90,
        )


def _bindir() -> Path:
    configured = os.environ.get("REFSYNC_PG_BINDIR")
    if configured:
        return Path(configured)
    pg_config = shutil.which("pg_config")
    if pg_config:
        output = subprocess.run(
            [pg_config, "--bindir"], capture_output=True, text=True, check=False
        ).stdout.strip()
        if output and (Path(output) / "initdb").exists():
            return Path(output)
    for candidate in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (candidate / "initdb").exists():
            return candidate
    raise PostgresUnavailable("PostgreSQL binaries not found: install postgresql (initdb, pg_ctl)")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_postgres() -> PostgresServer:
    """Initialise and start a server; raise PostgresUnavailable with the reason if it cannot."""
    bindir = _bindir()
    root = Path(tempfile.mkdtemp(prefix="refsync-pg-"))
    datadir = root / "data"
    run_as: list[str] = []
    if os.geteuid() == 0:
        runuser = shutil.which("runuser") or "/usr/sbin/runuser"
        run_as = [runuser, "-u", "postgres", "--"]
        os.chmod(root, 0o755)
        shutil.chown(root, "postgres", "postgres")
    try:
        subprocess.run(
            [*run_as, str(bindir / "initdb"), "-D", str(datadir), "-A", "trust", "-U",
             "postgres", "--no-sync", "-E", "UTF8"],
            capture_output=True, text=True, check=True, timeout=120,
        )
        port = _free_port()
        options = (
            f"-p {port} -c listen_addresses=127.0.0.1 -k {root} -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
        )
        subprocess.run(
            [*run_as, str(bindir / "pg_ctl"), "-D", str(datadir), "-o", options, "-l",
             str(root / "server.log"), "-w", "-t", "60", "start"],
            capture_output=True, text=True, check=True, timeout=90,
        )
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as exc:
        log = ""
        if (root / "server.log").exists():
            log = (root / "server.log").read_text(errors="replace")[-2000:]
        shutil.rmtree(root, ignore_errors=True)
        stderr = getattr(exc, "stderr", "") or ""
        raise PostgresUnavailable(f"PostgreSQL did not start: {exc}\n{stderr}\n{log}") from exc
    return PostgresServer(bindir, datadir, port, run_as, options)
