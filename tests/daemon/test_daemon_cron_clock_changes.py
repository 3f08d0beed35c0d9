"""Cron schedules meet clock changes as cron does: a fixed time fires once when the clocks repeat
it and as they resume when they skip it; schedules running every minute or hour follow the clock.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from refsync.config import ScheduleConfig, cron_trigger
from refsync.daemon.schedule import CrontabTrigger, ScheduledJob, scheduled_job

LONDON, NEW_YORK = "Europe/London", "America/New_York"
MICROSECOND = timedelta(microseconds=1)


def _job(cron: str, zone: str, now: datetime) -> ScheduledJob:
    return scheduled_job(ScheduleConfig(name="c", cron=cron, timezone=zone), now)


def _fires(job: ScheduledJob, start: datetime, end: datetime) -> list[str]:
    """The fire times from ``start`` up to ``end``, each next one asked for as the scheduler
    asks (a microsecond after the last), as local ISO times: the offset tells the two equal
    local times of an autumn change apart."""
    fires: list[str] = []
    fire = job.trigger.get_next_fire_time(None, start)
    while fire is not None and fire.astimezone(UTC) < end:
        fires.append(fire.isoformat())
        fire = job.trigger.get_next_fire_time(fire, fire.astimezone(UTC) + MICROSECOND)
    return fires


# London's clocks go back from 02:00 BST to 01:00 GMT on Sunday 25 October 2026 (01:00 UTC),
# New York's from 02:00 EDT to 01:00 EST on Sunday 1 November 2026 (06:00 UTC)
AUTUMN = {LONDON: datetime(2026, 10, 24, 12, tzinfo=UTC),
          NEW_YORK: datetime(2026, 10, 31, 12, tzinfo=UTC)}


@pytest.mark.parametrize(("zone", "fires"), [
    (LONDON, ["2026-10-25T01:30:00+01:00", "2026-10-26T01:30:00+00:00"]),
    (NEW_YORK, ["2026-11-01T01:30:00-04:00", "2026-11-02T01:30:00-05:00"]),
])
def test_a_fixed_time_the_clocks_repeat_fires_once_at_its_first_occurrence(
    zone: str, fires: list[str]
) -> None:
    """It fired at both 01:30s: two ticks, two runs, a day's sync done twice."""
    job = _job("30 1 * * *", zone, AUTUMN[zone])
    assert _fires(job, AUTUMN[zone], AUTUMN[zone] + timedelta(days=2)) == fires
    first = datetime.fromisoformat(fires[0])
    second = first + timedelta(hours=1)  # the clocks show 01:30 again
    # a daemon started in the repeated hour waits for the next day, and a run started then
    # belongs to the first 01:30
    assert job.trigger.get_next_fire_time(None, second) == datetime.fromisoformat(fires[1])
    assert job.tick(second + timedelta(minutes=10)).astimezone(UTC) == first.astimezone(UTC)
    assert job.period == timedelta(days=1)


def test_fixed_hours_in_a_range_fire_once_each_too() -> None:
    """Only a minute or hour field starting with * makes a schedule follow the clock, as in
    cron: ``0 1-3`` names three fixed times."""
    job = _job("0 1-3 * * *", NEW_YORK, AUTUMN[NEW_YORK])
    assert _fires(job, datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 11, 2, tzinfo=UTC)) == [
        "2026-11-01T01:00:00-04:00", "2026-11-01T02:00:00-05:00", "2026-11-01T03:00:00-05:00"]


