"""Engine factory for the state store: SQLite (one daemon per file) or PostgreSQL (many daemons)."""

from __future__ import annotations

import fcntl
import json
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.engine.url import URL

from refsync import jsontext
from refsync.errors import StateError, StoreLockedError

__all__ = [
    "DaemonLock",
    "create_state_engine",
    "normalise_url",
    "sqlite_path",
    "sqlite_url_under",
    "state_url_mistake",
]

SQLITE_BUSY_TIMEOUT_MS = 30_000
SQLITE_CACHE_KIB = 16_384
"""Page cache per SQLite connection, in KiB (16 MiB; SQLite's default is 2 MB)."""
SQLITE_CHECKPOINT_PAGES = 10_000
"""Write-ahead log size, in pages, that triggers a checkpoint (SQLite's default is 1,000)."""


_URL_FORMS = "use sqlite:///PATH or postgresql://USER@HOST/DB"


def normalise_url(url: str) -> URL:
    """Parse a state-store URL; plain ``postgresql://`` URLs use the psycopg 3 driver, and a
    SQLite path that starts with ``~`` starts in the home directory.

    ``~`` is read here, where everything that opens the database parses its URL, so that the
    file created, the connection, the daemon's lock and every message name the same file:
    SQLite itself would look for a directory called ``~``.

    Raises:
        StateError: when the URL names no database refsync can use (see
            :func:`state_url_mistake`).
    """
    mistake = state_url_mistake(url)
    if mistake is not None:
        message, fix = mistake
        raise StateError(f"state database URL: {message} — {fix}")
    parsed = make_url(url)
    if parsed.drivername in {"postgresql", "postgres"}:
        parsed = parsed.set(drivername="postgresql+psycopg")
    home_path = _home_path(parsed)
    if home_path is not None:
        parsed = parsed.set(database=str(home_path))
    return parsed


def state_url_mistake(url: str) -> tuple[str, str] | None:
    """What is wrong with a state-store URL and how to fix it, or None when refsync can use it.

    Caught here rather than by SQLAlchemy, before any file is created: text that is not a
    URL, a backend other than SQLite or PostgreSQL, and ``sqlite://PATH`` with two slashes,
    which reads the path's first directory as a host name.
    """
    try:
        parsed = make_url(url)
    except Exception:  # SQLAlchemy raises ArgumentError, echoing the URL (and any password)
        return "this is not a database URL", _URL_FORMS
    backend = "postgresql" if parsed.drivername == "postgres" else parsed.get_backend_name()
    if backend not in {"sqlite", "postgresql"}:
        return f"refsync keeps its state in SQLite or PostgreSQL, not '{backend}'", _URL_FORMS
    if backend == "sqlite" and (parsed.host or parsed.port or parsed.username):
        scheme, _, path = url.partition("://")
        return (
            f"{scheme}:// with two slashes reads '{path.split('/')[0]}' as a host name, and "
            "SQLite has no host",
            f"write {scheme}:///{path} (a path relative to the config file) or "
            f"{scheme}:////absolute/path/refsync.db",
        )
    if backend == "sqlite" and parsed.database in (None, "", ":memory:"):
        return (
            "an in-memory SQLite database forgets every link and cursor when refsync exits",
            "name a file: sqlite:///refsync.db (relative to the config file) or "
            "sqlite:////absolute/path/refsync.db",
        )
    database = parsed.database or ""
    if backend == "sqlite" and database.startswith("~") and _home_path(parsed) is None:
        home = database.split("/")[0]
        return (
            f"'{home}' names no home directory (a SQLite path starting with ~ starts in one)",
            "write the database's absolute path: sqlite:////absolute/path/refsync.db",
        )
    return None


def _home_path(url: URL) -> Path | None:
    """The path of a SQLite URL whose path starts with ``~``, with the home directory in
    its place; None for other URLs, or when that home directory is unknown."""
    database = url.database or ""
    if url.get_backend_name() != "sqlite" or not database.startswith("~"):
        return None
    try:
        return Path(database).expanduser()
    except RuntimeError:  # no such user (``~nobody-here``), or no HOME and no passwd entry
        return None


def sqlite_path(url: URL) -> Path | None:
    """The database file of a SQLite URL as :func:`normalise_url` returns it (``~`` read), or
    None for in-memory databases and other backends."""
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    return Path(url.database)


