"""Shared plumbing of the CLI commands: options, config loading, output and exit codes.

Every error the CLI prints goes through :func:`~refsync.logging.redact_text` first, so a
credential a vendor echoed in its error text is masked here as it is in the logs.
"""

from __future__ import annotations

import json
import sys
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from types import TracebackType
from typing import IO, Any, NoReturn, TypeVar

import click

from refsync.config import LoadedConfig, config_path_from, load_config
from refsync.errors import ConfigError, RefsyncError, StateError
from refsync.logging import configure_logging, get_logger, redact_text, renders_json
from refsync.state import StateStore

__all__ = [
    "EXIT_CHECK_FAILED",
    "EXIT_CONFIG",
    "EXIT_FAILED",
    "EXIT_OK",
    "EXIT_PARTIAL",
    "CliContext",
    "ErrorEvent",
    "config_option",
    "echo_json",
    "fail",
    "json_option",
    "pass_cli",
    "print_traceback_redacted",
    "report_config_error",
    "say_on_stderr",
]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_CONFIG = 2
EXIT_CHECK_FAILED = 3
EXIT_PARTIAL = 4

F = TypeVar("F", bound=Callable[..., Any])


@dataclass
class CliContext:
    """What the top-level options decided, shared with every command."""

    config_option: str | None = None
    log_level: str | None = None
    log_format: str | None = None
    _loaded: LoadedConfig | None = field(default=None, repr=False)

    def load(
        self, config_option: str | None = None, *, with_named_files: bool = False
    ) -> LoadedConfig:
        """Load and validate the configuration, or print every problem and exit 2.

        ``with_named_files`` (the commands that sync): a refused configuration is reported as
        ``refsync check`` reports it, with the problems of the mapping files and settings
        blocks it names that could still be read.
        """
        if self._loaded is None:
            self.log_json_if_asked()
            path = config_path_from(config_option or self.config_option)
            try:
                self._loaded = load_config(path)
            except ConfigError as exc:
                if with_named_files:
                    from refsync.sync.wiring import every_problem

                    exc = ConfigError(every_problem(exc, path))
                report_config_error(exc)
            settings = self._loaded.config.logging
            configure_logging(
                level=self.log_level or settings.level,
                fmt=self.log_format or settings.format,  # type: ignore[arg-type]
                secrets=self._loaded.secrets,
            )
            sys.excepthook = print_traceback_redacted
        return self._loaded

    def log_json_if_asked(self) -> None:
        """Write log lines as JSON from now on if ``--log-format json`` was given.

        Called before the configuration is loaded, so that a config that cannot be loaded is
        reported in JSON lines too (how a daemon under systemd or in a container fails to
        start); the configuration's own logging settings apply once it is loaded.
        """
        if self.log_format == "json":
            configure_logging(level=self.log_level or "info", fmt="json")

    @contextmanager
    def store(
        self, config_option: str | None = None, *, migrate: bool = True
    ) -> Iterator[StateStore]:
        """Open the configured state store, turning StateError into a clean exit."""
        loaded = self.load(config_option)
        try:
            with StateStore(loaded.config.state.url, migrate=migrate) as store:
                yield store
        except StateError as exc:
            fail(exc.message)


pass_cli = click.make_pass_decorator(CliContext, ensure=True)


def config_option(function: F) -> F:
    """The ``-c/--config`` option, accepted on every command as well as on the group."""
    return click.option(
        "-c", "--config", "config_path", type=click.Path(dir_okay=False), default=None,
        help="Config file (default: $REFSYNC_CONFIG, else ./refsync.yaml).",
    )(function)


def json_option(function: F) -> F:
    """The ``--json`` option: machine-readable output on standard output."""
    return click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")(function)


def _default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    return str(value)


def echo_json(value: Any) -> None:
    """Print ``value`` as JSON (datetimes ISO-8601, decimals as strings)."""
    click.echo(json.dumps(value, default=_default, indent=2, ensure_ascii=False))


def report_config_error(error: ConfigError, *, as_json: bool = False) -> NoReturn:
    """Print every configuration problem and exit with code 2."""
    count = len(error.problems)
    summary = f"{count} problem{'s' if count != 1 else ''} found; nothing was changed."
    if as_json:
        echo_json({"ok": False, "problems": [_redacted(p.as_dict()) for p in error.problems]})
    elif renders_json():
        log = get_logger("refsync.cli")
        for problem in error.problems:
            log.error("config problem", **problem.as_dict())
        log.error("command failed", error=summary)
    else:
        for problem in error.problems:
            click.echo(redact_text(str(problem)), err=True)
        click.echo(summary, err=True)
    sys.exit(EXIT_CONFIG)


def _redacted(problem: dict[str, object]) -> dict[str, object]:
    return {k: redact_text(v) if isinstance(v, str) else v for k, v in problem.items()}


def say_on_stderr(label: str, message: str, *, event: str, level: str = "error",
                  **context: Any) -> None:
    """Tell the user something on standard error, secrets and tokens masked.

    Printed as ``label: message``; when log lines are JSON, written as a log event instead
    (``event``, with the message under ``label`` and ``context``), so that standard error
    stays one JSON object a line.
    """
    if renders_json():
        getattr(get_logger("refsync.cli"), level)(event, **{label: message}, **context)
    else:
        click.echo(f"{label}: {redact_text(message)}", err=True)


def fail(message: str, code: int = EXIT_FAILED) -> NoReturn:
    """Print an actionable error message (secrets and tokens masked) and exit."""
    say_on_stderr("error", message, event="command failed")
    sys.exit(code)


class ErrorEvent(click.ClickException):
    """A command-line error click would print as text (an unknown option, a missing argument,
    a bad value, a command's own failure), shown as a log event instead.

    Raised in place of click's error when ``--log-format json`` was given, so that standard
    error stays one JSON object a line: ``{"event": "command failed", "error": ...,
    "command": ..., "exit_code": ...}``, with the exit code click would use (2 for usage).
    """

    def __init__(self, error: click.ClickException, message: str | None = None) -> None:
        super().__init__(message or error.format_message())
        self.exit_code = error.exit_code  # type: ignore[misc]  # per error, not per class
        context = getattr(error, "ctx", None)
        self.command = context.command_path if context is not None else None

    def show(self, file: IO[Any] | None = None) -> None:
        """Write the error as a ``command failed`` event, with the command it concerns and
        click's exit code, on standard error with the other log lines (``file`` is unused)."""
        configure_logging(fmt="json")
        say_on_stderr("error", self.message, event="command failed", command=self.command,
                      exit_code=self.exit_code)


def print_traceback_redacted(
    kind: type[BaseException], error: BaseException, trace: TracebackType | None
) -> None:
    """Print an unexpected exception's traceback, as Python would, with secrets masked.

    Installed as ``sys.excepthook`` once the configuration (and so its secrets) is loaded: a
    bug's traceback may quote a value that holds a credential.
    """
    text = "".join(traceback.format_exception(kind, error, trace))
    sys.stderr.write(redact_text(text))


def handle_refsync_errors(function: F) -> F:
    """Turn RefsyncError into a one-line message and exit code instead of a traceback."""
    import functools

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return function(*args, **kwargs)
        except ConfigError as exc:
            report_config_error(exc)
        except RefsyncError as exc:
            fail(exc.message)

    return wrapper  # type: ignore[return-value]
