"""``refsync state``, ``refsync runs`` and ``refsync errors``: read and maintain the state store."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

from refsync.cli.common import (
    EXIT_CONFIG,
    CliContext,
    config_option,
    counted,
    echo_json,
    fail,
    json_option,
    log_command,
    pass_cli,
)
from refsync.domain.ids import short_referral_id

__all__ = ["errors", "print_table", "runs", "state"]


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value else "—"


def print_table(title: str, columns: list[str], rows: list[list[str]]) -> None:
    """Print a table: fitted to a terminal, whole rows on a pipe.

    Cells are shown as they are: a value holding brackets (``[Company]``, a partner's
    ``[/b]``) is text, never markup.
    """
    table = Table(title=title, title_justify="left")
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*(Text(cell) for cell in row))
    console = Console()
    if not console.is_terminal:
        console = Console(width=240)  # a pipe gets whole rows, not columns folded to 80
    console.print(table)


@click.group()
@click.pass_context
def state(ctx: click.Context) -> None:
    """Inspect and maintain the state database."""
    log_command(ctx)


@state.command("migrate")
@config_option
@pass_cli
def state_migrate(cli_context: CliContext, config_path: str | None) -> None:
    """Create or upgrade the state database schema (also done automatically on start)."""
    with cli_context.store(config_path, migrate=False) as store:
        applied = store.migrate()
        revision = store.schema_revision()
    if applied:
        click.echo(f"applied migrations {', '.join(applied)}; schema is at {revision}")
    else:
        click.echo(f"schema is up to date at {revision}")


@state.command("show")
@config_option
@json_option
@pass_cli
def state_show(cli_context: CliContext, config_path: str | None, as_json: bool) -> None:
    """Show each stream's cursor (how far it has been read) and table counts."""
    with cli_context.store(config_path) as store:
        cursors = store.list_cursors()
        counts = store.counts()
        revision = store.schema_revision()
    if as_json:
        echo_json({"schema_revision": revision, "counts": counts, "cursors": cursors})
        return
    click.echo(f"schema {revision}; " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    if not cursors:
        click.echo("No cursors yet: no stream has been read. Run `refsync sync` first.")
        return
    print_table(
        "Cursors",
        ["system", "stream", "cursor", "updated", "run"],
        [
            [c["system"], c["stream"], _cursor_text(c["value"]), _when(c["updated_at"]),
             (c["run_id"] or "—")[:8]]
            for c in cursors
        ],
    )


def _cursor_text(value: dict[str, Any]) -> str:
    """A cursor in one line: a collection in it (the ids already read at the boundary's
    modification time, hundreds after a batch write) by its size; ``--json`` has it whole."""
    return _compact({key: counted(len(item), "id") if isinstance(item, dict | list) else item
                     for key, item in value.items()})



def _compact(value: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in value.items()) or "—"


def _nonzero_counts(counts: dict[str, Any]) -> str:
    """A run's counts as ``sync`` prints them: the counters that are not zero (the per-stream
    counts are in ``runs --json``)."""
    return _compact({k: v for k, v in counts.items()
                     if k not in ("streams", "stopped_streams") and v not in (0, None, "", [], {})})


@click.command()
@config_option
@json_option
@click.option("--limit", default=20, show_default=True, type=click.IntRange(min=1),
              help="How many runs, newest first.")
@click.option("--job", default=None, help="Only runs of this job (a schedule's name, or sync).")
@pass_cli
def runs(cli_context: CliContext, config_path: str | None, as_json: bool, limit: int,
         job: str | None) -> None:
    """List recent sync runs: trigger, status, counts, which daemon ran them."""
    with cli_context.store(config_path) as store:
        rows = store.list_runs(limit, job=job)
        other_jobs = not rows and job is not None and bool(store.list_runs(1))
    if as_json:
        echo_json(rows)
        return
    if other_jobs:
        click.echo(f"No runs of job {job!r}: `refsync runs` lists every job's.")
        return
    if not rows:
        click.echo("No runs yet. Start one with `refsync sync`, or the daemon with `refsync run`.")
        return
    print_table(
        "Runs (newest first)",
        ["run", "job", "trigger", "status", "started", "finished", "counts", "instance"],
        [
            [r["id"][:8], r["job"], r["trigger"], r["status"], _when(r["started_at"]),
             _when(r["finished_at"]), _nonzero_counts(r["counts"]), r["instance"]]
            for r in rows
        ],
    )
    for row in rows:
        if row["error"]:
            click.echo(f"{row['id'][:8]} {row['status']}: {row['error']}")


@click.command()
@config_option
@json_option
@click.option("--run", "run_id", default=None,
              help="Only records quarantined by this run (id prefix).")
@click.option("--all", "include_resolved", is_flag=True,
              help="Include resolved records (a state column tells them from open ones).")
@click.option("--limit", default=100, show_default=True, type=click.IntRange(min=1))
@pass_cli
def errors(
    cli_context: CliContext,
    config_path: str | None,
    as_json: bool,
    run_id: str | None,
    include_resolved: bool,
    limit: int,
) -> None:
    """List quarantined records with the reason each could not be synced."""
    with cli_context.store(config_path) as store:
        if run_id and store.get_run(run_id) is None:
            fail(f"no run matches {run_id!r}: `refsync runs` lists them", EXIT_CONFIG)
        rows = store.list_quarantine(run_id=run_id, include_resolved=include_resolved, limit=limit)
        # only said when nothing is quarantined; counted from the outbox alone
        pending = 0 if rows or as_json else sum(store.backlog()["outbox"].values())
    if as_json:
        echo_json(rows)
        return
    if not rows:
        click.echo("No quarantined records.")
        if pending:
            click.echo(f"{pending} write(s) wait in the outbox (not pushed yet, or deferred "
                       "after a remote failure); the next sync sends those that are due.")
        return
    columns = ["id", "system", "stream", "dir", "record", "code", "message", "attempts", "since"]
    table = [
        [str(r["id"]), r["system"], r["stream"], r["direction"], _quarantined_record(r),
         r["error_code"], r["message"], str(r["attempts"]), _when(r["created_at"])]
        for r in rows
    ]
    if include_resolved:
        # open and resolved rows alike: say which is which, and when one was resolved
        columns.append("state")
        for line, row in zip(table, rows, strict=True):
            line.append(_quarantine_state(row))
    title = "Quarantined records (open and resolved)" if include_resolved \
        else "Quarantined records"
    print_table(title, columns, table)


def _quarantine_state(row: dict[str, Any]) -> str:
    """``open``, or ``resolved`` and when: by a retry, or once the record synced."""
    resolved = row["resolved_at"]
    return f"resolved {_when(resolved)}" if resolved else "open"


def _quarantined_record(row: dict[str, Any]) -> str:
    """Which record a quarantine row is about: the referral a write was for, or the remote
    record a read could not map (its id in that system, to find and fix it there)."""
    referral = short_referral_id(row["referral_id"]) if row["referral_id"] else None
    if row["direction"] == "in" and row["external_id"]:
        return f"{row['external_id']} (referral {referral})" if referral else row["external_id"]
    return referral or "—"
