"""Schedules become triggers on a shared grid, with ticks every daemon names alike."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from refsync.config import ScheduleConfig, parse_duration
from refsync.daemon.schedule import MAX_GRACE, scheduled_job

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
    job = scheduled_job(ScheduleConfig(name="fast", every="500ms"), NOW)
    assert job.grace == timedelta(seconds=1) and job.grace_seconds == 1
    assert job.tick(NOW) == datetime(2026, 12, 1, 16, 7, 42, tzinfo=UTC)


@pytest.mark.parametrize(("text", "seconds"), [("500ms", 0.5), ("30s", 30), ("5m", 300),
                                               ("2h", 7200), ("1d", 86400)])
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


def test_bad_schedules_are_refused_with_the_reason() -> None:
    with pytest.raises(ValueError, match="is not valid"):
        ScheduleConfig(name="x", cron="61 * * * *")
    with pytest.raises(ValueError, match="longer than zero"):
        ScheduleConfig(name="x", every="0s")
    with pytest.raises(ValueError, match="exactly one of"):
        ScheduleConfig(name="x")
