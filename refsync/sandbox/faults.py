"""Fault rules for the sandbox emulators: what to break, when, and how often it happened.

A :class:`FaultRule` matches API calls by method, a regular expression searched in the URL path
and optionally a substring of the request body. A matching call can be answered with a chosen
status, headers and body, delayed, or held open without an answer (``hang``). A rule with
``match_record`` does not replace the whole response: it makes a batch endpoint fail only the
records whose JSON contains that substring (the emulator asks :class:`RecordFaults` per record).

The :class:`FaultInjector` keeps the active rules, decides which rule fires for a call (first
active rule in the order they were added wins), and counts what it injected.
"""

from __future__ import annotations

import random
import re
import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = ["FaultDecision", "FaultInjector", "FaultRule", "RecordFaults", "generic_presets"]


class FaultRule(BaseModel):
    """One fault to inject into matching API calls.

    Attributes:
        method: HTTP method to match (case-insensitive); ``None`` matches every method.
        path: regular expression searched (``re.search``) in the URL path; ``""`` matches all.
        status: status of the injected response; ``None`` leaves the answer to the emulator
            (useful with ``delay_ms`` alone for slow responses).
        headers: extra headers of the injected response.
        body: JSON value or text of the injected response; ``None`` lets the emulator supply
            its vendor's error body for ``status``. For ``match_record`` rules: the error
            reported for each failed record.
        times: how many times the rule fires at most; ``None`` means without end.
        probability: chance that a matching call (past ``after``) fires the rule.
        after: the first ``after`` matching calls pass untouched.
        delay_ms: wait this long before answering (with or without ``status``).
        match_body: only calls whose raw request body contains this substring match.
        match_record: fail only the records of a batch call whose JSON contains this substring.
        hang: hold the connection without answering until the client gives up or the server stops.
        preset: name of the preset the rule came from, if any (used as its kind in the counts).
    """

    model_config = ConfigDict(extra="forbid")

    method: str | None = None
    path: str = ""
    status: int | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    body: Any = None
    times: int | None = None
    probability: float = Field(default=1.0, ge=0.0, le=1.0)
    after: int = Field(default=0, ge=0)
    delay_ms: int = Field(default=0, ge=0)
    match_body: str | None = None
    match_record: str | None = None
    hang: bool = False
    preset: str | None = None

    @field_validator("path")
    @classmethod
    def _path_is_a_regex(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"path is not a valid regular expression: {exc}") from exc
        return value

    @field_validator("status")
    @classmethod
    def _status_is_http(cls, value: int | None) -> int | None:
        if value is not None and not 100 <= value <= 599:
            raise ValueError("status must be an HTTP status between 100 and 599")
        return value

    @property
    def kind(self) -> str:
        """Label used when counting injected faults: the preset name, else what the rule does."""
        if self.preset:
            return self.preset
        if self.match_record is not None:
            return "record_error"
        if self.hang:
            return "hang"
        if self.status is not None:
            return f"status_{self.status}"
        return "delay"


class _ActiveRule:
    """A rule plus its counters and compiled pattern."""

    def __init__(self, rule_id: int, rule: FaultRule) -> None:
        self.id = rule_id
        self.rule = rule
        self.pattern = re.compile(rule.path)
        self.matched = 0
        self.fired = 0

    def matches(self, method: str, path: str, body: bytes) -> bool:
        rule = self.rule
        if rule.method is not None and rule.method.upper() != method.upper():
            return False
        if not self.pattern.search(path):
            return False
        return rule.match_body is None or rule.match_body.encode() in body

    def exhausted(self) -> bool:
        return self.rule.times is not None and self.fired >= self.rule.times

    def as_dict(self) -> dict[str, Any]:
        data = self.rule.model_dump()
        data.update(id=self.id, kind=self.rule.kind, matched=self.matched, fired=self.fired,
                    exhausted=self.exhausted())
        return data


@dataclass
class FaultDecision:
    """What the injector decided for one call: a whole-response rule and/or record rules."""

    response_rule: FaultRule | None = None
    delay_ms: int = 0
    record_rules: list[_ActiveRule] = field(default_factory=list)


