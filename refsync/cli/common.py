"""Shared plumbing of the CLI commands: options, config loading, output and exit codes.

Every error the CLI prints goes through :func:`~refsync.logging.redact_text` first, so a
credential a vendor echoed in its error text is masked here as it is in the logs.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from types import FrameType, TracebackType
from typing import IO, Any, NoReturn, TypeVar

import click

from refsync.config import LoadedConfig, config_path_from, load_config
from refsync.errors import ConfigError, Problem, RefsyncError, StateError
from refsync.logging import (
    configure_logging,
    get_logger,
    process_log_context,
    redact_text,
    renders_json,
)
from refsync.state import StateStore

__all__ = [
    "EXIT_CHECK_FAILED",
    "EXIT_CONFIG",
    "EXIT_FAILED",
    "EXIT_OK",
    "EXIT_PARTIAL",
    "STOP_SIGNALS",
    "CliContext",
    "ErrorEvent",
    "StopOnSignals",
    "config_option",
    "counted",
    "echo_json",
    "fail",
    "json_option",
    "log_command",
    "pass_cli",
    "print_traceback_redacted",
    "report_config_error",
    "say_crashed",
    "say_failed",
    "say_on_stderr",
    "signals_handled_by",
]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_CONFIG = 2
EXIT_CHECK_FAILED = 3
EXIT_PARTIAL = 4
"""A run ended ``partial`` or ``interrupted``."""

STOP_SIGNALS = {signal.SIGTERM: "SIGTERM", signal.SIGINT: "Ctrl-C (SIGINT)"}
"""The signals that stop a run, by the name a run's reason gives them."""

_NAP = 0.1
"""How often, in seconds, a wait cut short by a stop looks whether one was asked."""

F = TypeVar("F", bound=Callable[..., Any])


