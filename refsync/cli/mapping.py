"""``refsync mapping``: check mapping files and preview what they do to records."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from enum import Enum
from pathlib import Path
from typing import Any

import click

from refsync.cli.common import fail, log_command, report_config_error
from refsync.errors import ConfigError, Problem, RecordError
from refsync.mapping import CompiledMapping, MappedRecord, load_mapping
from refsync.mapping.paths import path_getter

__all__ = ["mapping"]

EXIT_OK = 0
EXIT_RECORD_ERRORS = 1
EXIT_CONFIG = 2


@click.group("mapping")
@click.pass_context
def mapping(ctx: click.Context) -> None:
    """Check field mappings and preview them on sample records."""
    log_command(ctx)


@mapping.command("check")
@click.argument("files", nargs=-1, required=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
def check(files: Sequence[str], as_json: bool) -> None:
    """Validate mapping FILES (paths or builtin:<name>) and list every problem.

    Exit status: 0 when every file is valid, 2 otherwise. Problems are printed as
    FILE:LINE:COL: message — fix.
    """
    reports: list[tuple[str, CompiledMapping | None, list[Problem]]] = []
    for reference in files:
        try:
            reports.append((reference, load_mapping(reference), []))
        except ConfigError as exc:
            reports.append((reference, None, exc.problems))
    failed = any(problems for _, _, problems in reports)
    if as_json:
        click.echo(json.dumps({
            "ok": not failed,
            "files": [_check_json(*report) for report in reports],
        }, indent=2, ensure_ascii=False))
    else:
        total = 0
        for reference, loaded, problems in reports:
            if loaded is not None:
                click.echo(f"{reference}: ok ({loaded.system}/{loaded.object}, "
                           f"{len(loaded.fields)} fields)")
            for problem in problems:
                click.echo(str(problem))
            total += len(problems)
        if failed:
            click.echo(f"{total} problem{'s' if total != 1 else ''} found.")
    sys.exit(EXIT_CONFIG if failed else EXIT_OK)


def _check_json(
    reference: str, compiled: CompiledMapping | None, problems: Sequence[Problem]
) -> dict[str, Any]:
    entry: dict[str, Any] = {"file": reference, "ok": not problems,
                             "problems": [p.as_dict() for p in problems]}
    if compiled is not None:
        entry.update(system=compiled.system, object=compiled.object, fields=len(compiled.fields))
    return entry


@mapping.command("preview")
@click.option("--mapping", "mapping_ref", required=True, metavar="FILE",
              help="Mapping file, or builtin:<name>.")
@click.option("--record", "record_json", metavar="JSON", help="One record as a JSON object.")
@click.option("--input", "input_path", type=click.Path(dir_okay=False, path_type=Path),
              metavar="FILE.jsonl", help="Records, one JSON object a line.")
@click.option("--direction", type=click.Choice(["in", "out"]), default="in", show_default=True,
              help="in: remote record → canonical values; out: canonical record → remote payload.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
def preview(
    mapping_ref: str, record_json: str | None, input_path: Path | None, direction: str,
    as_json: bool,
) -> None:
    """Show what a mapping does to records: input, result and record errors, field by field.

    Exit status: 0 when every record maps, 1 when some have record errors, 2 when the mapping
    or the input is invalid.
    """
    if (record_json is None) == (input_path is None):
        raise click.UsageError("give exactly one of --record or --input")
    try:
        compiled = load_mapping(mapping_ref)
    except ConfigError as exc:
        report_config_error(exc)
    try:
        records = list(_records(record_json, input_path))
    except _InputError as exc:
        fail(str(exc), EXIT_CONFIG)
    previews = [_preview(compiled, record, direction) for record in records]
    if as_json:
        click.echo(json.dumps({
            "mapping": compiled.name,
            "direction": direction,
            "ok": all(p.result.ok for p in previews),
            "records": [p.as_json() for p in previews],
        }, indent=2, ensure_ascii=False, default=_json_default))
    else:
        _print_previews(compiled, direction, previews)
    sys.exit(EXIT_OK if all(p.result.ok for p in previews) else EXIT_RECORD_ERRORS)


class _InputError(Exception):
    pass


def _records(record_json: str | None, input_path: Path | None) -> Iterator[dict[str, Any]]:
    if record_json is not None:
        yield _parse_object(record_json, "--record")
        return
    assert input_path is not None
    try:
        lines = input_path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise _InputError(f"cannot read {input_path}: {exc.strerror or exc}") from exc
    for number, line in enumerate(lines, start=1):
        if line.strip():
            yield _parse_object(line, f"{input_path}:{number}")


def _parse_object(text: str, where: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise _InputError(f"{where}: not valid JSON: {exc.msg} (column {exc.colno})") from exc
    if not isinstance(value, dict):
        raise _InputError(f"{where}: expected a JSON object, got {type(value).__name__}")
    return value


@dataclass
class _Row:
    canonical: str
    remote: str
    input: Any
    result: Any
    error: RecordError | None


@dataclass
class _Preview:
    record: dict[str, Any]
    result: MappedRecord
    rows: list[_Row]

    def as_json(self) -> dict[str, Any]:
        return {
            "input": self.record,
            "result": self.result.values,
            "errors": [
                {"field": e.field, "code": e.code, "message": e.message}
                for e in self.result.errors
            ],
        }


def _canonical_value(record: Mapping[str, Any], name: str) -> Any:
    if name in record:
        return record[name]
    custom = record.get("custom")
    if name.startswith("custom.") and isinstance(custom, Mapping):
        return custom.get(name[7:])
    return None


def _preview(compiled: CompiledMapping, record: dict[str, Any], direction: str) -> _Preview:
    if direction == "in":
        result = compiled.to_canonical(record)
        pairs = [("id", compiled.key_field)] + [
            (f.canonical, f.remote) for f in compiled.fields if f.reads]
    else:
        result = compiled.to_remote_result(record)
        pairs = [("id", compiled.key_field)] + [
            (f.canonical, f.remote) for f in compiled.fields if f.writes]
    errors = {e.field: e for e in result.errors}
    rows = []
    for canonical, remote in pairs:
        remote_value = path_getter(remote)
        if direction == "in":
            source, target = remote_value(record), result.values.get(canonical)
        else:
            source, target = _canonical_value(record, canonical), remote_value(result.values)
        rows.append(_Row(canonical, remote, source, target, errors.get(canonical)))
    return _Preview(record, result, rows)


def _json_default(value: Any) -> Any:
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, Decimal):
        return str(value)
    return str(value)


def _show(value: Any) -> str:
    if isinstance(value, Enum):
        value = value.value
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    return json.dumps(value, ensure_ascii=False, default=_json_default)


def _print_previews(compiled: CompiledMapping, direction: str, previews: list[_Preview]) -> None:
    if sys.stdout.isatty():
        from rich.console import Console

        render_rich(Console(), compiled, direction, previews)
        return
    arrow = _ARROWS[direction]
    for number, item in enumerate(previews, start=1):
        click.echo(f"record {number}: {compiled.system}/{compiled.object} ({arrow})")
        cells = [_COLUMNS] + [
            (row.canonical, row.remote, _show(row.input),
             f"ERROR {row.error.code}: {row.error.message}" if row.error else _show(row.result))
            for row in item.rows
        ]
        widths = [max(len(cell[i]) for cell in cells) for i in range(3)]
        for cell in cells:
            aligned = "  ".join(cell[i].ljust(widths[i]) for i in range(3))
            click.echo(f"  {aligned}  {cell[3]}")
        shown = {row.canonical for row in item.rows}
        for error in item.result.errors:
            if error.field not in shown:
                click.echo(f"  ERROR {error.code}: {error.message}")


_COLUMNS = ("canonical", "remote", "input", "result")
_ARROWS = {"in": "remote → canonical", "out": "canonical → remote"}


def render_rich(
    console: Any, compiled: CompiledMapping, direction: str, previews: list[_Preview]
) -> None:
    """Print previews as rich tables (used on a terminal)."""
    from rich.markup import escape
    from rich.table import Table

    for number, item in enumerate(previews, start=1):
        table = Table(title=f"record {number}: {compiled.system}/{compiled.object} "
                            f"({_ARROWS[direction]})")
        for column in _COLUMNS:
            table.add_column(column, overflow="fold")
        for row in item.rows:
            result = f"[red]✗ {escape(row.error.code)}: {escape(row.error.message)}[/red]" \
                if row.error else escape(_show(row.result))
            table.add_row(escape(row.canonical), escape(row.remote), escape(_show(row.input)),
                          result)
        console.print(table)
