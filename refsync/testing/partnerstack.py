"""A PartnerStack emulator running in-process, for connector tests."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from refsync.connectors.base import ConnectorContext
from refsync.connectors.partnerstack import PartnerStackConnector, PartnerStackSettings
from refsync.sandbox.core import build_app
from refsync.sandbox.partnerstack import PartnerStackEmulator
from refsync.sandbox.server import SandboxServer
from refsync.testing.fakes import ManualClock, SleepRecorder
from refsync.testing.salesforce import ClockSwitch

__all__ = ["PartnerStackPeer", "running_partnerstack"]


@dataclass
class PartnerStackPeer:
    """A running PartnerStack emulator with its URL and clock switch."""

    emulator: PartnerStackEmulator
    url: str
    switch: ClockSwitch

    def fresh(self) -> ManualClock:
        """Empty the emulator and return a new manual clock it follows."""
        self.emulator.reset()
        return self.switch.fresh()

    def connector(
        self,
        clock: ManualClock,
        *,
        sleep: SleepRecorder | None = None,
        **overrides: Any,
    ) -> PartnerStackConnector:
        """Return a connector using the sandbox key pair."""
        creds = self.emulator.credentials()
        values: dict[str, Any] = {
            "base_url": f"{self.url}/api/v2",
            "public_key": creds["public_key"],
            "secret_key": creds["secret_key"],
            "settle_lag_seconds": 0,
            **overrides,
        }
        context = ConnectorContext(system="prm", clock=clock, sleep=sleep or SleepRecorder(clock))
        return PartnerStackConnector(PartnerStackSettings.model_validate(values), context)


@contextlib.contextmanager
def running_partnerstack() -> Iterator[PartnerStackPeer]:
    """Serve a fresh PartnerStack emulator on a free loopback port until the block ends."""
    switch = ClockSwitch()
    emulator = PartnerStackEmulator(now=lambda: switch().timestamp())
    server = SandboxServer(build_app(emulator), host="127.0.0.1", port=0)
    server.start()
    try:
        yield PartnerStackPeer(emulator, server.url, switch)
    finally:
        server.stop()
