"""``refsync check``: validate the configuration and every mapping file it names."""

from __future__ import annotations

import sys

import click

from refsync.cli.common import (
    EXIT_CONFIG,
    EXIT_OK,
    CliContext,
    config_option,
    echo_json,
    json_option,
    pass_cli,
    report_config_error,
)
from refsync.config import LoadedConfig, config_path_from, load_config
from refsync.errors import ConfigError, Problem

__all__ = ["check", "offline_problems"]


def offline_problems(loaded: LoadedConfig) -> list[Problem]:
    """Every problem in the mapping files a valid configuration names, and mismatches with it."""
    from refsync.mapping import load_mapping
    from refsync.sync.wiring import connector_settings

    problems: list[Problem] = connector_settings(loaded)[1]
    for system_name, system in loaded.config.systems.items():
        for stream_name, stream in system.streams.items():
            where = ("systems", system_name, "streams", stream_name, "mapping")
            try:
                mapping = load_mapping(loaded.resolve_path(stream.mapping))
            except ConfigError as exc:
                problems.extend(exc.problems)
                continue
            if mapping.object != stream.object:
                problems.append(loaded.source.problem(
                    where,
                    f"stream '{system_name}.{stream_name}' reads object '{stream.object}' but "
                    f"its mapping {stream.mapping} is for '{mapping.object}'",
                    "point the stream at a mapping for that object, or fix 'object:'",
                ))
    return problems


@click.command()
@config_option
@json_option
@pass_cli
def check(cli_context: CliContext, config_path: str | None, as_json: bool) -> None:
    """Validate the config and its mapping files offline (exit 0 when valid, 2 otherwise).

    Nothing is contacted: no system, no database.
    """
    path = config_path_from(config_path or cli_context.config_option)
    try:
        loaded = load_config(path)
    except ConfigError as exc:
        report_config_error(exc, as_json=as_json)
    problems = offline_problems(loaded)
    if problems:
        report_config_error(ConfigError(problems), as_json=as_json)
    systems = {
        name: sorted(system.streams) for name, system in loaded.config.systems.items()
    }
    if as_json:
        echo_json({"ok": True, "config": str(path), "systems": systems, "problems": []})
    else:
        streams = sum(len(s) for s in systems.values())
        click.echo(f"{path}: OK — {len(systems)} systems, {streams} streams, mappings valid")
    sys.exit(EXIT_OK if not problems else EXIT_CONFIG)
