"""Schedules become triggers on a shared grid, with ticks every daemon names alike."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo

import pytest
from apscheduler.schedulers.background import BackgroundScheduler

from refsync.config import ScheduleConfig, parse_duration
from refsync.daemon.schedule import MAX_GRACE, ScheduledJob, scheduled_job

NOW = datetime(2026, 12, 1, 16, 7, 42, 123456, tzinfo=UTC)


def test_interval_ticks_sit_on_a_grid_shared_by_every_daemon() -> None:
    job = scheduled_job(ScheduleConfig(name="often", every="5m"), NOW)
    assert job.tick(NOW) == datetime(2026, 12, 1, 16, 5, tzinfo=UTC)
    assert job.trigger.get_next_fire_time(None, NOW) == datetime(2026, 12, 1, 16, 10, tzinfo=UTC)
    # a daemon started at another moment fires the same ticks
    other = scheduled_job(ScheduleConfig(name="often", every="5m"), NOW + timedelta(hours=3))
    assert other.tick(NOW) == job.tick(NOW)
    assert job.period == timedelta(minutes=5) and job.grace == timedelta(seconds=150)


def test_a_daily_interval_follows_the_schedules_timezone() -> None:
    job = scheduled_job(ScheduleConfig(name="daily", every="1d", timezone="Europe/Paris"), NOW)
    assert job.tick(NOW) == datetime(2026, 12, 1, tzinfo=ZoneInfo("Europe/Paris"))
    assert job.grace == MAX_GRACE


def test_cron_ticks_are_the_latest_fire_time() -> None:
    job = scheduled_job(ScheduleConfig(name="nightly", cron="30 2 * * *",
                                       timezone="Europe/London"), NOW)
    assert job.period == timedelta(days=1)
    assert job.tick(NOW) == datetime(2026, 12, 1, 2, 30, tzinfo=UTC)
    quarter = scheduled_job(ScheduleConfig(name="q", cron="*/15 * * * *"), NOW)
    assert quarter.tick(NOW) == datetime(2026, 12, 1, 16, 0, tzinfo=UTC)
    assert quarter.grace == timedelta(minutes=7, seconds=30)


def test_short_intervals_get_at_least_a_second_of_grace() -> None:
    job = scheduled_job(ScheduleConfig(name="fast", every="1s"), NOW)
    assert job.grace == timedelta(seconds=1) and job.grace_seconds == 1
    assert job.tick(NOW) == datetime(2026, 12, 1, 16, 7, 42, tzinfo=UTC)


@pytest.mark.parametrize(("text", "seconds"), [("500ms", 0.5), ("30s", 30), ("5m", 300),
                                               ("2h", 7200), ("1d", 86400)])
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


def test_bad_schedules_are_refused_with_the_reason() -> None:
    with pytest.raises(ValueError, match="is not valid"):
        ScheduleConfig(name="x", cron="61 * * * *")
    with pytest.raises(ValueError, match="at least 1s"):
        ScheduleConfig(name="x", every="0s")
    with pytest.raises(ValueError, match="at least 1s"):
        ScheduleConfig(name="x", every="500ms")
    with pytest.raises(ValueError, match="exactly one of"):
        ScheduleConfig(name="x")


def _next_fires(cron: str, count: int = 6) -> list[str]:
    """The next fire times of a cron schedule after NOW (a Tuesday), as 'Mon 07 02:30'."""
    trigger = scheduled_job(ScheduleConfig(name="c", cron=cron), NOW).trigger
    fires: list[str] = []
    previous, moment = None, NOW
    while len(fires) < count:
        fire = trigger.get_next_fire_time(previous, moment)
        assert fire is not None
        fires.append(fire.strftime("%a %d %H:%M"))
        previous, moment = fire, fire + timedelta(microseconds=1)
    return fires


@pytest.mark.parametrize(("cron", "expected"), [
    # crontab numbers weekdays from Sunday = 0 (7 is Sunday too); NOW is Tuesday 1 December
    ("30 2 * * 1", ["Mon 07", "Mon 14", "Mon 21"]),
    ("30 2 * * 0", ["Sun 06", "Sun 13", "Sun 20"]),
    ("30 2 * * 7", ["Sun 06", "Sun 13", "Sun 20"]),
    ("30 2 * * 1-5", ["Wed 02", "Thu 03", "Fri 04", "Mon 07", "Tue 08", "Wed 09"]),
    ("30 2 * * 0,6", ["Sat 05", "Sun 06", "Sat 12", "Sun 13"]),
    ("30 2 * * 5-7", ["Fri 04", "Sat 05", "Sun 06", "Fri 11"]),
    ("30 2 * * */2", ["Thu 03", "Sat 05", "Sun 06", "Tue 08"]),  # 0, 2, 4, 6
    ("30 2 * * 1-5/2", ["Wed 02", "Fri 04", "Mon 07", "Wed 09"]),  # 1, 3, 5
    ("30 2 * * MON-FRI", ["Wed 02", "Thu 03", "Fri 04", "Mon 07"]),
    ("30 2 * * sat,sun", ["Sat 05", "Sun 06", "Sat 12", "Sun 13"]),
    ("30 2 * * fri-sun", ["Fri 04", "Sat 05", "Sun 06", "Fri 11"]),
    # both day fields restricted: crontab runs on either (the 1st of January is a Friday)
    ("30 2 1 * 1", ["Mon 07", "Mon 14", "Mon 21", "Mon 28", "Fri 01", "Mon 04"]),
    # a day field starting with * does not count as restricted: both must match
    ("30 2 */2 * 1", ["Mon 07", "Mon 21", "Mon 11", "Mon 25"]),
])
def test_cron_weekdays_mean_what_they_mean_in_crontab(cron: str, expected: list[str]) -> None:
    assert _next_fires(cron, len(expected)) == [f"{day} 02:30" for day in expected]


def test_the_daily_cron_period_is_unchanged_by_the_weekday_reading() -> None:
    job = scheduled_job(ScheduleConfig(name="weekdays", cron="0 9 * * 1-5"), NOW)
    assert job.period == timedelta(days=1)
    assert job.tick(NOW) == datetime(2026, 12, 1, 9, tzinfo=UTC)


@pytest.mark.parametrize(("cron", "reason"), [
    ("0 9 * * 8", "'8' is not a weekday: use 0-7 (0 and 7 are Sunday) or sun, mon ... sat"),
    ("0 9 * * 5-1", "weekday range '5-1' runs backwards"),
    ("0 9 * * mon/0", "weekday step in 'mon/0' must be at least 1"),
    ("0 9 * * 1-", "weekday '1-' is not a day, a range (1-5) or a step (*/2)"),
])
def test_weekdays_crontab_does_not_know_are_refused(cron: str, reason: str) -> None:
    with pytest.raises(ValueError, match="is not valid") as refused:
        ScheduleConfig(name="x", cron=cron)
    assert reason in str(refused.value)


@pytest.mark.parametrize(("cron", "zone", "now", "tick"), [
    # during the second 01:00-02:00 of the night London's clocks go back, a run belongs to the
    # first 01:30 (00:30 UTC): the second does not fire
    ("30 1 * * *", "Europe/London", datetime(2026, 10, 25, 1, 45, tzinfo=UTC),
     datetime(2026, 10, 25, 0, 30, tzinfo=UTC)),
    # New York's repeated 01:00-02:00: 01:00 EST is 06:00 UTC
    ("0 * * * *", "America/New_York", datetime(2026, 11, 1, 6, 30, tzinfo=UTC),
     datetime(2026, 11, 1, 6, 0, tzinfo=UTC)),
    ("*/5 * * * *", "Europe/London", datetime(2026, 10, 25, 1, 7, tzinfo=UTC),
     datetime(2026, 10, 25, 1, 5, tzinfo=UTC)),
])
def test_ticks_in_the_hour_a_clock_change_repeats(
    cron: str, zone: str, now: datetime, tick: datetime
) -> None:
    """A step of a microsecond in local time lost which of the two equal local times a fire
    time was, and the loop that finds the tick never ended."""
    job = scheduled_job(ScheduleConfig(name="nightly", cron=cron, timezone=zone),
                        now - timedelta(hours=3))
    assert job.tick(now).astimezone(UTC) == tick


def test_a_daily_cron_built_just_before_a_clock_change_keeps_a_days_period() -> None:
    job = scheduled_job(ScheduleConfig(name="nightly", cron="30 1 * * *",
                                       timezone="Europe/London"),
                        datetime(2026, 10, 24, 22, 45, tzinfo=UTC))
    assert job.period == timedelta(days=1)


LONDON, NEW_YORK, HAVANA = "Europe/London", "America/New_York", "America/Havana"
MICROSECOND = timedelta(microseconds=1)


def _fires_from(job: ScheduledJob, now: datetime, count: int) -> list[datetime]:
    """The first ``count`` fire times at or after ``now``, in UTC (each next one asked for as
    the scheduler asks, a microsecond after the last)."""
    fires: list[datetime] = []
    fire = job.trigger.get_next_fire_time(None, now)
    while len(fires) < count:
        assert fire is not None
        fires.append(fire.astimezone(UTC))
        fire = job.trigger.get_next_fire_time(fire, fire.astimezone(UTC) + MICROSECOND)
    return fires


def _tick(job: ScheduledJob, moment: datetime) -> datetime:
    """The job's tick at ``moment``, in UTC: a local time an autumn clock change repeats
    compares unequal to any time of another zone."""
    return job.tick(moment).astimezone(UTC)


def _midnight(zone: str, day: str) -> datetime:
    """Midnight of ``day`` ('MM-DD' in 2026) on ``zone``'s clocks, in UTC."""
    month, day_of_month = (int(part) for part in day.split("-"))
    return datetime(2026, month, day_of_month, tzinfo=ZoneInfo(zone)).astimezone(UTC)


