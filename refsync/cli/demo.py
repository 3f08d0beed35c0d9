"""``refsync demo``: sandbox + sync end to end, no credentials needed."""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from types import FrameType

import click

from refsync.cli.common import EXIT_CONFIG, echo_json, fail, json_option, signals_handled_by
from refsync.logging import configure_logging
from refsync.sync.demo import DemoWorkdirInUse, refuse_used_workdir, run_demo

__all__ = ["demo"]


@click.command()
@json_option
@click.option("--workdir", type=click.Path(file_okay=False), default=None,
              help="Keep the demo's config, state database and TLS files in this directory, "
                   "new or holding none of them (one with a refsync.yaml or refsync.db is "
                   "refused; default: a temporary directory, removed when the demo ends).")
def demo(as_json: bool, workdir: str | None) -> None:
    """Run refsync on local emulators of PartnerStack, Salesforce and HubSpot, and summarise."""
    if workdir is not None:
        try:
            refuse_used_workdir(Path(workdir))
        except DemoWorkdirInUse as exc:
            fail(str(exc), EXIT_CONFIG)
        try:
            Path(workdir).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            fail(f"cannot use {workdir} as the demo's work directory: {exc.strerror or exc} — "
                 "name a directory you can write to, or leave --workdir out", EXIT_CONFIG)
    # the summary reports what the runs' warnings would (quarantined records, partial runs)
    configure_logging(level="error", fmt="console")
    try:
        # SIGTERM ends the demo as Ctrl-C does: its sandbox stops and its temporary directory
        # is removed, instead of the process dying with both left behind
        with signals_handled_by(_terminate, (signal.SIGTERM,)):
            summary = run_demo(Path(workdir) if workdir else None,
                               say=(lambda _line: None) if as_json else click.echo)
    except _Terminated:
        sys.exit(128 + signal.SIGTERM)
    if as_json:
        echo_json({
            "runs": [{"run_id": r.run_id, "status": r.status, "counts": r.counts}
                     for r in summary.runs],
            "referrals": summary.referrals, "by_status": summary.by_status,
            "records_by_system": summary.records_by_system,
            "status_updates_to_partners": summary.status_updates_to_partners,
            "duplicates": summary.duplicates, "conflicts": summary.conflicts,
            "customers_rejected": summary.customers_rejected,
            "open_deals_rejected": summary.open_deals_rejected,
            "quarantined": summary.quarantined, "api_calls": summary.api_calls,
            "config": summary.config_path,
        })
        return
    click.echo("")
    click.echo(f"Referrals in the hub: {summary.referrals} ("
               + ", ".join(f"{n} {s}" for s, n in sorted(summary.by_status.items())) + ")")
    for system, count in sorted(summary.records_by_system.items()):
        click.echo(f"  {system}: {count} records linked to a referral")
    click.echo(f"Status updates sent back to partners: {summary.status_updates_to_partners}")
    click.echo(f"Duplicates caught (another partner registered the prospect first): "
               f"{summary.duplicates}")
    click.echo(f"Referrals of existing customers rejected: {summary.customers_rejected}")
    click.echo("Referrals of prospects with an open deal rejected (channel conflict): "
               f"{summary.open_deals_rejected}")
    click.echo(f"Status conflicts recorded: {summary.conflicts}")
    click.echo(f"Quarantined for review (`refsync errors`): {summary.quarantined}")
    click.echo("API calls used: " + ", ".join(
        f"{system} {calls}" for system, calls in sorted(summary.api_calls.items())))
    if summary.config_path is not None:
        kept = Path(summary.config_path)
        click.echo(f"Config and state database kept in {kept.parent}: look around with "
                   f"`refsync -c {kept} referrals`, `runs` and `errors`")


class _Terminated(KeyboardInterrupt):
    """SIGTERM during the demo: raised like Ctrl-C, so the demo cleans up as it does."""


def _terminate(_signum: int, _frame: FrameType | None) -> None:
    raise _Terminated("SIGTERM")
