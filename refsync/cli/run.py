"""``refsync run``: the daemon."""

from __future__ import annotations

import sys

import click

from refsync.cli.common import (
    EXIT_CONFIG,
    CliContext,
    config_option,
    fail,
    handle_refsync_errors,
    pass_cli,
)
from refsync.sync.wiring import build_bindings

__all__ = ["run"]


@click.command()
@config_option
@click.option("--http-host", default=None,
              help="Address of /healthz, /readyz and /metrics (default: daemon.http_host, "
                   "127.0.0.1).")
@click.option("--http-port", type=click.IntRange(0, 65535), default=None,
              help="Their port (default: daemon.http_port, 9464; 0 picks a free one).")
@pass_cli
@handle_refsync_errors
def run(cli_context: CliContext, config_path: str | None, http_host: str | None,
        http_port: int | None) -> None:
    """Run the configured schedules until SIGTERM or Ctrl-C.

    Several daemons may share one PostgreSQL database: they take turns through a lease, and each
    scheduled tick runs once. On SQLite only one daemon may use the file.
    """
    from refsync.daemon import Daemon
    from refsync.daemon.http import bound_socket

    loaded = cli_context.load(config_path, with_named_files=True)
    if not loaded.config.schedules:
        fail(f"{loaded.path}: no schedules to run; add a 'schedules:' list, e.g.\n"
             "  schedules:\n    - name: every-five-minutes\n      every: 5m", EXIT_CONFIG)
    build_bindings(loaded)  # everything the config names is checked before the database opens
    settings = loaded.config.daemon
    host = http_host or settings.http_host
    port = settings.http_port if http_port is None else http_port
    try:  # a port another process holds is refused before the database is created
        bound_socket(host, port).close()
    except OSError as exc:
        fail(f"{exc}; choose another with --http-port or daemon.http_port")
    with cli_context.store(config_path) as store:
        store.acquire_daemon_lock()
        daemon = Daemon(loaded, store, http_host=http_host, http_port=http_port)
        try:
            code = daemon.serve_forever()
        except OSError as exc:
            fail(f"{exc}; choose another with --http-port or daemon.http_port")
    sys.exit(code)
