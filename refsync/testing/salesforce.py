"""A Salesforce emulator running in-process over TLS, for connector tests.

The emulator follows a :class:`ClockSwitch`, so each test can hand it (and the connector) its
own :class:`~refsync.testing.fakes.ManualClock` while one server serves the whole module.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from refsync.connectors.base import ConnectorContext
from refsync.connectors.salesforce import SalesforceConnector, SalesforceSettings
from refsync.sandbox.core import build_app
from refsync.sandbox.salesforce import SalesforceEmulator
from refsync.sandbox.server import SandboxServer
from refsync.sandbox.tls import make_tls_material
from refsync.testing.fakes import ManualClock, SleepRecorder

__all__ = ["ClockSwitch", "SalesforcePeer", "running_salesforce"]


class ClockSwitch:
    """A clock that delegates to whichever manual clock the current test uses."""

    def __init__(self) -> None:
        self.clock = ManualClock()
        self._days = itertools.count(1)

    def fresh(self) -> ManualClock:
        """Start a new manual clock, a day after the previous one.

        The emulator hands out strictly increasing modstamps, so each test's time must lie
        after everything earlier tests stamped.
        """
        start = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(days=next(self._days))
        self.clock = ManualClock(start)
        return self.clock

    def __call__(self) -> datetime:
        return self.clock()


@dataclass
class SalesforcePeer:
    """A running emulator with its URL, CA bundle and clock switch."""

    emulator: SalesforceEmulator
    url: str
    ca_bundle: Path
    switch: ClockSwitch

    def fresh(self) -> ManualClock:
        """Empty the emulator and return a new manual clock it follows."""
        self.emulator.reset()
        self.emulator.faults.reset()
        return self.switch.fresh()

    def connector(
        self,
        clock: ManualClock,
        *,
        sleep: SleepRecorder | None = None,
        context: ConnectorContext | None = None,
        **overrides: Any,
    ) -> SalesforceConnector:
        """Return a connector signed in with the sandbox's client credentials."""
        creds = self.emulator.credentials()
        values: dict[str, Any] = {
            "base_url": self.url,
            "ca_bundle": self.ca_bundle,
            "consumer_key": creds["consumer_key"],
            "consumer_secret": creds["consumer_secret"],
            "settle_lag_seconds": 0,
            **overrides,
        }
        if context is None:
            context = ConnectorContext(
                system="crm", clock=clock, sleep=sleep or SleepRecorder(clock)
            )
        return SalesforceConnector(SalesforceSettings.model_validate(values), context)


@contextlib.contextmanager
def running_salesforce(workdir: Path) -> Iterator[SalesforcePeer]:
    """Serve a fresh Salesforce emulator on a free loopback port until the block ends."""
    tls = make_tls_material(workdir)
    switch = ClockSwitch()
    emulator = SalesforceEmulator(clock=switch)
    server = SandboxServer(
        build_app(emulator), host="127.0.0.1", port=0, certfile=tls.certfile, keyfile=tls.keyfile
    )
    server.start()
    try:
        yield SalesforcePeer(emulator, server.url, tls.ca_bundle, switch)
    finally:
        server.stop()
