"""The ``refsync`` command group. Commands only parse arguments and call into the library."""

from __future__ import annotations

import click

from refsync import __version__

__all__ = ["cli", "main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="refsync")
def cli() -> None:
    """refsync keeps partner referrals in step between PRMs, CRMs and marketing automation."""


def main() -> None:
    """Entry point of the ``refsync`` console script."""
    cli(prog_name="refsync")
