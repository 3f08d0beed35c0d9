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
Their local times meet clock changes as they do in cron (see :class:`CrontabTrigger`): a fixed
time an autumn change repeats fires once, and one a spring change skips fires as the clocks
resume.
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

__all__ = ["MAX_GRACE", "CalendarDaysTrigger", "CrontabTrigger", "ScheduledJob", "scheduled_job"]

MAX_GRACE = timedelta(hours=1)
"""The longest a late tick may still start; later ones are counted as missed."""

_GRID_ORIGIN = datetime(2000, 1, 1)
_DAY = timedelta(days=1)
_MICROSECOND = timedelta(microseconds=1)
_LONGEST_CLOCK_CHANGE = timedelta(hours=3)
"""More than any clock change a zone makes for summer time (cron's own bound too)."""


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


class CrontabTrigger(BaseTrigger):
    """Fires at the local times a crontab expression names, placed on the zone's clocks as cron
    (Vixie cron, Debian's) places them.

    The expression is matched against the zone's local times, and each matching time fires at
    the instant the zone's clocks show it. Two kinds of schedule meet a clock change differently:

    * a fixed time (``30 1 * * *``, ``0 9 * * 1-5``): a time an autumn change repeats fires
      once, at its first occurrence; a time a spring change skips fires at the first instant
      after the gap (the change itself), as the calendar intervals do;
    * a schedule running every minute or every hour, whose minute or hour field starts with
      ``*`` (``*/15 * * * *``, ``0 * * * *``): it runs on the clock as it is, so the repeated
      hour runs twice and the skipped hour not at all.

    Attributes:
        expression: the five crontab fields.
        timezone: the zone whose clocks the expression is read on.
        follows_the_clock: whether the schedule runs every minute or hour (runs on the clock as
            it is) rather than at fixed times.
    """

    __slots__ = ("_local_times", "expression", "follows_the_clock", "timezone")

    def __init__(self, expression: str, timezone: ZoneInfo) -> None:
        self.expression = expression
        self.timezone = timezone
        minute, hour = expression.split()[:2]
        self.follows_the_clock = minute.startswith("*") or hour.startswith("*")
        # read in UTC, which never changes its clocks, the trigger lists the matching local times
        self._local_times = cron_trigger(expression, UTC)

    def get_next_fire_time(
        self, previous_fire_time: datetime | None, now: datetime
    ) -> datetime | None:
        """The first fire time after ``previous_fire_time``; without one, the first at or after
        ``now`` (as a cron trigger answers)."""
        start = _utc(now) if previous_fire_time is None else _utc(previous_fire_time) + _MICROSECOND
        folds = (0, 1) if self.follows_the_clock else (0,)
        fires = [fire for fold in folds if (fire := self._first_fire(start, fold)) is not None]
        return min(fires).astimezone(self.timezone) if fires else None

    def _first_fire(self, start: datetime, fold: int) -> datetime | None:
        """The first instant (in UTC) at or after ``start`` that a matching local time fires at,
        a local time an autumn change repeats being read as its ``fold`` occurrence.

        Read so, the instants follow the local times in order, so the first local time that
        fires at or after ``start`` gives the answer.
        """
        local = self._next_local_time(self._earliest_local_time(start))
        while local is not None:
            fire = self._instant(local, fold)
            if fire is not None and fire >= start:
                return fire
            local = self._next_local_time(local + _MICROSECOND)
        return None

    def _earliest_local_time(self, start: datetime) -> datetime:
        """A local time no later than any that fires at or after ``start``.

        Near a clock change that is not the local time at ``start``: a skipped time fires at the
        change itself, after the clocks passed it; a time the clocks are about to repeat fires
        again though they already showed it.
        """
        zone = self.timezone
        return min(_wall(start - _MICROSECOND, zone), _wall(start, zone),
                   _wall(start + _LONGEST_CLOCK_CHANGE, zone) - _LONGEST_CLOCK_CHANGE)

    def _next_local_time(self, local: datetime) -> datetime | None:
        """The first local time at or after ``local`` the expression matches."""
        fire = self._local_times.get_next_fire_time(None, local.replace(tzinfo=UTC))
        return None if fire is None else fire.replace(tzinfo=None)

    def _instant(self, local: datetime, fold: int) -> datetime | None:
        """The instant (in UTC) the local time ``local`` fires at, read as its ``fold``
        occurrence, or None when a schedule following the clock never sees it."""
        if not self.follows_the_clock:
            return _utc(_local_instant(local, self.timezone))
        moment = local.replace(tzinfo=self.timezone, fold=fold)
        return _utc(moment) if _wall(moment, self.timezone) == local else None

    def __str__(self) -> str:
        return f"crontab['{self.expression}', {self.timezone}]"

    def __repr__(self) -> str:
        return (f"<{type(self).__name__} (expression='{self.expression}', "
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
    with a clock change. The period of a calendar interval is its nominal N days. A ``cron``
    fires as cron would through clock changes (:class:`CrontabTrigger`).
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
        trigger = CrontabTrigger(config.cron, zone)
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