def sqlite_url_under(url: str, directory: Path) -> str:
    """``url`` with a relative SQLite path made absolute under ``directory``.

    Absolute paths (``sqlite:////var/lib/refsync.db``, ``sqlite:///~/refsync.db``), other
    backends and URLs refsync cannot use (:func:`state_url_mistake`) are returned unchanged.
    """
    if state_url_mistake(url) is not None:
        return url
    parsed = normalise_url(url)
    path = sqlite_path(parsed)
    if path is None or path.is_absolute():
        return url
    beside = os.path.abspath(directory / path)
    return parsed.set(database=beside).render_as_string(hide_password=False)


def create_state_engine(url: str, **engine_options: Any) -> Engine:
    """Create the SQLAlchemy engine for a state-store URL, tuned for refsync's write pattern.

    SQLite: the file is created with owner-only permissions (it holds prospect PII), in WAL mode
    with ``synchronous=NORMAL`` and a busy timeout; write transactions start with
    ``BEGIN IMMEDIATE`` so concurrent writers queue instead of failing with "database is locked".
    A connection with the execution option ``refsync_readonly=True`` begins a deferred
    transaction instead. PostgreSQL: psycopg 3 with pre-ping. JSON columns are written as
    compact text and read by :mod:`refsync.jsontext` (orjson) on both.
    """
    parsed = normalise_url(url)
    engine_options.setdefault("json_serializer", jsontext.dumps)
    engine_options.setdefault("json_deserializer", jsontext.loads)
    if parsed.get_backend_name() == "sqlite":
        path = sqlite_path(parsed)
        if path is not None:
            _create_private_file(path)
        engine = create_engine(
            parsed,
            connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000, "check_same_thread": False},
            **engine_options,
        )
        _tune_sqlite(engine)
        return engine
    return create_engine(parsed, pool_pre_ping=True, **engine_options)


def _create_private_file(path: Path) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists():
            descriptor = os.open(path, os.O_CREAT | os.O_WRONLY, 0o600)
            os.close(descriptor)
    except OSError as exc:
        raise _unwritable(path, exc) from exc


def _unwritable(path: Path, exc: OSError) -> StateError:
    """The error for a SQLite file (or its lock) refsync cannot create where state.url says."""
    return StateError(
        f"cannot create {path}: {exc.strerror or exc} — point state.url at a directory "
        f"refsync's user can write to, or give it write access to {path.parent}",
        detail=str(exc),
    )


def _tune_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event below decide how each transaction starts.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        # Ids made by other tools or older versions are random UUIDs, whose index pages lie
        # all over the file: a page cache of SQLITE_CACHE_KIB keeps more of them in memory.
        cursor.execute(f"PRAGMA cache_size=-{SQLITE_CACHE_KIB}")
        # Fold the log back into the file every SQLITE_CHECKPOINT_PAGES rather than 1,000: a
        # sync rewrites the same index pages page after page, and each checkpoint fsyncs.
        cursor.execute(f"PRAGMA wal_autocheckpoint={SQLITE_CHECKPOINT_PAGES}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        readonly = connection.get_execution_options().get("refsync_readonly", False)
        connection.exec_driver_sql("BEGIN" if readonly else "BEGIN IMMEDIATE")


@dataclass
class DaemonLock:
    """An exclusive lock that keeps a second daemon off one SQLite database file.

    SQLite serialises writers but cannot share sync work safely between daemons (there is no
    ``SKIP LOCKED``), so refsync allows one daemon per file. The lock is an ``flock`` on
    ``<database>.lock``, released by the kernel when the process dies (even on ``kill -9``).
    """

    path: Path
    _handle: Any = None

    def acquire(self) -> None:
        """Take the lock or raise StoreLockedError naming the process that holds it."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            handle = open(self.path, "a+", encoding="utf-8")  # noqa: SIM115 (held for the process lifetime)
        except OSError as exc:
            raise _unwritable(self.path, exc) from exc
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip()
            handle.close()
            database = self.path.with_suffix("") if self.path.suffix == ".lock" else self.path
            raise StoreLockedError(
                f"another refsync daemon is already using {database}"
                + (f" ({_describe_holder(holder)})" if holder else "")
                + ": stop it first, or use PostgreSQL to run several daemons on one state store"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname()}))
        handle.flush()
        self._handle = handle

    def release(self) -> None:
        """Release the lock (idempotent)."""
        if self._handle is not None:
            fcntl.flock(self._handle.fileno(), fcntl.LOCK_UN)
            self._handle.close()
            self._handle = None


def _describe_holder(text: str) -> str:
    try:
        holder = json.loads(text)
    except ValueError:
        return text
    return f"pid {holder.get('pid')} on {holder.get('host')}"
