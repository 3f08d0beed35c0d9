"""``refsync check``: validate the configuration and every mapping file it names."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

import click

from refsync.cli.common import (
    EXIT_CHECK_FAILED,
    EXIT_OK,
    CliContext,
    config_option,
    counted,
    echo_json,
    json_option,
    pass_cli,
    report_config_error,
    say_failed,
)
from refsync.config import (
    CustomerSourceConfig,
    LoadedConfig,
    OpportunitySourceConfig,
    config_path_from,
)
from refsync.errors import ConfigError, ConnectorError, Problem, RefsyncError
from refsync.logging import configure_logging, renders_json
from refsync.yamlsource import did_you_mean

if TYPE_CHECKING:
    from refsync.connectors.base import Connector, ConnectorContext
    from refsync.connectors.schema import ObjectSchema

__all__ = ["check", "online_findings"]


Report = dict[str, dict[str, Any]]


def online_findings(loaded: LoadedConfig) -> Report:
    """Contact every system: credentials, API budget, each mapping against ``discover()``, and
    the fields the rules read customers and open deals from.

    A person waits on the answer: a call that gets no answer is not retried (the connectors'
    contexts are interactive), so a system that cannot be reached is reported after one
    attempt instead of after the backoff a sync would wait out.
    """
    from refsync.mapping import validate_against
    from refsync.sync.wiring import build_bindings

    report: Report = {}
    bindings = build_bindings(loaded, context_factory=_interactive_context)
    checked: dict[int, bool] = {}
    for binding in bindings:
        entry = _entry(report, binding.system)
        if id(binding.connector) not in checked:
            checked[id(binding.connector)] = _signs_in(binding.connector, entry)
        if not checked[id(binding.connector)]:
            continue
        try:
            schema = binding.connector.discover(binding.object)
        except RefsyncError as exc:
            _fails(entry, exc.message)
            continue
        for problem in validate_against(binding.mapping, schema):
            _fails(entry, str(problem), problem.fix)
    reachable = {b.system: b.connector for b in bindings if checked[id(b.connector)]}
    for key, source, fields in _customer_reads(loaded):
        connector = reachable.get(source.system)
        if connector is None:
            continue
        entry = _entry(report, source.system)
        try:
            schema = connector.discover(source.object)
        except RefsyncError as exc:
            problem = loaded.source.problem(
                ("rules", key, "object"),
                f"rules.{key} reads object '{source.object}', which {source.system} cannot "
                f"describe: {exc.message}",
                _describe_fix(exc))
            _fails(entry, str(problem), problem.fix)
            continue
        for problem in _source_field_problems(loaded, key, source, fields, schema):
            _fails(entry, str(problem), problem.fix)
    return report


def _interactive_context(system: str) -> ConnectorContext:
    """The context of a connector whose calls a person waits on (see
    :attr:`~refsync.connectors.base.ConnectorContext.interactive`)."""
    from refsync.connectors.base import ConnectorContext

    return ConnectorContext(system=system, interactive=True)


def _entry(report: Report, system: str) -> dict[str, Any]:
    return report.setdefault(system, {"ok": True, "findings": [], "budget": None})


def _fails(entry: dict[str, Any], message: str, fix: str = "") -> None:
    entry["ok"] = False
    entry["findings"].append({"severity": "error", "message": message, "fix": fix})


def _describe_fix(error: RefsyncError) -> str:
    """The fix for a rules source whose object could not be described.

    Only a system saying the object does not exist points at the ``object:`` setting; any
    other failure (a refused permission, a timeout) has its own cause, which its message says.
    """
    from refsync.connectors.errors import names_unknown_object

    if isinstance(error, ConnectorError) and names_unknown_object(error):
        return "set object: to the API name of the object to read"
    return "fix the cause and run check again"


def _signs_in(connector: Connector, entry: dict[str, Any]) -> bool:
    """Run the connector's own check into ``entry``; whether the system answered and accepted
    the credentials.

    A system that could not be reached (refused connection, timeout, TLS failure) or refused
    the credentials is not asked to describe each mapping's object: every answer would be the
    same failure, already reported once by the check.
    """
    try:
        result = connector.check()
    except RefsyncError as exc:
        _fails(entry, exc.message)
        return False
    entry["ok"] = entry["ok"] and result.ok
    budget = result.api_budget
    entry["budget"] = f"{budget.remaining}/{budget.limit} calls left today" if budget else None
    entry["findings"].extend(
        {"severity": f.severity, "message": f.message, "fix": f.fix} for f in result.findings)
    return result.reachable and result.auth_ok


def _customer_reads(
    loaded: LoadedConfig,
) -> list[tuple[str, CustomerSourceConfig | OpportunitySourceConfig, tuple[str, ...]]]:
    """The rules' sources and the settings naming the fields read from each."""
    rules = loaded.config.rules
    reads: list[tuple[str, CustomerSourceConfig | OpportunitySourceConfig, tuple[str, ...]]] = []
    if rules.customers_from is not None:
        reads.append(("customers_from", rules.customers_from,
                      ("name_field", "website_field", "type_field")))
    deals = rules.open_opportunities_from
    if deals is not None:
        account = () if deals.account_association else ("account_field",)
        reads.append(("open_opportunities_from", deals,
                      (*account, "closed_field", "name_field")))
    return reads