@pytest.mark.parametrize(("cron", "zone", "start", "fires"), [
    ("0 * * * *", NEW_YORK, datetime(2026, 11, 1, 4, 30, tzinfo=UTC),
     ["2026-11-01T01:00:00-04:00", "2026-11-01T01:00:00-05:00", "2026-11-01T02:00:00-05:00"]),
    ("*/15 * * * *", LONDON, datetime(2026, 10, 25, 0, 20, tzinfo=UTC),
     ["2026-10-25T01:30:00+01:00", "2026-10-25T01:45:00+01:00",
      "2026-10-25T01:00:00+00:00", "2026-10-25T01:15:00+00:00",
      "2026-10-25T01:30:00+00:00", "2026-10-25T01:45:00+00:00"]),
    # every 20 minutes of the 01:00 hour: the minute field starts with *
    ("*/20 1 * * *", LONDON, datetime(2026, 10, 24, 23, tzinfo=UTC),
     ["2026-10-25T01:00:00+01:00", "2026-10-25T01:20:00+01:00", "2026-10-25T01:40:00+01:00",
      "2026-10-25T01:00:00+00:00", "2026-10-25T01:20:00+00:00", "2026-10-25T01:40:00+00:00"]),
])
def test_schedules_running_every_minute_or_hour_fire_in_both_passes_of_a_repeated_hour(
    cron: str, zone: str, start: datetime, fires: list[str]
) -> None:
    job = _job(cron, zone, start)
    assert _fires(job, start, datetime.fromisoformat(fires[-1]) + MICROSECOND) == fires


# London's clocks go forward from 01:00 GMT to 02:00 BST on Sunday 29 March 2026 (01:00 UTC),
# New York's from 02:00 EST to 03:00 EDT on Sunday 8 March 2026 (07:00 UTC)
@pytest.mark.parametrize(("cron", "zone", "fires"), [
    # 02:30 never shows in New York on 8 March: the run starts as the clocks resume at 03:00
    ("30 2 * * *", NEW_YORK, ["2026-03-07T02:30:00-05:00", "2026-03-08T03:00:00-04:00",
                              "2026-03-09T02:30:00-04:00"]),
    ("30 1 * * *", LONDON, ["2026-03-28T01:30:00+00:00", "2026-03-29T02:00:00+01:00",
                            "2026-03-30T01:30:00+01:00"]),
])
def test_a_fixed_time_the_clocks_skip_fires_as_they_resume(
    cron: str, zone: str, fires: list[str]
) -> None:
    """It fired an hour after the skipped time (03:30 EDT in New York), under the name of a
    local time the clocks never showed (02:30 EST)."""
    day_before = datetime.fromisoformat(fires[0])
    job = _job(cron, zone, day_before)
    assert _fires(job, day_before, datetime.fromisoformat(fires[-1]) + MICROSECOND) == fires
    resumed = datetime.fromisoformat(fires[1])
    assert job.tick(resumed + timedelta(minutes=45)).isoformat() == fires[1]
    assert job.tick(resumed - MICROSECOND).isoformat() == fires[0]
    assert job.period == timedelta(days=1)


@pytest.mark.parametrize(("cron", "fires"), [
    ("0 * * * *", ["2026-03-08T01:00:00-05:00", "2026-03-08T03:00:00-04:00",
                   "2026-03-08T04:00:00-04:00"]),
    ("*/15 * * * *", ["2026-03-08T01:45:00-05:00", "2026-03-08T03:00:00-04:00",
                      "2026-03-08T03:15:00-04:00"]),
])
def test_schedules_running_every_minute_or_hour_go_on_from_the_clock_after_a_skipped_hour(
    cron: str, fires: list[str]
) -> None:
    start = datetime.fromisoformat(fires[0])
    job = _job(cron, NEW_YORK, start)
    assert _fires(job, start, datetime.fromisoformat(fires[-1]) + MICROSECOND) == fires


@pytest.mark.parametrize("cron", ["30 1 * * *", "0 9 * * 1-5", "0 * * * *", "*/15 * * * *",
                                  "0,30 1-3 * * *", "30 2 1 * 1", "15 4 */2 * 0"])
@pytest.mark.parametrize("zone", [LONDON, NEW_YORK, "UTC"])
def test_away_from_clock_changes_the_fire_times_are_apschedulers(cron: str, zone: str) -> None:
    start, end = datetime(2026, 6, 1, tzinfo=UTC), datetime(2026, 6, 16, tzinfo=UTC)
    job = _job(cron, zone, start)
    assert isinstance(job.trigger, CrontabTrigger)
    plain = cron_trigger(cron, ZoneInfo(zone))
    expected: list[str] = []
    fire = plain.get_next_fire_time(None, start)
    while fire is not None and fire.astimezone(UTC) < end:
        expected.append(fire.isoformat())
        fire = plain.get_next_fire_time(fire, fire.astimezone(UTC) + MICROSECOND)
    assert _fires(job, start, end) == expected
