"""A millisecond clock for write timestamps: injectable and strictly increasing between writes."""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime

__all__ = ["WriteClock", "iso_ms", "parse_timestamp_ms"]


class WriteClock:
    """Hands out write timestamps in epoch milliseconds.

    Each :meth:`tick` returns a value strictly greater than every value returned before, even
    when the wall clock stands still or steps back, so "modified since" cursors built on these
    timestamps never miss a write. All records written by one call share one tick.

    Args:
        now: returns the current time in epoch seconds (inject a fake in tests).
    """

    def __init__(self, now: Callable[[], float] = time.time) -> None:
        self._now = now
        self._last = 0
        self._lock = threading.Lock()

    def now_ms(self) -> int:
        """Current time in epoch milliseconds (not reserved: two calls may return the same)."""
        return int(self._now() * 1000)

    def tick(self) -> int:
        """Reserve and return a write timestamp greater than any returned before."""
        with self._lock:
            value = max(self.now_ms(), self._last + 1)
            self._last = value
            return value


@functools.lru_cache(maxsize=4096)
def iso_ms(epoch_ms: int) -> str:
    """Format epoch milliseconds as HubSpot does: ISO 8601 with milliseconds and ``Z``."""
    moment = datetime.fromtimestamp(epoch_ms / 1000, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{epoch_ms % 1000:03d}Z"


@functools.lru_cache(maxsize=4096)
def parse_timestamp_ms(value: str) -> int | None:
    """Parse epoch milliseconds or an ISO 8601 date/datetime into epoch milliseconds.

    Returns ``None`` when the text is neither.
    """
    text = value.strip()
    if not text:
        return None
    if text.lstrip("-").isdigit():
        return int(text)
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return round(moment.timestamp() * 1000)