class RecordFaults:
    """Record-level fault rules that matched one batch call; the emulator asks it per record."""

    def __init__(self, injector: FaultInjector, rules: list[_ActiveRule]) -> None:
        self._injector = injector
        self._rules = rules

    def __bool__(self) -> bool:
        return bool(self._rules)

    def error_for(self, record_json: str) -> Any | None:
        """Return the configured error for a record whose JSON text is ``record_json``, or None.

        Each failed record counts as one firing of the rule (``times`` limits failed records).
        """
        return self._injector._fire_record_rule(self._rules, record_json)


class FaultInjector:
    """Active fault rules of one emulator, with counts of what each rule injected.

    Args:
        seed: seed of the random generator used for ``probability`` (runs are reproducible).
    """

    def __init__(self, seed: int = 0) -> None:
        self._lock = threading.Lock()
        self._seed = seed
        self._rng = random.Random(seed)
        self._rules: list[_ActiveRule] = []
        self._next_id = 1
        self._injected: Counter[str] = Counter()
        self.release_hangs = threading.Event()

    def add(self, rules: list[FaultRule]) -> list[int]:
        """Activate rules (after those already active) and return their ids."""
        with self._lock:
            ids = []
            for rule in rules:
                self._rules.append(_ActiveRule(self._next_id, rule))
                ids.append(self._next_id)
                self._next_id += 1
            self.release_hangs.clear()
            return ids

    def clear(self) -> None:
        """Drop every rule and let hung connections go; the injected counts are kept."""
        with self._lock:
            self._rules.clear()
            self.release_hangs.set()

    def reset(self) -> None:
        """Drop every rule, forget the counts and restart the random generator."""
        self.clear()
        with self._lock:
            self._injected.clear()
            self._rng = random.Random(self._seed)
            self._next_id = 1

    def snapshot(self) -> dict[str, Any]:
        """Return the rules with their counts, and the injected totals per kind since reset."""
        with self._lock:
            return {
                "rules": [active.as_dict() for active in self._rules],
                "injected": dict(self._injected),
                "injected_total": sum(self._injected.values()),
            }

    def decide(self, method: str, path: str, body: bytes) -> FaultDecision:
        """Pick what to inject into one call, counting matches and firings."""
        decision = FaultDecision()
        with self._lock:
            for active in self._rules:
                if not active.matches(method, path, body):
                    continue
                rule = active.rule
                if rule.match_record is not None:
                    if not active.exhausted():
                        decision.record_rules.append(active)
                    continue
                if decision.response_rule is not None or decision.delay_ms:
                    continue
                active.matched += 1
                if active.matched <= rule.after or active.exhausted():
                    continue
                if rule.probability < 1.0 and self._rng.random() >= rule.probability:
                    continue
                active.fired += 1
                self._injected[rule.kind] += 1
                if rule.status is None and not rule.hang:
                    decision.delay_ms = rule.delay_ms
                else:
                    decision.response_rule = rule
        return decision

    def record_faults(self, decision: FaultDecision) -> RecordFaults:
        """Wrap the record-level rules of a decision for the emulator's batch handler."""
        return RecordFaults(self, list(decision.record_rules))

    def _fire_record_rule(self, rules: list[_ActiveRule], record_json: str) -> Any | None:
        with self._lock:
            for active in rules:
                rule = active.rule
                if rule.match_record is None or rule.match_record not in record_json:
                    continue
                active.matched += 1
                if active.matched <= rule.after or active.exhausted():
                    continue
                if rule.probability < 1.0 and self._rng.random() >= rule.probability:
                    continue
                active.fired += 1
                self._injected[rule.kind] += 1
                return rule.body
        return None


def generic_presets() -> dict[str, list[FaultRule]]:
    """Presets every emulator offers; an emulator may replace one with its vendor's flavour.

    - ``rate_limit_burst``: the next 3 calls get 429 with ``Retry-After: 1``;
    - ``server_error``: the next 2 calls get 503;
    - ``slow``: every call is delayed by 1.5 s (until the faults are cleared);
    - ``hang``: the next call is held open without an answer (the client's timeout fires).
    """
    return {
        "rate_limit_burst": [
            FaultRule(status=429, headers={"Retry-After": "1"}, times=3,
                      preset="rate_limit_burst"),
        ],
        "server_error": [FaultRule(status=503, times=2, preset="server_error")],
        "slow": [FaultRule(delay_ms=1500, preset="slow")],
        "hang": [FaultRule(hang=True, times=1, preset="hang")],
    }
