"""``refsync run``: the daemon."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from refsync.cli.common import (
    CliContext,
    config_option,
    fail,
    handle_refsync_errors,
    pass_cli,
)
from refsync.errors import ConfigError, Problem
from refsync.sync.wiring import build_bindings
from refsync.yamlsource import load_yaml

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

    loaded = cli_context.load(config_path, with_named_files=True,
                              command_problems=_no_schedules)
    # everything the config names is checked before the database opens, every problem at once
    problems = [] if loaded.config.schedules else _no_schedules(loaded.path)
    try:
        build_bindings(loaded)
    except ConfigError as exc:
        problems = [*exc.problems, *problems]
    if problems:
        raise ConfigError(problems)
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


def _no_schedules(path: Path) -> list[Problem]:
    """The problem of a config file with no ``schedules:`` entry: the daemon would run nothing.

    Read from the file as written, so that it is told with the config's other problems
    whether or not the configuration could be loaded. A ``schedules:`` that is not a list
    (empty ``schedules:`` included) is left to validation to report.
    """
    try:
        document = load_yaml(path)
    except ConfigError:  # unreadable or not YAML: loading the configuration says so
        return []
    data = document.data if isinstance(document.data, dict) else {}
    if data.get("schedules", []) != []:
        return []
    return [document.source.problem(
        ("schedules",), "no schedules to run",
        "add a 'schedules:' list, e.g. schedules: [{name: every-five-minutes, every: 5m}]",
        key=True)]