@dataclass
class CliContext:
    """What the top-level options decided, shared with every command."""

    config_option: str | None = None
    log_level: str | None = None
    log_format: str | None = None
    command: str | None = None
    """The command being run, as typed (``refsync referrals show``): see :func:`log_command`."""
    _loaded: LoadedConfig | None = field(default=None, repr=False)

    def load(
        self,
        config_option: str | None = None,
        *,
        with_named_files: bool = False,
        command_problems: Callable[[Path], list[Problem]] | None = None,
    ) -> LoadedConfig:
        """Load and validate the configuration, or print every problem and exit 2.

        ``with_named_files`` (the commands that sync): a refused configuration is reported as
        ``refsync check`` reports it, with the problems of the mapping files and settings
        blocks it names that could still be read. ``command_problems``: what the command alone
        refuses in the config file at the path it is given (``run``: no schedules), reported
        with the others when the configuration is refused; once it is loaded, the command
        reports them itself.
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
                if command_problems is not None:
                    exc = ConfigError([*exc.problems, *command_problems(path)])
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

    def logs_json(self) -> bool:
        """Whether log lines are JSON by name, as logging was configured for the command:
        ``--log-format json``, else, once the configuration is loaded, its
        ``logging.format: json``. Before it is loaded, only the option is known."""
        configured = self._loaded.config.logging.format if self._loaded is not None else None
        return (self.log_format or configured) == "json"

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


def counted(count: int, noun: str) -> str:
    """``1 system``, ``3 systems``."""
    return f"{count} {noun}{'' if count == 1 else 's'}"


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
        for problem in error.problems:
            say_failed(str(problem), EXIT_CONFIG, event="config problem", file=problem.file,
                       line=problem.line, column=problem.column, message=problem.message,
                       fix=problem.fix)
        say_failed(summary, EXIT_CONFIG)
    else:
        for problem in error.problems:
            click.echo(redact_text(str(problem)), err=True)
        click.echo(summary, err=True)
    sys.exit(EXIT_CONFIG)


def _redacted(problem: dict[str, object]) -> dict[str, object]:
    return {k: redact_text(v) if isinstance(v, str) else v for k, v in problem.items()}


def say_on_stderr(label: str, message: str, /, *, event: str, level: str = "error",
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


def say_failed(message: str, exit_code: int, /, *, event: str = "command failed",
               command: str | None = None, **context: Any) -> None:
    """Tell the user why the command fails with ``exit_code``: every failure is told here.

    Printed as ``error: message`` (secrets and tokens masked). When log lines are JSON, an
    error event of the same shape whatever failed: ``event`` (``command failed``, or what a
    line among several says: ``config problem``, ``check failed``, ``run failed``), ``level``,
    ``error`` (the message), ``command`` (``refsync sync``; the running command's unless
    given) and ``exit_code``, then ``context``.
    """
    say_on_stderr("error", message, event=event, command=command or _running_command(),
                  exit_code=exit_code, **context)


def log_command(ctx: click.Context) -> None:
    """Add ``command``, the command being run as typed (``refsync referrals show``), to every
    log line written until ``ctx`` closes, by any thread (the daemon's too).

    Called by the callback of each group, which runs once the command under it is known (a
    nested group's call names the deeper command): the value is the one :func:`say_failed`
    gives its events, kept on the :class:`CliContext` too. It is taken back when the command
    ends, so commands run one after another in one process do not share it.
    """
    path = ctx.command_path if ctx.invoked_subcommand is None \
        else f"{ctx.command_path} {ctx.invoked_subcommand}"
    ctx.ensure_object(CliContext).command = path
    ctx.with_resource(process_log_context(command=path))


def _running_command() -> str | None:
    """The command being run, as typed (``refsync referrals show``); None outside one."""
    context = click.get_current_context(silent=True)
    return context.command_path if context is not None else None


def fail(message: str, code: int = EXIT_FAILED) -> NoReturn:
    """Print an actionable error message (secrets and tokens masked) and exit."""
    say_failed(message, code)
    sys.exit(code)


class ErrorEvent(click.ClickException):
    """A command-line error click would print as text (an unknown option, a missing argument,
    a bad value, a command's own failure), shown as a log event instead.

    Raised in place of click's error when ``--log-format json`` was given, so that standard
    error stays one JSON object a line: a ``command failed`` event as :func:`say_failed`
    writes every failure, with the exit code click would use (2 for usage).
    """

    def __init__(self, error: click.ClickException, message: str | None = None, *,
                 command: str | None = None) -> None:
        super().__init__(message or error.format_message())
        self.exit_code = error.exit_code  # type: ignore[misc]  # per error, not per class
        context = getattr(error, "ctx", None)
        # a command's own ClickException carries no context: ``command`` names the command
        self.command = context.command_path if context is not None else command

    def show(self, file: IO[Any] | None = None) -> None:
        """Write the error as a ``command failed`` event, with the command it concerns and
        click's exit code, on standard error with the other log lines (``file`` is unused)."""
        configure_logging(fmt="json")
        say_failed(self.message, self.exit_code, command=self.command)


def print_traceback_redacted(
    kind: type[BaseException], error: BaseException, trace: TracebackType | None
) -> None:
    """Print an unexpected exception's traceback, as Python would, with secrets masked.

    Installed as ``sys.excepthook`` once the configuration (and so its secrets) is loaded: a
    bug's traceback may quote a value that holds a credential. When log lines are JSON, a
    ``command crashed`` event instead (see :func:`say_crashed`).
    """
    if renders_json():
        say_crashed(kind, error, trace)
        return
    sys.stderr.write(_traceback_redacted(kind, error, trace))


def say_crashed(kind: type[BaseException], error: BaseException, trace: TracebackType | None,
                /, *, command: str | None = None) -> None:
    """Tell, as a ``command crashed`` event, of an exception refsync did not expect: what
    :func:`say_failed` writes for exit code 1, its ``error`` the exception's first line
    (``RuntimeError: ...``) and its ``traceback`` the whole traceback, masked as
    :func:`print_traceback_redacted` prints it.

    For JSON log lines: standard error stays one JSON object a line even when a bug ends the
    command.
    """
    told = _traceback_redacted(kind, error, trace)
    first_line = redact_text("".join(traceback.format_exception_only(kind, error)))
    say_failed(first_line.splitlines()[0], EXIT_FAILED, event="command crashed",
               command=command, traceback=told)


def _traceback_redacted(
    kind: type[BaseException], error: BaseException, trace: TracebackType | None
) -> str:
    return redact_text("".join(traceback.format_exception(kind, error, trace)))


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


@contextmanager
def signals_handled_by(
    handler: Callable[[int, FrameType | None], Any], signals: Iterable[int]
) -> Iterator[None]:
    """Handle ``signals`` with ``handler`` in the block, then put the previous handlers back.

    Outside the main thread (refsync embedded in an application) signals are left alone: only
    the main thread may set handlers, and they are the application's.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {number: signal.signal(number, handler) for number in signals}
    try:
        yield
    finally:
        for number, kept in previous.items():
            signal.signal(number, kept)


@dataclass
class StopOnSignals:
    """SIGTERM and Ctrl-C (SIGINT) during a one-off run (``refsync sync``, ``refsync retry``),
    handled as the daemon handles them.

    The first signal asks the run to stop after the page or pushed batch it is on (this object
    is the engine's ``should_stop``) and ends the waits between retries at once (its
    :meth:`sleep` is the connectors'): the run ends ``interrupted``, its reason naming the
    signal, and the command exits as for any interrupted run. A second signal while the run is
    still on that page ends it at once: the page is not committed, the run is still recorded
    ``interrupted``, and the command exits with 128 + the signal's number. One that comes while
    the run is already ending changes nothing; a third exits at once.

    Args:
        command: the command, as the run's reason names it (``refsync sync``).
    """

    command: str
    reason: str | None = field(default=None, init=False)
    """Why the run must stop (set by the first signal)."""
    signum: int | None = field(default=None, init=False)
    """The signal that stopped the run (the second one, when it was cut short)."""
    _signals: int = field(default=0, init=False, repr=False)
    _ending: bool = field(default=False, init=False, repr=False)  # told to stop: it is ending

    def __call__(self) -> str | bool:
        """Why the run must stop now, or False: the engine's ``should_stop``."""
        if self.reason is None:
            return False
        self._ending = True
        return self.reason

    def sleep(self, seconds: float) -> None:
        """Wait ``seconds``, or less once a stop is asked (the connectors' retry waits)."""
        deadline = time.monotonic() + seconds
        while self.reason is None and (left := deadline - time.monotonic()) > 0:
            time.sleep(min(left, _NAP))

    @contextmanager
    def handling(self) -> Iterator[None]:
        """Handle the stop signals in the block, which runs the engine; the previous handlers
        are put back after it. A run cut short by a second signal exits 128 + its number.

        Outside the main thread (refsync embedded in an application) signals are left alone.
        """
        with signals_handled_by(self._on_signal, STOP_SIGNALS):
            try:
                yield
            except KeyboardInterrupt as exc:  # only a second signal raises it while handled
                say_on_stderr("why", f"{exc}: the page or batch in progress was not committed; "
                              "the run is recorded interrupted", event="run interrupted",
                              level="warning")
                sys.exit(128 + (self.signum or signal.SIGINT))

    def _on_signal(self, signum: int, _: FrameType | None) -> None:
        name = STOP_SIGNALS[signal.Signals(signum)]
        self._signals += 1
        if self._signals == 1:
            self.reason, self.signum = f"{self.command} was stopped by {name}", signum
            _tell_from_handler(f"{name}: the run stops once the page or batch in progress is "
                               "committed; a second signal stops it at once, without it",
                               signal=signal.Signals(signum).name)
        elif self._signals > 2:
            # exit now, as the daemon does on its second: a run not yet recorded stays
            # `running` until the next run takes the lease over and marks it abandoned
            os._exit(128 + signum)
        elif self._ending:
            _tell_from_handler("the run is already ending: it is being recorded",
                               signal=signal.Signals(signum).name)
        else:
            self.signum = signum
            # unwinds the page in progress (its transaction rolls back); the engine records
            # the run interrupted with this reason, then the command exits (handling())
            raise KeyboardInterrupt(f"{self.reason}, then at once by a second signal ({name})")


def _tell_from_handler(message: str, **context: Any) -> None:
    """Say on standard error, from a signal handler, that the command is stopping.

    The handler may interrupt the command in the middle of writing to standard error, and a
    buffered stream refuses to be written to again then: the notice is dropped rather than let
    that error end the run.
    """
    with suppress(RuntimeError):
        say_on_stderr("stopping", message, event="stopping", level="warning", **context)
