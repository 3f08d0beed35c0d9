"""The ``refsync`` command group. Commands only parse arguments and call into the library."""

from __future__ import annotations

import errno
import sys
from typing import Any

import click

from refsync import __version__
from refsync.cli.common import EXIT_FAILED, CliContext, ErrorEvent, log_command, say_crashed

__all__ = ["RefsyncGroup", "cli", "main"]

# click 8.2 and later show a group's help, when it is given no arguments, through a usage error
_HELP_SHOWN: Any = getattr(click.exceptions, "NoArgsIsHelpError", ())


class RefsyncGroup(click.Group):
    """The ``refsync`` group: under JSON log lines, click's errors and crashes are log events.

    An unknown option, a missing argument or a bad choice, in the group's options or in a
    command's, and a command's own failure that click would print (``Error: ...``), are then
    written as one JSON line (see :class:`ErrorEvent`) with click's exit code; so is a group
    given no command, which click answers with its help. A command that crashes (an exception
    refsync did not expect) writes a ``command crashed`` event (see
    :func:`~refsync.cli.common.say_crashed`) and exits 1. Without JSON log lines, click prints
    its usual text and a crash its traceback. ``--help`` and ``--version`` are unchanged.

    Log lines are JSON with ``--log-format json`` and, once a command has loaded the
    configuration, with its ``logging.format: json`` (see :meth:`CliContext.logs_json`). An
    error in the options, found before any configuration is loaded, is an event only with
    ``--log-format json``.
    """

    def make_context(
        self, info_name: str | None, args: list[str], parent: click.Context | None = None,
        **extra: Any,
    ) -> click.Context:
        """Parse the group's options; a usage error among them is an event if JSON was asked."""
        given = list(args)
        try:
            return super().make_context(info_name, args, parent, **extra)
        except click.UsageError as error:
            if not isinstance(error, _HELP_SHOWN) and \
                    self._log_format_among(info_name, given) == "json":
                raise ErrorEvent(error) from error
            raise

    def invoke(self, ctx: click.Context) -> Any:
        """Run the command; a click error or a crash in it is an event under JSON log lines.
        An option of the group written after the command is told where it goes."""
        try:
            return super().invoke(ctx)
        except click.ClickException as raised:
            error = self._placed_after_the_command(raised)
            if not _logs_json(ctx) or isinstance(error, ErrorEvent):
                if error is raised:
                    raise
                raise error from raised
            if isinstance(error, _HELP_SHOWN) or _is_missing_command(error):
                given = getattr(error, "ctx", None)  # a UsageError's, or the help's
                path = given.command_path if given is not None else "refsync"
                raise ErrorEvent(error, f"missing command: `{path} --help` lists them") \
                    from error
            running = ctx.find_object(CliContext)
            raise ErrorEvent(error, command=running.command if running else None) from error
        except (click.exceptions.Exit, click.Abort):
            raise
        except Exception as crash:
            if not _logs_json(ctx) or _is_a_closed_pipe(crash):
                raise  # Python's traceback (masked), or click's quiet exit on a closed pipe
            cli_context = ctx.find_object(CliContext)
            say_crashed(type(crash), crash, crash.__traceback__,
                        command=cli_context.command if cli_context is not None else None)
            sys.exit(EXIT_FAILED)

    def _placed_after_the_command(self, error: click.ClickException) -> click.ClickException:
        """``refsync sync --log-format json``: the option is the group's, so it goes before
        the command; say so beside click's "No such option"."""
        if not isinstance(error, click.NoSuchOption) or error.ctx is None:
            return error
        own = {name for param in self.params for name in getattr(param, "opts", ())}
        if error.option_name not in own:
            return error
        root = error.ctx.find_root().info_name or "refsync"
        return click.UsageError(
            f"No such option '{error.option_name}' after the command: it is an option of "
            f"{root} itself, written before the command "
            f"(`{root} {error.option_name} ... {error.ctx.info_name}`).", error.ctx)

    def _log_format_among(self, info_name: str | None, args: list[str]) -> object:
        """The ``--log-format`` given among ``args``, which click refused: read again
        leniently, past unknown options and bad values, whatever the order of the options."""
        try:
            ctx = super().make_context(
                info_name, list(args), resilient_parsing=True, ignore_unknown_options=True)
        except click.UsageError:
            return None
        return ctx.params.get("log_format")


def _logs_json(ctx: click.Context) -> bool:
    """Whether the command run in ``ctx`` (the group's) writes JSON log lines."""
    cli_context = ctx.find_object(CliContext) or CliContext(log_format=ctx.params.get("log_format"))
    return cli_context.logs_json()


def _is_missing_command(error: click.ClickException) -> bool:
    """``refsync --log-format json`` and nothing more: click's "Missing command." (a group given
    no arguments at all shows its help instead)."""
    return isinstance(error, click.UsageError) and error.message == "Missing command."


def _is_a_closed_pipe(error: Exception) -> bool:
    """Standard output closed by its reader (``refsync runs | head``), which click ends quietly."""
    return isinstance(error, OSError) and error.errno == errno.EPIPE


@click.group(cls=RefsyncGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="refsync")
@click.option(
    "-c", "--config", "config_path", type=click.Path(dir_okay=False), default=None,
    help="Config file (default: $REFSYNC_CONFIG, else ./refsync.yaml).",
)
@click.option(
    "--log-level", type=click.Choice(["debug", "info", "warning", "error"]), default=None,
    help="Override logging.level from the config.",
)
@click.option(
    "--log-format", type=click.Choice(["auto", "json", "console"]), default=None,
    help="json lines, readable console, or auto (console on a TTY, JSON otherwise).",
)
@click.pass_context
def cli(
    ctx: click.Context, config_path: str | None, log_level: str | None, log_format: str | None
) -> None:
    """refsync keeps partner referrals in step between PRMs, CRMs and marketing automation."""
    ctx.obj = CliContext(config_option=config_path, log_level=log_level, log_format=log_format)
    log_command(ctx)
    # from here on, a command's failure before it loads a config is a JSON event too
    ctx.obj.log_json_if_asked()


def main() -> None:
    """Entry point of the ``refsync`` console script."""
    cli(prog_name="refsync")


from refsync.cli.check import check  # noqa: E402
from refsync.cli.state import errors, runs, state  # noqa: E402

cli.add_command(check)
cli.add_command(state)
cli.add_command(runs)
cli.add_command(errors)

from refsync.cli.sync import plan, referrals, retry, sync  # noqa: E402

cli.add_command(sync)
cli.add_command(plan)
cli.add_command(retry)
cli.add_command(referrals)

from refsync.cli.sandbox import sandbox  # noqa: E402

cli.add_command(sandbox)

from refsync.cli.mapping import mapping  # noqa: E402

cli.add_command(mapping)

from refsync.cli.demo import demo  # noqa: E402

cli.add_command(demo)

from refsync.cli.run import run  # noqa: E402

cli.add_command(run)
