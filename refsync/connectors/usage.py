"""API usage: counting calls per system and pacing them with a token bucket per credential.

Remote systems publish their own view of the budget in response headers; the bucket is fed
by those headers so refsync slows down *before* the remote system starts refusing calls, and
stops cleanly (:class:`~refsync.errors.QuotaExhaustedError`) when the daily allowance is spent
instead of burning the allowance other integrations in the same org depend on.

* Salesforce: ``Sforce-Limit-Info: api-usage=<used>/<limit>`` (a rolling 24-hour allowance).
* HubSpot: ``X-HubSpot-RateLimit-Max``, ``-Remaining``, ``-Interval-Milliseconds`` (the burst
  window) and ``-Daily``, ``-Daily-Remaining``.
"""

from __future__ import annotations

import re
import threading
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime

import structlog

from refsync.errors import QuotaExhaustedError

__all__ = ["ApiCallCounter", "DailyBudget", "RateLimiters", "TokenBucket"]

_SFORCE_USAGE = re.compile(r"api-usage=(\d+)/(\d+)")
PACING_LOGGED_FROM = 1.0
"""A pacing wait at least this long (seconds) is logged: the burst window is spent."""
_log = structlog.get_logger("refsync.connectors")


class ApiCallCounter:
    """Thread-safe count of API calls by ``(system, outcome)``.

    Outcomes are short labels such as ``ok``, ``client_error``, ``server_error``, ``timeout``;
    the metrics exporter turns :meth:`snapshot` into a Prometheus counter.
    """

    def __init__(self) -> None:
        self._counts: Counter[tuple[str, str]] = Counter()
        self._lock = threading.Lock()

    def record(self, system: str, outcome: str) -> None:
        """Count one call to ``system`` that ended with ``outcome``."""
        with self._lock:
            self._counts[(system, outcome)] += 1

    def count(self, system: str, outcome: str | None = None) -> int:
        """Return the calls made to ``system`` (only those with ``outcome`` when given)."""
        with self._lock:
            return sum(
                n
                for (sys_name, out), n in self._counts.items()
                if sys_name == system and (outcome is None or out == outcome)
            )

    def snapshot(self) -> dict[tuple[str, str], int]:
        """Return a copy of every count, keyed by ``(system, outcome)``."""
        with self._lock:
            return dict(self._counts)


@dataclass
class DailyBudget:
    """What the remote system last said about its daily (or rolling 24 h) allowance."""

    limit: int
    remaining: int


