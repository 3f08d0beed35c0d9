"""HubSpot's rate limits: a rolling ten-second bucket, a daily allowance and the search limit.

Every API answer carries the usage headers (``X-HubSpot-RateLimit-Max``, ``-Remaining``,
``-Interval-Milliseconds``, and for private-app tokens ``-Daily`` and ``-Daily-Remaining``).
A call past a limit is answered with 429 and a body naming the policy that tripped:
``TEN_SECONDLY_ROLLING``, ``DAILY`` or ``SECONDLY`` (the search endpoints' own limit).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from refsync.sandbox.hubspot.errors import HubSpotApiError, rate_limit_body

__all__ = ["HubSpotLimits", "RateLimiter"]

_TEN_SECONDS = 10.0
_DAY = 86_400.0


@dataclass
class HubSpotLimits:
    """Limit settings of the emulated portal.

    Attributes:
        enforce: answer 429 once a limit is spent (headers are sent either way).
        ten_secondly_max: requests per rolling 10 s (100 Free/Starter, 190 Pro/Enterprise).
        daily_max: requests per day for the portal (shared by every app).
        search_per_second: requests per rolling second to the search endpoints.
    """

    enforce: bool = True
    ten_secondly_max: int = 190
    daily_max: int = 500_000
    search_per_second: int = 5


class RateLimiter:
    """Counts calls against :class:`HubSpotLimits` and produces the usage headers.

    Args:
        limits: the settings (may be changed at run time through :meth:`configure`).
        monotonic: seconds from a monotonic clock (inject a fake in tests).
    """

    def __init__(
        self, limits: HubSpotLimits | None = None, monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        self.limits = limits or HubSpotLimits()
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._window: deque[float] = deque()
        self._search_window: deque[float] = deque()
        self._day_started = monotonic()
        self.daily_used = 0

    def configure(self, **changes: int | bool) -> None:
        """Change settings (names of :class:`HubSpotLimits` fields)."""
        with self._lock:
            for name, value in changes.items():
                if not hasattr(self.limits, name):
                    raise ValueError(f"unknown HubSpot limit {name!r}")
                setattr(self.limits, name, type(getattr(self.limits, name))(value))

    def reset(self) -> None:
        """Forget every counted call."""
        with self._lock:
            self._window.clear()
            self._search_window.clear()
            self._day_started = self._monotonic()
            self.daily_used = 0

    def spend_daily(self, used: int) -> None:
        """Mark ``used`` calls of today's allowance as spent (to reach the DAILY limit fast)."""
        with self._lock:
            self.daily_used = max(0, used)

    def admit(self, *, search: bool, daily_headers: bool) -> dict[str, str]:
        """Count one call; return its usage headers or raise the 429 answer.

        Args:
            search: the call is to a search endpoint (subject to the per-second limit).
            daily_headers: include the daily headers (private-app tokens, not OAuth).
        """
        with self._lock:
            now = self._monotonic()
            if now - self._day_started >= _DAY:
                self._day_started = now
                self.daily_used = 0
            while self._window and now - self._window[0] >= _TEN_SECONDS:
                self._window.popleft()
            while self._search_window and now - self._search_window[0] >= 1.0:
                self._search_window.popleft()
            limits = self.limits
            if limits.enforce:
                if self.daily_used >= limits.daily_max:
                    raise self._refuse("DAILY", "You have reached your daily limit.", daily_headers)
                if len(self._window) >= limits.ten_secondly_max:
                    raise self._refuse("TEN_SECONDLY_ROLLING",
                                       "You have reached your ten_secondly_rolling limit.",
                                       daily_headers)
                if search and len(self._search_window) >= limits.search_per_second:
                    raise self._refuse("SECONDLY", "You have reached your secondly limit.",
                                       daily_headers, group="publicapi-crm-search")
            self._window.append(now)
            if search:
                self._search_window.append(now)
            self.daily_used += 1
            return self._headers(daily_headers)

    def headers(self, *, daily_headers: bool) -> dict[str, str]:
        """Usage headers without counting a call (for answers refused before counting)."""
        with self._lock:
            return self._headers(daily_headers)

    def _headers(self, daily_headers: bool) -> dict[str, str]:
        limits = self.limits
        headers = {
            "X-HubSpot-RateLimit-Max": str(limits.ten_secondly_max),
            "X-HubSpot-RateLimit-Remaining": str(
                max(0, limits.ten_secondly_max - len(self._window))),
            "X-HubSpot-RateLimit-Interval-Milliseconds": "10000",
        }
        if daily_headers:
            headers["X-HubSpot-RateLimit-Daily"] = str(limits.daily_max)
            headers["X-HubSpot-RateLimit-Daily-Remaining"] = str(
                max(0, limits.daily_max - self.daily_used))
        return headers

    def _refuse(
        self, policy: str, message: str, daily_headers: bool, group: str = "publicapi-private-app"
    ) -> HubSpotApiError:
        # No Retry-After: HubSpot often sends none, and urllib3 (under hubspot-api-client)
        # would silently sleep and retry GETs when it is present.
        headers = self._headers(daily_headers)
        return HubSpotApiError(429, rate_limit_body(policy, message, group), headers)
