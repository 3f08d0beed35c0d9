"""The ``refsync`` command group. Commands only parse arguments and call into the library."""

from __future__ import annotations

import click

from refsync import __version__
from refsync.cli.common import CliContext

__all__ = ["cli", "main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
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
