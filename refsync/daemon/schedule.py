"""Turn the configuration's schedules into APScheduler triggers, ticks and misfire graces.

Interval schedules are aligned to a fixed grid (midnight of 2000-01-01 in the schedule's timezone),
so every daemon sharing a database fires the same ticks at the same moments: ``every: 5m`` runs
at :00, :05, :10... wherever it runs. An interval of whole days steps the zone's calendar
(``every: 1d`` runs at local midnight all year, as cron would); any other interval steps
absolute time, so ``every: 30m`` stays 30 minutes apart across a clock change. A tick is
identified by its fire time; the run table accepts each ``(job, tick)`` once, so a tick is
never executed twice across daemons (only a run cut short gives its tick up to a new run, see
:meth:`refsync.state.StateStore.start_run`).

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

__all__ = ["MAX_GRACE", "CalendarDaysTrigger", "ScheduledJob", "scheduled_job"]

MAX_GRACE = timedelta(hours=1)
"""The longest a late tick may still start; later ones are counted as missed."""

_GRID_ORIGIN = datetime(2000, 1, 1)
_DAY = timedelta(days=1)


class CalendarDaysTrigger(BaseTrigger):
    """Fires every ``days`` local days from the grid's origin, at the origin's local time of day.

    The days are the zone's calendar days, so the run keeps its local time all year (an interval
    stepped in absolute time moves by the hour a clock change moves). A local time that a spring
    clock change skips fires at the first instant after the gap; one that an autumn change
    repeats fires once, at its first occurrence.

    Attributes:
        days: the number of local days between two fire times.
        origin: the grid's origin, a local (naive) date and time: the fire times are
            ``origin + k * days`` on the zone's clocks, for every whole ``k``.
        timezone: the zone whose calendar and clocks are stepped.
    """

    __slots__ = ("days", "origin", "timezone")

    def __init__(self, days: int, origin: datetime, timezone: ZoneInfo) -> None:
        if days < 1:
            raise ValueError(f"a calendar interval needs at least one day, not {days}")
        self.days = days
        self.origin = origin.replace(tzinfo=None)
        self.timezone = timezone

    def get_next_fire_time(
        self, previous_fire_time: datetime | None, now: datetime
    ) -> datetime | None:
        """The first fire time after ``previous_fire_time``; without one, the first at or after
        ``now`` (as an interval trigger answers)."""
        if previous_fire_time is not None:
            return self.fire_time(self._latest_step(previous_fire_time) + 1)
        step = self._latest_step(now)
        latest = self.fire_time(step)
        return latest if _utc(latest) == _utc(now) else self.fire_time(step + 1)

    def latest_fire_time(self, now: datetime) -> datetime:
        """The latest fire time not after ``now``: the tick a run starting at ``now`` belongs to."""
        return self.fire_time(self._latest_step(now))

    def fire_time(self, step: int) -> datetime:
        """The fire time ``step`` intervals from the origin (before it when negative)."""
        return _local_instant(self.origin + step * self.days * _DAY, self.timezone)

    def _latest_step(self, moment: datetime) -> int:
        """The last step whose fire time is not after ``moment``."""
        wall = moment.astimezone(self.timezone).replace(tzinfo=None)
        step = (wall - self.origin).days // self.days
        # the local date gives the step, give or take one near a skipped or repeated hour
        while _utc(self.fire_time(step)) > _utc(moment):
            step -= 1
        while _utc(self.fire_time(step + 1)) <= _utc(moment):
            step += 1
        return step

    def __str__(self) -> str:
        return f"calendar[every {self.days}d at {self.origin:%H:%M}, {self.timezone}]"

    def __repr__(self) -> str:
        return (f"<{type(self).__name__} (days={self.days}, origin='{self.origin.isoformat()}', "
                f"timezone='{self.timezone}')>")


def _local_instant(wall: datetime, zone: ZoneInfo) -> datetime:
    """The instant ``zone``'s clocks show the local time ``wall``.

    An autumn clock change shows it twice: the first is taken. A spring change skips it: the
    first instant after the gap (the change itself) is taken.
    """
    first = wall.replace(tzinfo=zone, fold=0)
    if _wall(first, zone) == wall:
        return first.astimezone(UTC).astimezone(zone)
    # a skipped time read with the offset before the change lands after the gap, and with the
    # offset after it lands before the gap: the change lies between, at a whole second
    before = int(wall.replace(tzinfo=zone, fold=1).timestamp())
    after = int(first.timestamp())
    while after - before > 1:
        middle = (before + after) // 2
        if _wall(datetime.fromtimestamp(middle, zone), zone) > wall:
            after = middle
        else:
            before = middle
    return datetime.fromtimestamp(after, zone)


def _wall(moment: datetime, zone: ZoneInfo) -> datetime:
    """The local (naive) time ``zone``'s clocks show at ``moment``."""
    return moment.astimezone(UTC).astimezone(zone).replace(tzinfo=None)


@dataclass(frozen=True)
class ScheduledJob:
    """One schedule ready for the scheduler.

    Attributes:
        config: the schedule as configured.
        trigger: the APScheduler trigger firing it.
        period: the time between two ticks (for cron, between the next two; for an interval of
            whole days, its nominal days, though a clock change makes one an hour shorter or
            longer).
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
        if isinstance(self.trigger, CalendarDaysTrigger):
            return self.trigger.latest_fire_time(now)
        if isinstance(self.trigger, IntervalTrigger):
            # in absolute time, as the trigger steps: local datetimes of one zone subtract and
            # add by wall clock, an hour off in summer
            origin = self.trigger.start_date
            steps = (_utc(now) - _utc(origin)) // self.period
            return (_utc(origin) + steps * self.period).astimezone(origin.tzinfo)
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
    """Build the trigger, period and misfire grace of one configured schedule.

    An ``every`` of a whole number of days (``1d``, ``7d``, ``48h``) steps the schedule's
    calendar: every N local days from the grid, at local midnight, through clock changes. Any
    other ``every`` (shorter than a day, or not whole days such as ``36h``) steps absolute time
    from the grid's origin, so its runs stay exactly that far apart and their local time moves
    with a clock change. The period of a calendar interval is its nominal N days.
    """
    zone = ZoneInfo(config.timezone)
    trigger: BaseTrigger
    if config.every is not None:
        period = timedelta(seconds=parse_duration(config.every))
        if period % _DAY == timedelta(0):
            trigger = CalendarDaysTrigger(period // _DAY, _GRID_ORIGIN, zone)
        else:
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