@pytest.mark.parametrize(("every", "zone", "now", "tick", "days"), [
    # London's clocks go forward on Sunday 29 March 2026 and back on Sunday 25 October
    ("1d", LONDON, datetime(2026, 3, 27, 12, tzinfo=UTC), "03-27", ["03-28", "03-29", "03-30"]),
    ("2d", LONDON, datetime(2026, 3, 27, 12, tzinfo=UTC), "03-27", ["03-29", "03-31", "04-02"]),
    # the grid starts on Saturday 1 January 2000: 7d runs on Saturdays
    ("7d", LONDON, datetime(2026, 3, 27, 12, tzinfo=UTC), "03-21", ["03-28", "04-04", "04-11"]),
    ("1d", LONDON, datetime(2026, 10, 23, 12, tzinfo=UTC), "10-23", ["10-24", "10-25", "10-26"]),
    ("2d", LONDON, datetime(2026, 10, 23, 12, tzinfo=UTC), "10-23", ["10-25", "10-27", "10-29"]),
    ("7d", LONDON, datetime(2026, 10, 23, 12, tzinfo=UTC), "10-17", ["10-24", "10-31", "11-07"]),
    # New York's go forward on Sunday 8 March 2026 and back on Sunday 1 November
    ("1d", NEW_YORK, datetime(2026, 3, 6, 12, tzinfo=UTC), "03-06", ["03-07", "03-08", "03-09"]),
    ("2d", NEW_YORK, datetime(2026, 3, 6, 12, tzinfo=UTC), "03-05", ["03-07", "03-09", "03-11"]),
    ("7d", NEW_YORK, datetime(2026, 3, 6, 12, tzinfo=UTC), "02-28", ["03-07", "03-14", "03-21"]),
    ("1d", NEW_YORK, datetime(2026, 10, 30, 12, tzinfo=UTC), "10-30", ["10-31", "11-01", "11-02"]),
    ("2d", NEW_YORK, datetime(2026, 10, 30, 12, tzinfo=UTC), "10-29", ["10-31", "11-02", "11-04"]),
    ("7d", NEW_YORK, datetime(2026, 10, 30, 12, tzinfo=UTC), "10-24", ["10-31", "11-07", "11-14"]),
])
def test_whole_day_intervals_run_at_local_midnight_through_clock_changes(
    every: str, zone: str, now: datetime, tick: str, days: list[str]
) -> None:
    """Stepped in absolute time, a daily run moved to 01:00 local for the summer."""
    job = scheduled_job(ScheduleConfig(name="daily", every=every, timezone=zone), now)
    fires = _fires_from(job, now, len(days))
    assert fires == [_midnight(zone, day) for day in days]
    assert _tick(job, now) == _midnight(zone, tick)
    # the tick of a run is the fire time that started it, up to the next one
    for earlier, later in pairwise(fires):
        assert _tick(job, later) == later
        assert _tick(job, later - MICROSECOND) == earlier
    assert job.period == timedelta(days=int(every[:-1])) and job.grace == MAX_GRACE


