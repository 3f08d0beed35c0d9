"""Telling a state database that cannot be reached from other database errors, and saying
either without the statement or its parameters (which can hold a page's prospect data)."""

from __future__ import annotations

from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

__all__ = ["driver_words", "error_text", "unreachable_reason"]


_CONNECTION_SQLSTATES = ("08", "57P")
"""SQLSTATE classes of a PostgreSQL server that cannot be talked to: connection exceptions,
and a server shutting down, crashed or still starting."""

_SQLITE_UNREACHABLE = frozenset({5, 10, 14})
"""SQLite's primary result codes for a database file that cannot be used now: SQLITE_BUSY (held
by another process past the busy timeout), SQLITE_IOERR and SQLITE_CANTOPEN."""


def unreachable_reason(exc: BaseException) -> str | None:
    """Why the state database could not be reached, in its driver's words, when ``exc`` (or an
    error it was raised from) says so; None for any other error.

    A refused, lost or timed-out connection and a server shutting down or starting up are
    outages; an error about a statement (a constraint, a missing table) is not.
    """
    seen: set[int] = set()
    error: BaseException | None = exc
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, DBAPIError) and _connection_failed(error):
            return _first_line(error.orig or error)
        error = error.__cause__ or error.__context__
    return None


def _connection_failed(error: DBAPIError) -> bool:
    if error.connection_invalidated:
        return True
    if not isinstance(error, (OperationalError, InterfaceError)):
        return False
    state = getattr(error.orig, "sqlstate", None)
    if state:
        return str(state).startswith(_CONNECTION_SQLSTATES)
    code = getattr(error.orig, "sqlite_errorcode", None)
    if code is not None:
        return int(code) & 0xFF in _SQLITE_UNREACHABLE
    return True  # the driver's own failure, with no answer from a server: no connection


def _first_line(error: BaseException) -> str:
    """The first line of an error's text (a driver's hints and SQLAlchemy's statement and
    parameters follow it), or its type when it has none."""
    lines = str(error).strip().splitlines()
    return lines[0].strip() if lines else type(error).__name__


def error_text(exc: BaseException) -> str:
    """An error as a run's error says it: its type and first line, the driver's for a
    database error (never the statement or its parameters)."""
    error = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
    return f"{type(error).__name__}: {_first_line(error)}"


def driver_words(exc: BaseException) -> str:
    """What a log line or a probe says of a state store error: why the store could not be
    reached, when it could not (:func:`unreachable_reason`), else :func:`error_text`."""
    return unreachable_reason(exc) or error_text(exc)
