"""Injected stand-ins for time, so tests never wait and never read the wall clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

__all__ = ["ManualClock", "SleepRecorder"]


class ManualClock:
    """A clock that only moves when told to.

    Args:
        start: the initial time (aware UTC).
    """

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime(2026, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> datetime:
        """Move the clock forward and return the new time."""
        self.now += timedelta(seconds=seconds)
        return self.now


class SleepRecorder:
    """A ``sleep`` that records each requested wait and advances a clock instead of blocking.

    Args:
        clock: the clock to advance by every wait (optional).
    """

    def __init__(self, clock: ManualClock | None = None) -> None:
        self.calls: list[float] = []
        self.clock = clock

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)
        if self.clock is not None:
            self.clock.advance(seconds)