def test_a_skipped_local_midnight_runs_when_the_clocks_resume() -> None:
    # Havana's clocks jump from 00:00 to 01:00 on Sunday 9 March 2025
    now = datetime(2025, 3, 8, 12, tzinfo=UTC)
    job = scheduled_job(ScheduleConfig(name="daily", every="1d", timezone=HAVANA), now)
    resumed = datetime(2025, 3, 9, 5, tzinfo=UTC)  # 01:00 daylight time, the first instant after
    assert _fires_from(job, now, 3) == [resumed, datetime(2025, 3, 10, 4, tzinfo=UTC),
                                        datetime(2025, 3, 11, 4, tzinfo=UTC)]
    assert _tick(job, resumed - MICROSECOND) == datetime(2025, 3, 8, 5, tzinfo=UTC)
    assert _tick(job, resumed) == resumed


def test_a_repeated_local_midnight_runs_once_at_its_first_occurrence() -> None:
    # Havana's clocks go back from 01:00 to 00:00 on Sunday 2 November 2025: midnight comes twice
    now = datetime(2025, 11, 1, 12, tzinfo=UTC)
    job = scheduled_job(ScheduleConfig(name="daily", every="1d", timezone=HAVANA), now)
    first, second = datetime(2025, 11, 2, 4, tzinfo=UTC), datetime(2025, 11, 2, 5, tzinfo=UTC)
    following = datetime(2025, 11, 3, 5, tzinfo=UTC)  # 00:00 standard time
    assert _fires_from(job, now, 2) == [first, following]
    # a daemon started during the second midnight hour waits for the next day, and a run
    # starting then belongs to the first midnight
    assert job.trigger.get_next_fire_time(None, second) == following
    assert _tick(job, second + timedelta(minutes=30)) == first


