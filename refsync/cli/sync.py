"""``refsync sync``, ``refsync plan``, ``refsync retry`` and ``refsync referrals``."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import click
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn

from refsync.cli.common import (
    EXIT_CONFIG,
    EXIT_FAILED,
    EXIT_OK,
    EXIT_PARTIAL,
    CliContext,
    StopOnSignals,
    config_option,
    echo_json,
    fail,
    handle_refsync_errors,
    json_option,
    log_command,
    pass_cli,
    say_failed,
    say_on_stderr,
)
from refsync.cli.state import print_table
from refsync.config import LoadedConfig
from refsync.connectors.base import ConnectorContext
from refsync.daemon import daemon_identity
from refsync.daemon.leases import hold_sync_lease
from refsync.domain import ReferralStatus
from refsync.domain.ids import is_id_fragment, short_referral_id
from refsync.logging import get_logger, renders_json
from refsync.state import LeaseToken, StateStore
from refsync.sync.engine import RunReport, SyncEngine
from refsync.sync.wiring import build_bindings, build_engine
from refsync.yamlsource import did_you_mean

__all__ = ["plan", "referrals", "retry", "sync"]

STATUS_EXIT = {"succeeded": EXIT_OK, "partial": EXIT_PARTIAL, "interrupted": EXIT_PARTIAL,
               "failed": EXIT_FAILED}


@contextmanager
def _engine(
    cli_context: CliContext, config_path: str | None, systems: Sequence[str] = (),
    stop: StopOnSignals | None = None,
) -> Iterator[SyncEngine]:
    """The engine, once the configuration, everything it names and ``systems`` are checked.

    A refused configuration or an unknown system exits 2 before the state database is opened
    (or created) and before any system is contacted. With ``stop``, the run stops when it
    says so, and the connectors' waits between retries end as soon as it does.
    """
    loaded = cli_context.load(config_path, with_named_files=True)
    bindings = build_bindings(loaded, context_factory=_contexts(stop))
    _refuse_unknown_systems(loaded, systems)
    with cli_context.store(config_path) as store:
        store.acquire_daemon_lock()
        options: dict[str, Any] = {} if stop is None else {"should_stop": stop}
        # named per process, like a daemon, so that run history and the lease tell them apart
        engine = build_engine(loaded, store, bindings=bindings,
                              instance=daemon_identity(loaded.config.instance), **options)
        yield engine


def _contexts(stop: StopOnSignals | None) -> Callable[[str], ConnectorContext] | None:
    """What each connector is given: waits that a stop cuts short (None: the defaults)."""
    if stop is None:
        return None
    return lambda system: ConnectorContext(system=system, sleep=stop.sleep)


def _refuse_unknown_systems(loaded: LoadedConfig, systems: Sequence[str]) -> None:
    """Exit 2 naming each of ``systems`` (from ``--system``) that is not configured."""
    configured = list(loaded.config.systems)
    unknown = [system for system in dict.fromkeys(systems) if system not in configured]
    if unknown:
        named = ", ".join(_with_guess(system, configured) for system in unknown)
        systems_word = "system" if len(unknown) == 1 else "systems"
        fail(f"unknown {systems_word} {named}; configured: {', '.join(configured)}", EXIT_CONFIG)


def _with_guess(name: str, choices: Sequence[str]) -> str:
    """``'salesfroce' (did you mean 'salesforce'?)``, or just the quoted name."""
    guess = did_you_mean(name, choices)
    return f"'{name}' (did you mean '{guess}'?)" if guess else f"'{name}'"


def _refuse_closed_quarantine(store: StateStore, ids: Sequence[int]) -> None:
    """Exit 2 naming each of ``ids`` that is not an open quarantined record, before any run."""
    with store.snapshot() as view:
        open_ids = {row["id"] for row in view.open_quarantine(list(ids))}
    missing = [str(number) for number in dict.fromkeys(ids) if number not in open_ids]
    if missing:
        records = "record" if len(missing) == 1 else "records"
        fail(f"no open quarantined {records} {', '.join(missing)}: never quarantined, or "
             "already resolved; nothing was retried — see the open ones with `refsync errors`",
             EXIT_CONFIG)


@contextmanager
def _sync_lease(engine: SyncEngine) -> Iterator[LeaseToken]:
    """The sync lease daemons take turns with, so a manual run never overlaps theirs."""
    with hold_sync_lease(engine.store, engine.instance, engine.config.daemon.lease_duration,
                         say=_waiting_note) as token:
        yield token


def _waiting_note(line: str) -> None:
    """Tell the user the command waits for the lease: a plain line, or an event under JSON."""
    if renders_json():
        get_logger("refsync.cli").info("waiting for the sync lease", message=line)
    else:
        click.echo(line, err=True)


@contextmanager
def _progress(engine: SyncEngine, quiet: bool) -> Iterator[None]:
    console = Console(stderr=True)
    if quiet or not console.is_terminal:
        yield
        return
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), console=console,
                  transient=True) as progress:
        tasks: dict[str, Any] = {}

        def report(label: str, records: int) -> None:
            if label not in tasks:
                tasks[label] = progress.add_task(label)
            progress.update(tasks[label], description=f"pulling {label}: {records} records")

        engine.progress = report
        yield


def _print_run(report: RunReport) -> None:
    counts = {k: v for k, v in report.counts.items()
              if k not in ("streams", "stopped_streams") and v}
    summary = ", ".join(f"{k} {v}" for k, v in counts.items()) or (
        "nothing to do" if report.status == "succeeded" else "nothing done")
    click.echo(f"run {report.run_id[:8]} {report.status}: {summary}")
    for label, stream_counts in report.counts.get("streams", {}).items():
        click.echo(f"  {label}: " + ", ".join(f"{k} {v}" for k, v in stream_counts.items()))
    if report.error and report.status == "failed":
        # `command failed`: the engine has logged the run's own `run failed` line already, so
        # an alert on that event fires once a failure
        say_failed(report.error, STATUS_EXIT["failed"], run_id=report.run_id)
    elif report.error:
        # why a run is partial or interrupted
        say_on_stderr("why", report.error, event=f"run {report.status}", level="warning",
                      run_id=report.run_id)
    if report.counts.get("quarantined"):
        click.echo("Quarantined records: `refsync errors`; replay them with `refsync retry --all`.")


@click.command()
@config_option
@json_option
@click.option("--system", "systems", multiple=True, help="Only pull this system (repeatable).")
@click.option("--full", is_flag=True, help="Ignore cursors and re-read everything.")
@pass_cli
@handle_refsync_errors
def sync(cli_context: CliContext, config_path: str | None, as_json: bool,
         systems: tuple[str, ...], full: bool) -> None:
    """Run one sync cycle now (exit 0 succeeded, 4 partial or interrupted, 1 failed).

    SIGTERM or Ctrl-C stops the run after the page or batch in progress, recorded
    interrupted (exit 4); a second signal stops it at once, without that page (exit 128 + the
    signal's number: 143, 130).
    """
    stop = StopOnSignals("refsync sync")
    with _engine(cli_context, config_path, systems, stop) as engine, \
            _progress(engine, as_json), _sync_lease(engine) as lease, stop.handling():
        report = engine.run(trigger="manual", systems=list(systems) or None, full=full,
                            lease=lease)
    if as_json:
        echo_json({"run_id": report.run_id, "status": report.status, "counts": report.counts,
                   "error": report.error})
    else:
        _print_run(report)
    sys.exit(STATUS_EXIT.get(report.status, EXIT_FAILED))


@click.command()
@config_option
@json_option
@click.option("--system", "systems", multiple=True, help="Only pull this system (repeatable).")
@click.option("--full", is_flag=True, help="Plan as if every record were read again.")
@pass_cli
@handle_refsync_errors
def plan(cli_context: CliContext, config_path: str | None, as_json: bool,
         systems: tuple[str, ...], full: bool) -> None:
    """Show what a sync would change, writing nothing anywhere (reads still call the APIs)."""
    with _engine(cli_context, config_path, systems) as engine:
        report = engine.plan(systems=list(systems) or None, full=full)
    if as_json:
        echo_json({
            "changes": [vars(c) for c in report.changes],
            "writes": [vars(w) for w in report.writes],
            "counts": report.counts,
        })
        return
    if not report.changes and not report.writes:
        click.echo("Nothing would change.")
        return
    if report.changes:
        print_table("Hub changes", ["referral", "from", "field", "old", "new", "why"], [
            [short_referral_id(c.referral_id), c.system, c.field, _short(c.old), _short(c.new),
             c.reason]
            for c in report.changes
        ])
    if report.writes:
        print_table("Writes", ["referral", "to", "action", "fields"], [
            [short_referral_id(w.referral_id), f"{w.system}.{w.stream}", w.action,
             ", ".join(f"{k}={_short(v)}" for k, v in w.payload.items())]
            for w in report.writes
        ])
    click.echo(f"{len(report.changes)} field changes, {len(report.writes)} writes planned; "
               "nothing was written.")


def _short(value: Any) -> str:
    """A value cut to 60 characters, for the list tables (a row a record)."""
    text = _whole(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _whole(value: Any) -> str:
    """A value in full, for the detail view (its table wraps a long one)."""
    return "—" if value is None else str(value)


@click.command()
@config_option
@json_option
@click.option("--all", "retry_all", is_flag=True, help="Replay every open quarantined record.")
@click.argument("ids", nargs=-1, type=int)
@pass_cli
@handle_refsync_errors
def retry(cli_context: CliContext, config_path: str | None, as_json: bool, retry_all: bool,
          ids: tuple[int, ...]) -> None:
    """Replay quarantined records (ids from `refsync errors`) with the current mappings.

    Exits as `refsync sync` does, and stops on SIGTERM or Ctrl-C as it does.
    """
    if not retry_all and not ids:
        fail("name quarantine ids (see `refsync errors`) or pass --all", 2)
    stop = StopOnSignals("refsync retry")
    with _engine(cli_context, config_path, stop=stop) as engine:
        if not retry_all:
            _refuse_closed_quarantine(engine.store, ids)
        with _sync_lease(engine) as lease, stop.handling():
            report = engine.retry(None if retry_all else list(ids), lease=lease)
    if as_json:
        echo_json({"run_id": report.run_id, "status": report.status, "counts": report.counts})
    else:
        _print_run(report)
    sys.exit(STATUS_EXIT.get(report.status, EXIT_FAILED))


@click.group(invoke_without_command=True)
@config_option
@json_option
@click.option("--status", default=None, help="Only referrals in this status.",
              type=click.Choice([status.value for status in ReferralStatus],
                                case_sensitive=False))
@click.option("--partner", default=None, help="Only this partner's referrals (partner key).")
@click.option("--limit", default=200, show_default=True, type=click.IntRange(min=1))
@click.pass_context
def referrals(ctx: click.Context, config_path: str | None, as_json: bool, status: str | None,
              partner: str | None, limit: int) -> None:
    """List referrals in the hub (or `referrals show ID`)."""
    log_command(ctx)
    if ctx.invoked_subcommand is not None:
        return
    cli_context: CliContext = ctx.ensure_object(CliContext)
    with cli_context.store(config_path) as store:
        rows = store.list_referrals(status=status, partner_id=partner, limit=limit)
    if as_json:
        echo_json(rows)
        return
    if not rows:
        click.echo("No referrals match.")
        return
    print_table("Referrals (newest first)",
                ["id", "partner", "email", "company", "status", "reason", "updated"], [
        [short_referral_id(r["id"]), r["partner_id"] or "—", r["email"] or "—", r["company"] or "—",
         r["status"], _short(r["status_reason"]), r["updated_at"].strftime("%Y-%m-%d %H:%M")]
        for r in rows
    ])


@referrals.command("show")
@config_option
@json_option
@click.argument("referral_id")
@pass_cli
def referrals_show(cli_context: CliContext, config_path: str | None, as_json: bool,
                   referral_id: str) -> None:
    """One referral: its fields, its record in every system, its event history."""
    with cli_context.store(config_path) as store:
        row = _find_referral(store, referral_id)
        links = store.links_of(row["id"])
        events = store.events_of(row["id"])
    if as_json:
        echo_json({"referral": row, "links": links, "events": events})
        return
    # the detail view: every value whole (a duplicate's reason names the referral it
    # duplicates), wrapped to the width rather than cut
    fields = [[k, _whole(v)] for k, v in row.items() if v not in (None, {}, "")
              and k not in ("provenance",)]
    print_table(f"Referral {row['id']}", ["field", "value"], fields)
    print_table("In each system", ["system", "object", "id", "last written", "remote changed"], [
        [link["system"], link["object"], link["external_id"],
         "yes" if link["last_written_hash"] else "—",
         link["remote_modstamp"].isoformat() if link["remote_modstamp"] else "—"]
        for link in links
    ])
    print_table("History", ["when", "event", "system", "details"], [
        [e["at"].strftime("%Y-%m-%d %H:%M:%S"), e["kind"], e["system"] or "—",
         ", ".join(f"{k}={v}" for k, v in e["payload"].items())]
        for e in events
    ])


def _find_referral(store: StateStore, referral_id: str) -> dict[str, Any]:
    """The referral a whole id, a unique prefix or a unique tail (as tables show it) names."""
    fragment = referral_id.strip().lower()
    row = store.get_referral(fragment)
    if row is not None:
        return row
    if not is_id_fragment(fragment):
        fail(f"{referral_id!r} is not a referral id: give the id, or at least 4 of its hex "
             "digits from its start or end, as `refsync referrals` shows them")
    matches = store.referral_ids_like(fragment)
    if len(matches) > 1:
        fail(f"several referrals match {referral_id!r}: give more of the id")
    row = store.get_referral(matches[0]) if matches else None
    if row is None:
        fail(f"no referral {referral_id!r}: list them with `refsync referrals`")
    return row