class TokenBucket:
    """A token bucket pacing calls made with one credential, fed by the API's usage headers.

    Args:
        capacity: calls allowed per ``interval_seconds`` burst window.
        interval_seconds: length of the burst window.
        clock: returns the current time (injected so tests need no wall clock).
        sleep: waits a number of seconds (injected; tests record the calls).
        daily_reserve: calls to leave unused of the daily allowance for other integrations
            sharing it; when only this many remain, :meth:`acquire` raises
            :class:`QuotaExhaustedError`.
        system: the system name used in error messages.
    """

    def __init__(
        self,
        *,
        capacity: float,
        interval_seconds: float,
        clock: Callable[[], datetime],
        sleep: Callable[[float], None],
        daily_reserve: int = 0,
        system: str = "",
    ) -> None:
        if capacity <= 0 or interval_seconds <= 0:
            raise ValueError("capacity and interval_seconds must be positive")
        self.capacity = float(capacity)
        self.interval_seconds = float(interval_seconds)
        self.daily: DailyBudget | None = None
        self.daily_reserve = daily_reserve
        self.system = system
        self._clock = clock
        self._sleep = sleep
        self._tokens = float(capacity)
        self._updated = clock()
        self._lock = threading.Lock()

    @property
    def refill_per_second(self) -> float:
        """Tokens added per second."""
        return self.capacity / self.interval_seconds

    @property
    def tokens(self) -> float:
        """Tokens available now (refilled up to the current time)."""
        with self._lock:
            self._refill()
            return self._tokens

    def _refill(self) -> None:
        now = self._clock()
        elapsed = max(0.0, (now - self._updated).total_seconds())
        self._tokens = min(self.capacity, self._tokens + elapsed * self.refill_per_second)
        self._updated = now

    def acquire(self) -> None:
        """Take one token, sleeping until one is available.

        Raises:
            QuotaExhaustedError: the daily allowance (minus the reserve) is spent.
        """
        if self.daily is not None and self.daily.remaining <= self.daily_reserve:
            raise QuotaExhaustedError(
                f"{self.system or 'the system'} daily API allowance is spent "
                f"({self.daily.remaining} of {self.daily.limit} left, reserve "
                f"{self.daily_reserve}): the run stops as partial and resumes when the "
                "allowance recovers",
                system=self.system,
            )
        with self._lock:
            self._refill()
            if self._tokens >= 1:
                self._tokens -= 1
                return
            wait = (1 - self._tokens) / self.refill_per_second
        if wait >= PACING_LOGGED_FROM:
            _log.info("pacing calls: the rate-limit window is spent", system=self.system,
                      wait_s=round(wait, 3), capacity=self.capacity,
                      interval_s=self.interval_seconds)
        self._sleep(wait)
        with self._lock:
            self._refill()
            self._tokens = max(0.0, self._tokens - 1)

    def update_from_headers(self, headers: Mapping[str, str]) -> None:
        """Adjust the bucket to what the remote system reported about its limits.

        Unknown or malformed headers are ignored: the bucket keeps its current settings.
        """
        lowered = {key.lower(): value for key, value in headers.items()}
        match = _SFORCE_USAGE.search(lowered.get("sforce-limit-info", ""))
        if match:
            used, limit = int(match.group(1)), int(match.group(2))
            self.daily = DailyBudget(limit=limit, remaining=max(0, limit - used))
        burst_max = _int(lowered.get("x-hubspot-ratelimit-max"))
        burst_left = _int(lowered.get("x-hubspot-ratelimit-remaining"))
        interval_ms = _int(lowered.get("x-hubspot-ratelimit-interval-milliseconds"))
        with self._lock:
            self._refill()
            if burst_max and interval_ms:
                self.capacity = float(burst_max)
                self.interval_seconds = interval_ms / 1000
            if burst_left is not None:
                self._tokens = min(self._tokens, float(burst_left))
        daily_max = _int(lowered.get("x-hubspot-ratelimit-daily"))
        daily_left = _int(lowered.get("x-hubspot-ratelimit-daily-remaining"))
        if daily_max is not None and daily_left is not None:
            self.daily = DailyBudget(limit=daily_max, remaining=daily_left)


def _int(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return int(value.strip())
    except ValueError:
        return None


class RateLimiters:
    """One :class:`TokenBucket` per credential, shared by every connector using it.

    Two systems configured with the same Salesforce org credential draw from one bucket,
    because the org's allowance is shared.

    Args:
        clock: injected clock handed to every bucket.
        sleep: injected sleep handed to every bucket.
    """

    def __init__(self, clock: Callable[[], datetime], sleep: Callable[[float], None]) -> None:
        self._clock = clock
        self._sleep = sleep
        self._buckets: dict[str, TokenBucket] = {}
        self._lock = threading.Lock()

    def buckets(self) -> list[TokenBucket]:
        """Every bucket created so far (for the remaining-budget metrics)."""
        with self._lock:
            return list(self._buckets.values())

    def for_credential(
        self,
        credential_key: str,
        *,
        capacity: float,
        interval_seconds: float,
        daily_reserve: int = 0,
        system: str = "",
    ) -> TokenBucket:
        """Return the bucket of ``credential_key``, creating it with these settings if new.

        ``credential_key`` should identify the credential without containing the secret
        (a client id or an account id).
        """
        with self._lock:
            bucket = self._buckets.get(credential_key)
            if bucket is None:
                bucket = TokenBucket(
                    capacity=capacity,
                    interval_seconds=interval_seconds,
                    clock=self._clock,
                    sleep=self._sleep,
                    daily_reserve=daily_reserve,
                    system=system,
                )
                self._buckets[credential_key] = bucket
            return bucket
