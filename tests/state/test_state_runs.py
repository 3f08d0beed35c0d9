"""The run table on both backends: each schedule tick is taken once, unless its run was cut
short (``interrupted`` or ``abandoned``), when the next run of the tick takes it over."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from refsync.errors import TickAlreadyRunError
from refsync.state import StateStore

TICK = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)


def _holding(store: StateStore, job: str, tick: datetime) -> list[dict[str, Any]]:
    """The runs of ``job`` holding ``tick`` (one at most), looked for among the latest."""
    return [r for r in store.list_runs(50, job=job) if r["scheduled_for"] == tick]


def _run_of_tick(store: StateStore, status: str, instance: str = "daemon-a") -> str:
    """Record a run of the ``often`` job's tick that ended ``status``; return its id."""
    run_id = store.start_run(trigger="schedule", instance=instance, job="often",
                             scheduled_for=TICK)
    if status == "abandoned":
        assert store.abandon_runs(instance, reason=f"{instance} stopped renewing its lease") == 1
    elif status != "running":
        store.finish_run(run_id, status=status, counts={"read": 3}, error="why")
    return run_id


@pytest.mark.parametrize("status", ["interrupted", "abandoned"])
def test_a_tick_whose_run_was_cut_short_is_taken_by_the_next_run(
    state_url: str, status: str
) -> None:
    with StateStore(state_url) as store:
        earlier = _run_of_tick(store, status)
        again = store.start_run(trigger="schedule", instance="daemon-b", job="often",
                                scheduled_for=TICK)
        (latest,) = _holding(store, "often", TICK)
        assert latest["id"] == again and latest["status"] == "running"
        released = store.get_run(earlier)
        assert released is not None
        # the earlier run keeps how it ended and why, and says which tick it was and who took it
        assert released["status"] == status and released["error"]
        assert released["scheduled_for"] is None
        assert released["counts"]["tick"] == TICK.isoformat()
        assert released["counts"]["rerun_by"] == again
        assert {r["id"] for r in store.list_runs(job="often")} == {earlier, again}


@pytest.mark.parametrize("status", ["running", "succeeded", "partial", "failed"])
def test_a_tick_that_is_running_or_ran_to_its_end_is_refused(state_url: str, status: str) -> None:
    with StateStore(state_url) as store:
        earlier = _run_of_tick(store, status)
        with pytest.raises(TickAlreadyRunError):
            store.start_run(trigger="schedule", instance="daemon-b", job="often",
                            scheduled_for=TICK)
        (only,) = store.list_runs(job="often")
        assert only["id"] == earlier and only["status"] == status
        assert only["scheduled_for"] == TICK and "tick" not in only["counts"]


def test_a_tick_cut_short_twice_is_run_a_third_time(state_url: str) -> None:
    with StateStore(state_url) as store:
        first = _run_of_tick(store, "interrupted")
        second = store.start_run(trigger="schedule", instance="daemon-b", job="often",
                                 scheduled_for=TICK)
        store.finish_run(second, status="interrupted", counts={}, error="stopped")
        third = store.start_run(trigger="schedule", instance="daemon-c", job="often",
                                scheduled_for=TICK)
        assert [r["id"] for r in _holding(store, "often", TICK)] == [third]
        assert store.get_run(first)["counts"]["rerun_by"] == second  # type: ignore[index]
        assert store.get_run(second)["counts"]["rerun_by"] == third  # type: ignore[index]


def test_a_tick_in_a_schedules_timezone_is_the_same_instant(state_url: str) -> None:
    local = TICK.astimezone(ZoneInfo("Europe/Berlin"))
    with StateStore(state_url) as store:
        earlier = _run_of_tick(store, "interrupted")
        again = store.start_run(trigger="schedule", instance="daemon-b", job="often",
                                scheduled_for=local)
        assert store.get_run(earlier)["counts"]["rerun_by"] == again  # type: ignore[index]
        with pytest.raises(TickAlreadyRunError):
            store.start_run(trigger="schedule", instance="daemon-c", job="often",
                            scheduled_for=TICK)


def test_daemons_racing_for_a_cut_short_tick_start_it_once(state_url: str) -> None:
    with StateStore(state_url) as store:
        _run_of_tick(store, "abandoned")
        start = threading.Barrier(4)
        started: list[str] = []
        refused: list[str] = []

        def claim(name: str) -> None:
            start.wait()
            try:
                started.append(store.start_run(trigger="schedule", instance=name, job="often",
                                               scheduled_for=TICK))
            except TickAlreadyRunError:
                refused.append(name)

        threads = [threading.Thread(target=claim, args=(f"daemon-{n}",)) for n in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        assert len(started) == 1 and len(refused) == 3
        assert [r["id"] for r in _holding(store, "often", TICK)] == started


def test_a_run_finishing_after_its_tick_was_taken_keeps_saying_so(state_url: str) -> None:
    """A daemon paused past its lease is marked abandoned and its tick run again; when it wakes
    up, its run ends and is recorded, but the row still says which tick it was and who took it."""
    with StateStore(state_url) as store:
        paused = _run_of_tick(store, "abandoned")
        again = store.start_run(trigger="schedule", instance="daemon-b", job="often",
                                scheduled_for=TICK)
        store.finish_run(paused, status="interrupted", counts={"read": 20},
                         error="lease lost")
        row = store.get_run(paused)
        assert row is not None and row["status"] == "interrupted"
        assert row["counts"] == {"read": 20, "tick": TICK.isoformat(), "rerun_by": again}
        # why it had been marked abandoned is not lost
        assert row["error"] == "lease lost; it had been marked abandoned: daemon-a stopped " \
            "renewing its lease"
        assert row["scheduled_for"] is None


def test_runs_are_listed_by_the_tick_they_hold(state_url: str) -> None:
    later_tick = TICK + timedelta(minutes=1)
    with StateStore(state_url) as store:
        _run_of_tick(store, "interrupted")
        again = store.start_run(trigger="schedule", instance="daemon-b", job="often",
                                scheduled_for=TICK)
        later = store.start_run(trigger="schedule", instance="daemon-b", job="often",
                                scheduled_for=later_tick)
        assert [r["id"] for r in store.list_runs(job="often", scheduled_for=TICK)] == [again]
        assert [r["id"] for r in store.list_runs(job="often", scheduled_for=later_tick)] == \
            [later]
        assert store.list_runs(job="nightly", scheduled_for=TICK) == []
        assert len(store.list_runs(job="often")) == 3


def test_a_run_records_its_progress_until_it_is_finished(state_url: str) -> None:
    """Counts commit with each page while the run goes on, also once it was marked abandoned
    (its daemon exiting after the shutdown timeout still commits the page it is on), and
    never after it finished."""
    with StateStore(state_url) as store:
        run_id = store.start_run(trigger="schedule", instance="daemon-a")
        with store.transaction() as tx:
            tx.record_progress(run_id, {"read": 250})
        assert store.get_run(run_id)["counts"] == {"read": 250}  # type: ignore[index]
        assert store.abandon_runs("daemon-a", reason="exited after its shutdown timeout") == 1
        with store.transaction() as tx:
            tx.record_progress(run_id, {"read": 500})
        run = store.get_run(run_id)
        assert run is not None and run["status"] == "abandoned"
        assert run["counts"] == {"read": 500}
        store.finish_run(run_id, status="interrupted", counts={"read": 750})
        with store.transaction() as tx:
            tx.record_progress(run_id, {"read": 1})
        assert store.get_run(run_id)["counts"] == {"read": 750}  # type: ignore[index]
