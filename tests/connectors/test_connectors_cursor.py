"""Tests for the incremental cursor value object, alone (no connector involved)."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from refsync.connectors.cursor import Cursor, CursorPolicy, IncrementalWindow

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def at(seconds: int) -> datetime:
    return T0 + timedelta(seconds=seconds)


def test_lower_bound_is_inclusive_and_boundary_ids_are_skipped() -> None:
    policy = CursorPolicy()
    window = IncrementalWindow(None, policy, run_started_at=at(100))
    assert window.accept(at(5), "a")
    assert window.accept(at(5), "b")
    cursor = window.cursor

    rerun = IncrementalWindow(cursor, policy, run_started_at=at(100))
    assert rerun.lower == at(5)
    assert not rerun.accept(at(5), "a")
    assert not rerun.accept(at(5), "b")
    assert rerun.accept(at(5), "c"), "a tie at the boundary not yet seen must be returned"
    assert rerun.accept(at(6), "a"), "a newer version of a seen record must be returned"


def test_upper_bound_is_run_start_minus_settle_lag() -> None:
    policy = CursorPolicy(settle_lag=timedelta(seconds=10))
    window = IncrementalWindow(None, policy, run_started_at=at(100))
    assert window.upper == at(90)
    assert window.accept(at(90), "a")
    assert not window.accept(at(91), "b")
    assert window.cursor.modstamp == at(90)


def test_lookback_rereads_a_window_but_skips_versions_already_yielded() -> None:
    policy = CursorPolicy(lookback=timedelta(seconds=30))
    window = IncrementalWindow(None, policy, run_started_at=at(1000))
    for second, rid in [(10, "old"), (80, "a"), (100, "b")]:
        assert window.accept(at(second), rid)
    cursor = window.cursor
    assert set(cursor.seen) == {"a", "b"}, "versions older than the lookback are forgotten"

    rerun = IncrementalWindow(cursor, policy, run_started_at=at(1000))
    assert rerun.lower == at(70)
    assert not rerun.accept(at(80), "a")
    assert rerun.accept(at(85), "late"), "a late-indexed record inside the lookback is returned"
    assert rerun.cursor.modstamp == at(100), "a late record never moves the high-water mark back"


def test_cursor_does_not_advance_without_records() -> None:
    window = IncrementalWindow(Cursor(modstamp=at(5)), CursorPolicy(), run_started_at=at(100))
    assert window.cursor == Cursor(modstamp=at(5))


def test_round_trips_through_json() -> None:
    cursor = Cursor(modstamp=at(5), seen={"b": at(5), "a": at(5)}, position="120")
    data = json.loads(json.dumps(cursor.to_dict()))
    assert data == {
        "modstamp": "2026-01-01T00:00:05+00:00",
        "seen": {"a": "2026-01-01T00:00:05+00:00", "b": "2026-01-01T00:00:05+00:00"},
        "position": "120",
    }
    assert Cursor.from_dict(data) == cursor
    assert Cursor.from_dict(Cursor().to_dict()) == Cursor()


def test_from_dict_rejects_foreign_data() -> None:
    with pytest.raises(ValueError, match="unexpected keys"):
        Cursor.from_dict({"offset": 3})


def test_negative_policy_is_refused() -> None:
    with pytest.raises(ValueError):
        CursorPolicy(lookback=timedelta(seconds=-1))


# --- property: every change is returned exactly once -------------------------------------------


@dataclass
class _Version:
    record_id: str
    modstamp: int
    visible_at: int


@dataclass
class _Remote:
    """A remote system whose index may show a change only some seconds after it happened."""

    versions: list[_Version] = field(default_factory=list)

    def query(self, now: int, lower: datetime | None, upper: datetime) -> list[tuple[int, str]]:
        latest: dict[str, int] = {}
        for version in self.versions:
            if version.visible_at <= now:
                latest[version.record_id] = max(latest.get(version.record_id, -1), version.modstamp)
        rows = [
            (stamp, rid)
            for rid, stamp in latest.items()
            if (lower is None or at(stamp) >= lower) and at(stamp) <= upper
        ]
        return sorted(rows)

    def final_versions(self) -> set[tuple[str, int]]:
        latest: dict[str, int] = {}
        for version in self.versions:
            latest[version.record_id] = max(latest.get(version.record_id, -1), version.modstamp)
        return set(latest.items())


_change = st.tuples(
    st.just("change"), st.sampled_from("abcdef"), st.integers(0, 2), st.integers(0, 3)
)
_run = st.tuples(st.just("run"), st.integers(1, 4), st.one_of(st.none(), st.integers(0, 3)))


@settings(max_examples=300, deadline=None)
@given(
    events=st.lists(st.one_of(_change, _run), max_size=40),
    settle=st.integers(0, 2),
    lookback=st.integers(0, 3),
)
def test_every_change_is_returned_exactly_once(
    events: list[tuple[object, ...]], settle: int, lookback: int
) -> None:
    """Ties split across pages, interrupted runs and late indexing lose and repeat nothing.

    Holds whenever the index lag stays within ``settle_lag + lookback``.
    """
    policy = CursorPolicy(
        settle_lag=timedelta(seconds=settle), lookback=timedelta(seconds=lookback)
    )
    remote = _Remote()
    committed: Cursor | None = None
    returned: Counter[tuple[str, int]] = Counter()
    now = 0

    def run(page_size: int, crash_after: int | None) -> None:
        nonlocal committed, now
        window = IncrementalWindow(committed, policy, run_started_at=at(now))
        rows = remote.query(now, window.lower, window.upper)
        pages = [rows[i : i + page_size] for i in range(0, len(rows), page_size)]
        for number, page in enumerate(pages):
            if crash_after is not None and number >= crash_after:
                break
            accepted = [(rid, stamp) for stamp, rid in page if window.accept(at(stamp), rid)]
            returned.update(accepted)
            committed = window.cursor
        now += 1  # anything changed from here on happens after this run's start

    for event in events:
        if event[0] == "change":
            _, rid, step, delay = event
            assert isinstance(rid, str) and isinstance(step, int) and isinstance(delay, int)
            now += step
            remote.versions.append(_Version(rid, now, now + min(delay, settle + lookback)))
        else:
            _, page_size, crash_after = event
            assert isinstance(page_size, int)
            run(page_size, crash_after if isinstance(crash_after, int) else None)

    now += settle + lookback + 1
    run(page_size=2, crash_after=None)

    assert all(count == 1 for count in returned.values()), returned
    assert remote.final_versions() <= set(returned)
    every_version = {(v.record_id, v.modstamp) for v in remote.versions}
    assert set(returned) <= every_version


@settings(max_examples=200, deadline=None)
@given(
    versions=st.lists(st.tuples(st.integers(0, 20), st.sampled_from("abcdefg")), max_size=40),
    lookback=st.integers(0, 5),
    start=st.one_of(st.none(), st.integers(0, 10)),
)
def test_window_follows_the_cursor_value_rules(
    versions: list[tuple[int, str]], lookback: int, start: int | None
) -> None:
    """The window's fast working state ends where folding ``Cursor.advanced`` ends."""
    policy = CursorPolicy(lookback=timedelta(seconds=lookback))
    initial = None if start is None else Cursor(modstamp=at(start), seen={"a": at(start)})
    window = IncrementalWindow(initial, policy, run_started_at=at(100))
    folded = initial or Cursor()
    for second, rid in versions:
        expected = window.in_bounds(at(second)) and not folded.already_seen(at(second), rid)
        assert window.accept(at(second), rid) is expected
        if expected:
            folded = folded.advanced(at(second), rid, policy)
        assert window.cursor == folded
