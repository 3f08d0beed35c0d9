"""``refsync check``: validate the configuration and every mapping file it names."""

from __future__ import annotations

import sys
from typing import Any

import click

from refsync.cli.common import (
    EXIT_CHECK_FAILED,
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
from refsync.logging import configure_logging

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


def online_findings(loaded: LoadedConfig) -> dict[str, dict[str, Any]]:
    """Contact every system: credentials, API budget, and each mapping against ``discover()``."""
    from refsync.errors import RefsyncError
    from refsync.mapping import validate_against
    from refsync.sync.wiring import build_bindings

    report: dict[str, dict[str, Any]] = {}
    bindings = build_bindings(loaded)
    checked: set[int] = set()
    for binding in bindings:
        entry = report.setdefault(binding.system, {"ok": True, "findings": [], "budget": None})
        if id(binding.connector) not in checked:
            checked.add(id(binding.connector))
            try:
                result = binding.connector.check()
            except RefsyncError as exc:
                entry["ok"] = False
                entry["findings"].append({"severity": "error", "message": exc.message, "fix": ""})
                continue
            entry["ok"] = entry["ok"] and result.ok
            budget = result.api_budget
            entry["budget"] = f"{budget.remaining}/{budget.limit} calls left today" \
                if budget else None
            entry["findings"].extend(
                {"severity": f.severity, "message": f.message, "fix": f.fix}
                for f in result.findings)
        try:
            schema = binding.connector.discover(binding.object)
        except RefsyncError as exc:
            entry["ok"] = False
            entry["findings"].append({"severity": "error", "message": exc.message, "fix": ""})
            continue
        for problem in validate_against(binding.mapping, schema):
            entry["ok"] = False
            entry["findings"].append({"severity": "error", "message": str(problem),
                                      "fix": problem.fix})
    return report


@click.command()
@config_option
@json_option
@click.option("--online", is_flag=True,
              help="Also contact every system: credentials, API budget, and each mapping's "
                   "fields, types, writability and picklist values (exit 3 if one fails).")
@pass_cli
def check(cli_context: CliContext, config_path: str | None, as_json: bool, online: bool) -> None:
    """Validate the config and its mapping files (exit 0 valid, 2 invalid, 3 a system failed).

    Offline (the default) nothing is contacted: no system, no database.
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
    if online:
        configure_logging(
            level=cli_context.log_level or loaded.config.logging.level,
            fmt=cli_context.log_format or loaded.config.logging.format,  # type: ignore[arg-type]
            secrets=loaded.secrets,
        )
        try:
            report = online_findings(loaded)
        except ConfigError as exc:
            report_config_error(exc, as_json=as_json)
        failed = [name for name, entry in report.items() if not entry["ok"]]
        if as_json:
            echo_json({"ok": not failed, "config": str(path), "systems": report})
        else:
            for name, entry in report.items():
                state = "OK" if entry["ok"] else "FAILED"
                budget = f" (API budget: {entry['budget']})" if entry["budget"] else ""
                click.echo(f"{name}: {state}{budget}")
                for finding in entry["findings"]:
                    fix = f" — {finding['fix']}" if finding["fix"] and \
                        finding["fix"] not in finding["message"] else ""
                    click.echo(f"  {finding['severity']}: {finding['message']}{fix}")
        sys.exit(EXIT_CHECK_FAILED if failed else EXIT_OK)
    if as_json:
        echo_json({"ok": True, "config": str(path), "systems": systems, "problems": []})
    else:
        streams = sum(len(s) for s in systems.values())
        click.echo(f"{path}: OK — {_counted(len(systems), 'system')}, "
                   f"{_counted(streams, 'stream')}, mappings valid")
    sys.exit(EXIT_OK if not problems else EXIT_CONFIG)


def _counted(count: int, noun: str) -> str:
    """``1 system``, ``3 systems``."""
    return f"{count} {noun}{'' if count == 1 else 's'}"
