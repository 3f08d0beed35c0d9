"""``refsync sandbox``: run every API emulator locally until interrupted."""

from __future__ import annotations

import json
import signal
import threading
import time
from pathlib import Path
from types import FrameType

import click

from refsync.sandbox.runner import DEFAULT_PORTS, RunningSandbox, start_sandbox
from refsync.sandbox.server import ServerStartError

__all__ = ["sandbox"]


@click.command("sandbox")
@click.option("--seed", "seed", default="demo", show_default=True, metavar="demo|none|FILE.json",
              help="Data to load: the generated demo data, nothing, or a JSON file "
                   '{"<system>": {"<object>": [records]}}.')
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Interface to listen on. The sandbox has no real security: keep it local.")
@click.option("--salesforce-port", type=int, default=DEFAULT_PORTS["salesforce"],
              show_default=True, help="Port of the Salesforce emulator (https); 0 picks one.")
@click.option("--hubspot-port", type=int, default=DEFAULT_PORTS["hubspot"], show_default=True,
              help="Port of the HubSpot emulator; 0 picks one.")
@click.option("--partnerstack-port", type=int, default=DEFAULT_PORTS["partnerstack"],
              show_default=True, help="Port of the PartnerStack emulator; 0 picks one.")
@click.option("--latency-ms", type=click.IntRange(min=0), default=0, show_default=True,
              help="Delay added to every API answer.")
@click.option("--workdir", type=click.Path(file_okay=False), default=".refsync-sandbox",
              show_default=True,
              help="Where to write the TLS CA bundle (sandbox-ca.pem) and certificate; "
                   "config.example.yaml expects the default.")
@click.option("--json", "as_json", is_flag=True,
              help="Print one JSON line (URLs, credentials, CA bundle) once every server is ready.")
def sandbox(
    seed: str,
    host: str,
    salesforce_port: int,
    hubspot_port: int,
    partnerstack_port: int,
    latency_ms: int,
    workdir: str,
    as_json: bool,
) -> None:
    """Run local emulators of Salesforce, HubSpot and PartnerStack until Ctrl-C or SIGTERM."""
    started = time.monotonic()
    ports = {"salesforce": salesforce_port, "hubspot": hubspot_port,
             "partnerstack": partnerstack_port}
    try:
        running = start_sandbox(seed=seed, host=host, ports=ports, latency_ms=latency_ms,
                                workdir=Path(workdir))
    except (ValueError, ServerStartError) as exc:
        raise click.ClickException(str(exc)) from exc
    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        if as_json:
            click.echo(json.dumps(running.as_json()), nl=True)
        else:
            _print_summary(running, seed, time.monotonic() - started)
        while not stop.wait(0.5):
            pass
    finally:
        running.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if not as_json:
        click.echo("sandbox stopped", err=True)


def _print_summary(running: RunningSandbox, seed: str, elapsed: float) -> None:
    click.echo(f"refsync sandbox ready in {elapsed:.1f}s (seed: {seed})")
    for system, url in running.urls.items():
        click.echo(f"  {system:<13} {url}")
        for key, value in running.credentials[system].items():
            click.echo(f"  {'':<13}   {key}: {value}")
    click.echo(f"  CA bundle     {running.ca_bundle}")
    click.echo("Control API on every URL under /_sandbox/ (health, seed, records, calls, faults).")
    click.echo("Press Ctrl-C to stop.")