def _source_field_problems(
    loaded: LoadedConfig,
    key: str,
    source: CustomerSourceConfig | OpportunitySourceConfig,
    fields: tuple[str, ...],
    schema: ObjectSchema,
) -> list[Problem]:
    """The settings of ``rules.<key>`` naming a field that ``schema``'s object does not have.

    Each is reported at its line, or at the block's when the default is used.
    """
    problems = []
    for setting in fields:
        name = getattr(source, setting)
        if name in schema.fields:
            continue
        written = setting in source.model_fields_set
        default = "" if written else " (the default)"
        guess = did_you_mean(name, schema.fields)
        fix = f"did you mean {setting}: {guess}?" if guess else \
            f"{'set' if written else 'add'} {setting}: with the API name of a field of " \
            f"{schema.name}"
        problems.append(loaded.source.problem(
            ("rules", key, setting),
            f"rules.{key}.{setting} is '{name}'{default}, but {schema.name} in "
            f"{source.system} has no such field", fix))
    return problems


@click.command()
@config_option
@json_option
@click.option("--online", is_flag=True,
              help="Also contact every system: credentials, API budget, each mapping's "
                   "fields, types, writability and picklist values, and the fields the rules "
                   "read customers and open deals from (exit 3 if one fails).")
@pass_cli
def check(cli_context: CliContext, config_path: str | None, as_json: bool, online: bool) -> None:
    """Validate the config and its mapping files (exit 0 valid, 2 invalid, 3 a system failed).

    Offline (the default) nothing is contacted: no system, no database.
    """
    from refsync.sync.wiring import load_checked

    path = config_path_from(config_path or cli_context.config_option)
    try:
        loaded = load_checked(path)
    except ConfigError as exc:
        report_config_error(exc, as_json=as_json)
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
            _print_report(report)
            if failed and renders_json():
                _log_failures(report, failed)
        sys.exit(EXIT_CHECK_FAILED if failed else EXIT_OK)
    if as_json:
        echo_json({"ok": True, "config": str(path), "systems": systems, "problems": []})
    else:
        streams = sum(len(s) for s in systems.values())
        click.echo(f"{path}: OK — {counted(len(systems), 'system')}, "
                   f"{counted(streams, 'stream')}, mappings valid")
    sys.exit(EXIT_OK)


def _print_report(report: Report) -> None:
    """The online report as text: each system's state, budget and findings."""
    for name, entry in report.items():
        state = "OK" if entry["ok"] else "FAILED"
        budget = f" (API budget: {entry['budget']})" if entry["budget"] else ""
        click.echo(f"{name}: {state}{budget}")
        for finding in entry["findings"]:
            fix = f" — {finding['fix']}" if finding["fix"] and \
                finding["fix"] not in finding["message"] else ""
            click.echo(f"  {finding['severity']}: {finding['message']}{fix}")


def _log_failures(report: Report, failed: list[str]) -> None:
    """Under JSON logging, each error finding as a ``check failed`` event, then the outcome.

    The report itself stays on standard output; these events let a log collector see why a
    deployment's online check failed without parsing it.
    """
    for name in failed:
        for finding in report[name]["findings"]:
            if finding["severity"] == "error":
                say_failed(finding["message"], EXIT_CHECK_FAILED, event="check failed",
                           system=name, fix=finding["fix"])
    say_failed(f"the online check failed for {', '.join(failed)}", EXIT_CHECK_FAILED)
