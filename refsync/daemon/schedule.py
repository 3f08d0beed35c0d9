"""Turn the configuration's schedules into APScheduler triggers, ticks and misfire graces.

Interval schedules are aligned to a fixed grid (midnight of 2000-01-01 in the schedule's timezone),
so every daemon sharing a database fires the same ticks at the same moments: ``every: 5m`` runs
at :00, :05, :10... wherever it runs. A tick is identified by its fire time; the run table
accepts each ``(job, tick)`` once, so a tick is never executed twice across daemons.

Cron expressions are read as crontab reads them (weekday 0 and 7 are Sunday), by
:func:`refsync.config.cron_trigger`: the reading the config check validates is the one that runs.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo

from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.interval import IntervalTrigger

from refsync.config import ScheduleConfig, cron_trigger, parse_duration

__all__ = ["MAX_GRACE", "ScheduledJob", "scheduled_job"]

MAX_GRACE = timedelta(hours=1)
"""The longest a late tick may still start; later ones are counted as missed."""

_GRID_ORIGIN = datetime(2000, 1, 1)


@dataclass(frozen=True)
class ScheduledJob:
    """One schedule ready for the scheduler.

    Attributes:
        config: the schedule as configured.
        trigger: the APScheduler trigger firing it.
        period: the time between two ticks (for cron, between the next two).
        grace: how late a tick may start before it counts as missed (half a period, 1 s to 1 h).
    """

    config: ScheduleConfig
    trigger: BaseTrigger
    period: timedelta
    grace: timedelta

    @property
    def grace_seconds(self) -> int:
        """The misfire grace in whole seconds, as APScheduler takes it."""
        return max(1, int(self.grace.total_seconds()))

    @property
    def name(self) -> str:
        """The job's name (the schedule's ``name``)."""
        return self.config.name

    def tick(self, now: datetime) -> datetime:
        """The tick a run starting at ``now`` belongs to: the latest fire time not after it."""
        if isinstance(self.trigger, IntervalTrigger):
            origin = self.trigger.start_date
            steps = (now - origin) // self.period
            return origin + steps * self.period
        lookback = now - self.period - self.grace
        latest: datetime | None = None
        fire = self.trigger.get_next_fire_time(None, lookback)
        while fire is not None and fire <= now and (latest is None or _utc(fire) > _utc(latest)):
            latest = fire
            fire = _fire_after(self.trigger, fire)
        return latest or now.replace(microsecond=0)


def _utc(moment: datetime) -> datetime:
    # within one zone, datetimes compare by wall clock and ignore which of two equal local
    # times they are; in UTC they compare as instants
    return moment.astimezone(UTC)


def _fire_after(trigger: BaseTrigger, fire: datetime) -> datetime | None:
    """The trigger's next fire time after ``fire``.

    The step is taken in UTC: adding a microsecond to a local time keeps its wall clock and
    drops which of the two equal local times of an autumn clock change it was, so the trigger
    would answer the same fire time again.
    """
    return trigger.get_next_fire_time(fire, fire.astimezone(UTC) + timedelta(microseconds=1))


def scheduled_job(config: ScheduleConfig, now: datetime) -> ScheduledJob:
    """Build the trigger, period and misfire grace of one configured schedule."""
    zone = ZoneInfo(config.timezone)
    trigger: BaseTrigger
    if config.every is not None:
        period = timedelta(seconds=parse_duration(config.every))
        trigger = IntervalTrigger(
            seconds=period.total_seconds(), start_date=_GRID_ORIGIN.replace(tzinfo=zone),
            timezone=zone,
        )
    else:
        assert config.cron is not None  # the config validator guarantees one of the two
        trigger = cron_trigger(config.cron, zone)
        # the usual gap between the next fire times: one gap alone may be the hour a clock
        # change repeats, or a weekend
        fires = [trigger.get_next_fire_time(None, now)]
        while len(fires) < 9 and fires[-1] is not None:
            fires.append(_fire_after(trigger, fires[-1]))
        known = [_utc(fire) for fire in fires if fire is not None]
        gaps = Counter(later - earlier for earlier, later in pairwise(known))
        period = max(gaps, key=lambda gap: (gaps[gap], gap)) if gaps else timedelta(days=1)
    grace = min(max(period / 2, timedelta(seconds=1)), MAX_GRACE)
    return ScheduledJob(config, trigger, period, grace)