@pytest.mark.parametrize(("every", "zone", "now"), [
    ("30m", LONDON, datetime(2026, 3, 29, 0, 10, tzinfo=UTC)),  # forward at 01:00 UTC
    ("30m", LONDON, datetime(2026, 10, 25, 0, 10, tzinfo=UTC)),  # back at 01:00 UTC
    ("30m", NEW_YORK, datetime(2026, 3, 8, 6, 10, tzinfo=UTC)),  # forward at 07:00 UTC
    ("30m", NEW_YORK, datetime(2026, 11, 1, 5, 10, tzinfo=UTC)),  # back at 06:00 UTC
    ("36h", LONDON, datetime(2026, 3, 27, 12, tzinfo=UTC)),
    ("36h", NEW_YORK, datetime(2026, 10, 30, 12, tzinfo=UTC)),
])
def test_intervals_that_are_not_whole_days_stay_their_length_apart_across_clock_changes(
    every: str, zone: str, now: datetime
) -> None:
    """Their ticks used to be named by wall clock: an hour off in summer, and on the night the
    clocks went forward two different ticks had one name (the second was skipped as run)."""
    job = scheduled_job(ScheduleConfig(name="often", every=every, timezone=zone), now)
    fires = _fires_from(job, now, 7)
    length = timedelta(seconds=parse_duration(every))
    assert [later - earlier for earlier, later in pairwise(fires)] == [length] * 6
    assert (fires[0] - datetime(2000, 1, 1, tzinfo=ZoneInfo(zone))) % length == timedelta(0)
    for earlier, later in pairwise(fires):
        assert _tick(job, later) == later
        assert _tick(job, later - MICROSECOND) == earlier


def test_a_whole_number_of_hours_making_whole_days_is_a_calendar_interval() -> None:
    now = datetime(2026, 3, 27, 12, tzinfo=UTC)
    hours = scheduled_job(ScheduleConfig(name="h", every="48h", timezone=LONDON), now)
    days = scheduled_job(ScheduleConfig(name="d", every="2d", timezone=LONDON), now)
    assert _fires_from(hours, now, 3) == _fires_from(days, now, 3)


def test_the_scheduler_takes_a_calendar_interval() -> None:
    job = scheduled_job(ScheduleConfig(name="daily", every="1d", timezone=LONDON), NOW)
    scheduler = BackgroundScheduler(timezone=UTC)
    scheduler.start(paused=True)
    try:
        fire = scheduler.add_job(print, job.trigger).next_run_time
    finally:
        scheduler.shutdown(wait=False)
    assert fire.astimezone(ZoneInfo(LONDON)).time() == time(0)
    assert _tick(job, fire) == fire
