"""The top-level YAML configuration: systems and their streams, schedules, state, rules.

Load it with :func:`load_config`, which validates everything at once and raises
:class:`~refsync.errors.ConfigError` listing every problem as ``FILE:LINE:COLUMN: what — fix``
before any system or database is touched. Secrets never live in the YAML: a secret setting must
be a ``${VAR}``, ``${VAR:-default}`` or ``file:/path`` reference, resolved at load time.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from datetime import timedelta, tzinfo
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_args

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from refsync.errors import ConfigError, Problem
from refsync.validation import InvalidValueError, explain_pattern, path_exists, validate_model
from refsync.yamlsource import LoadedYaml, SourceMap, did_you_mean, load_yaml

if TYPE_CHECKING:
    from apscheduler.triggers.base import BaseTrigger

__all__ = [
    "DEFAULT_CONFIG_PATH",
    "DEFAULT_CUSTOMER_TYPES",
    "CustomerSourceConfig",
    "DaemonConfig",
    "LoadedConfig",
    "LoggingConfig",
    "MatchingConfig",
    "OpportunitySourceConfig",
    "RefsyncConfig",
    "RulesConfig",
    "ScheduleConfig",
    "StateConfig",
    "StreamConfig",
    "SystemConfig",
    "config_path_from",
    "cron_trigger",
    "default_customer_types",
    "is_secret_setting",
    "load_config",
    "parse_duration",
]

DEFAULT_CONFIG_PATH = Path("refsync.yaml")

SECRET_SETTING = re.compile(r"(secret|password|token|private_key|api_key|client_key)", re.I)
"""Setting names that hold credentials and so must come from ``${VAR}`` or ``file:`` references."""

PATH_SETTING = re.compile(r"_file$", re.I)
"""Setting names that hold the path of a file (``private_key_file``): a path is not a secret,
whatever the rest of its name says, and the connector reads the file itself."""

_IDENTIFIER = explain_pattern(
    r"^[a-z][a-z0-9_\-]*$",
    "a name of lower-case letters, digits, _ and -, starting with a letter",
    "rename it, e.g. nightly or crm_sync")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StreamConfig(_Strict):
    """One object synced with one system, in one direction, through one mapping file."""

    object: str = Field(description="the remote object, e.g. Lead, contacts, leads")
    direction: Literal["in", "out", "both"] = "both"
    mapping: str = Field(
        description="a mapping file (relative to the config file) or builtin:NAME"
    )
    batch_size: int | None = Field(default=None, ge=1, le=10_000)
    enabled: bool = True


Role = Literal["prm", "crm", "marketing", "file"]
_ROLES: tuple[str, ...] = get_args(Role)
"""A system's part in the sync: only ``prm`` systems create referrals."""


class SystemConfig(_Strict):
    """A connected system: which connector talks to it, its settings and its streams."""

    connector: str | None = Field(
        default=None, description="connector name; defaults to the system's key"
    )
    role: Role = "crm"
    settings: dict[str, Any] = Field(default_factory=dict)
    streams: dict[str, StreamConfig] = Field(min_length=1)


_DURATION_FIX = "write a whole number and a unit (ms, s, m, h or d) with no space between, " \
    "e.g. 5m"
_DURATION = explain_pattern(r"^(\d+)(ms|s|m|h|d)$", "a duration such as 30s, 5m or 1h",
                            _DURATION_FIX)
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> float:
    """Seconds in a duration such as ``500ms``, ``30s``, ``5m``, ``1h`` or ``1d``.

    Raises:
        InvalidValueError: not a duration, or longer than a year (no setting needs more, and
            times that far ahead overflow the scheduler's clock arithmetic).
    """
    match = re.match(_DURATION, text.strip())
    if match is None:
        raise InvalidValueError(f"'{text}' is not a duration such as 30s, 5m or 1h",
                                _DURATION_FIX)
    seconds = int(match.group(1)) * _UNITS[match.group(2)]
    if seconds > MAX_DURATION_SECONDS:
        raise InvalidValueError(f"'{text}' is longer than a year", "give at most 365d")
    return seconds


MAX_DURATION_SECONDS = 365 * 86_400
"""The longest duration any setting takes."""

_CRONTAB_WEEKDAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
"""Weekday names in crontab's numbering: 0 is Sunday (and so is 7)."""
_WEEKDAY_ITEM = re.compile(r"(?P<span>\*|[a-z0-9]+(?:-[a-z0-9]+)?)(?:/(?P<step>\d+))?")


def cron_trigger(expression: str, timezone: str | tzinfo) -> BaseTrigger:
    """The APScheduler trigger of a five-field crontab expression, read as crontab reads it.

    APScheduler numbers weekdays from Monday = 0, crontab from Sunday = 0 (and 7), so the weekday
    field is rewritten as day names first: ``1-5`` is Monday to Friday and ``0,6`` the weekend,
    as in crontab. When both the day of the month and the weekday are restricted (neither
    starts with ``*``), crontab runs on the days matching either, and so does this trigger:
    ``0 9 1 * 1`` fires on the 1st and on every Monday.

    Raises:
        ValueError: saying which part of the expression is wrong.
    """
    from apscheduler.triggers.combining import OrTrigger
    from apscheduler.triggers.cron import CronTrigger

    fields = expression.split()
    if len(fields) != 5:
        raise ValueError("a cron expression has five fields: minute hour day month weekday")
    minute, hour, day, month, weekday = fields
    weekdays = _apscheduler_weekdays(weekday)

    def on(days_of_month: str, days_of_week: str) -> CronTrigger:
        return CronTrigger(minute=minute, hour=hour, day=days_of_month, month=month,
                           day_of_week=days_of_week, timezone=timezone)

    if not day.startswith("*") and not weekday.startswith("*"):
        return OrTrigger([on(day, "*"), on("*", weekdays)])
    return on(day, weekdays)


def _apscheduler_weekdays(field: str) -> str:
    """A crontab weekday field (numbers, names, ranges, steps, lists) as APScheduler day names."""
    if field == "*":
        return "*"
    days: set[int] = set()
    for item in field.lower().split(","):
        days |= _crontab_weekdays(item)
    monday_first = [day % 7 for day in range(1, 8)]
    return ",".join(_CRONTAB_WEEKDAYS[day] for day in monday_first if day in days)


def _crontab_weekdays(item: str) -> set[int]:
    """The days (0 = Sunday) one item of a crontab weekday list names: 5, fri, 1-5, */2, 1-5/2."""
    match = _WEEKDAY_ITEM.fullmatch(item)
    if match is None:
        raise ValueError(
            f"weekday '{item}' is not a day, a range (1-5) or a step (*/2): days are 0-7 "
            "(0 and 7 are Sunday) or sun, mon ... sat")
    span, step = match.group("span"), match.group("step")
    if span == "*":
        first, last = 0, 7
    else:
        first_text, _, last_text = span.partition("-")
        first = _crontab_weekday(first_text)
        last = _crontab_weekday(last_text) if last_text else (7 if step else first)
        if last == 0 and first > 0:
            last = 7  # fri-sun: Sunday as 7 ends the week
        if first > last:
            raise ValueError(
                f"weekday range '{span}' runs backwards: start it at the earlier day "
                "(0 is Sunday, 1 Monday ... 6 Saturday, 7 Sunday again)")
    stride = int(step) if step else 1
    if stride == 0:
        raise ValueError(f"weekday step in '{item}' must be at least 1")
    return {day % 7 for day in range(first, last + 1, stride)}


def _crontab_weekday(text: str) -> int:
    """One crontab weekday, 0-7 (0 and 7 are Sunday) or a three-letter name."""
    if text.isdigit() and int(text) <= 7:
        return int(text)
    if text in _CRONTAB_WEEKDAYS:
        return _CRONTAB_WEEKDAYS.index(text)
    raise ValueError(
        f"'{text}' is not a weekday: use 0-7 (0 and 7 are Sunday) or sun, mon ... sat")


_CRON_FIX = "write five fields, minute hour day month weekday: e.g. '0 9 * * 1-5' is 9:00 " \
    "on weekdays"


class ScheduleConfig(_Strict):
    """When the daemon runs a sync: every interval, or on a cron expression."""

    name: str = Field(pattern=_IDENTIFIER)
    every: str | None = Field(
        default=None, pattern=_DURATION, description="e.g. 30s, 5m, 1h"
    )
    cron: str | None = Field(default=None, description="five-field crontab, e.g. */5 * * * *")
    timezone: str = "UTC"
    systems: list[str] | None = Field(
        default=None, description="only these systems; all when omitted"
    )
    full: bool = Field(
        default=False, description="re-read everything, ignoring cursors (e.g. a nightly run)"
    )

    @model_validator(mode="after")
    def _one_trigger(self) -> ScheduleConfig:
        if (self.every is None) == (self.cron is None):
            has = "neither" if self.every is None else "both"
            raise InvalidValueError(
                "a schedule needs exactly one of 'every' (e.g. 5m) or 'cron' (e.g. */5 * * * *), "
                f"and this one has {has}",
                "add every: 5m, or cron: '*/5 * * * *'" if has == "neither"
                else "remove one of them")
        return self

    @field_validator("cron")
    @classmethod
    def _a_crontab(cls, value: str | None) -> str | None:
        """Five crontab fields that read as a schedule (checked here, so a problem is reported
        at the ``cron:`` line; the timezone does not change whether one is valid)."""
        if value is None:
            return None
        if len(value.split()) != 5:
            raise InvalidValueError("must have five fields: minute hour day month weekday",
                                    _CRON_FIX)
        try:
            cron_trigger(value, "UTC")
        except ValueError as exc:
            raise InvalidValueError(f"is not valid: {exc}", _CRON_FIX) from None
        return value

    @field_validator("every")
    @classmethod
    def _a_period(cls, value: str | None) -> str | None:
        if value is not None and parse_duration(value) < 1:
            # ticks are named and graced in whole seconds; a sync is not started more often
            raise InvalidValueError("must be at least 1s",
                                    "give a duration such as 30s or 5m")
        return value

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            zones = available_timezones()
            # 'london' names a city: match it against the city part of each zone too
            by_city = {zone.rsplit("/", 1)[-1].casefold(): zone for zone in sorted(zones)}
            guess = did_you_mean(value, zones) or by_city.get(
                value.strip().replace(" ", "_").casefold())
            raise InvalidValueError(
                f"unknown timezone '{value}'",
                f"did you mean '{guess}'?" if guess
                else "use an IANA name such as Europe/Paris or America/New_York") from None
        return value


class StateConfig(_Strict):
    """Where refsync keeps its state.

    :func:`load_config` checks the URL's form (reporting a mistake with its fix) and makes a
    relative SQLite path relative to the config file, as every other path in it.
    """

    url: str = Field(
        default="sqlite:///refsync.db",
        description="sqlite:///PATH (relative to the config file) or postgresql://...",
    )


class LoggingConfig(_Strict):
    """How refsync logs (command-line flags override these)."""

    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["auto", "json", "console"] = "auto"


MatchKey = Literal["email", "email_domain", "website_domain", "phone", "company_name"]


class MatchingConfig(_Strict):
    """How an incoming record is matched to an existing referral when no link identifies it."""

    keys: list[MatchKey] = Field(default_factory=lambda: list[MatchKey](["email"]))
    ignore_free_email_domains: bool = True


class CustomerSourceConfig(_Strict):
    """Where existing customers are read from, to reject referrals of them."""

    system: str = Field(description="a configured CRM system, e.g. salesforce")
    object: str = "Account"
    name_field: str = "Name"
    website_field: str = "Website"
    type_field: str = "Type"


class OpportunitySourceConfig(_Strict):
    """Where open deals are read from, to reject referrals of prospects already being sold to.

    The defaults are Salesforce-shaped: each opportunity names its account in a lookup field.
    HubSpot deals reach their company through associations instead, so a HubSpot source names
    the associated object type in ``account_association``, e.g. ``{system: hubspot, object:
    deals, account_association: companies, closed_field: hs_is_closed, name_field: dealname}``.
    Either way the account is one of those ``customers_from`` reads, so both must name the
    same system.
    """

    system: str = Field(description="the system customers_from reads, e.g. salesforce")
    object: str = "Opportunity"
    account_field: str = Field(
        default="AccountId", description="the opportunity's lookup to its account"
    )
    account_association: str | None = Field(
        default=None,
        description="find a deal's accounts through its associations to this object type "
        "(HubSpot: companies) instead of account_field",
    )
    closed_field: str = Field(
        default="IsClosed", description="true once the deal is closed (won or lost)"
    )
    name_field: str = "Name"


DEFAULT_CUSTOMER_TYPES: tuple[str, ...] = ("Customer - Direct", "Customer - Channel")
"""The Salesforce Account Types that mark a customer, unless ``customer_account_types`` is set."""

CUSTOMER_TYPES_BY_CONNECTOR: dict[str, tuple[str, ...]] = {"hubspot": ("customer",)}
"""Connectors whose customers are marked otherwise: HubSpot's lifecycle stage ``customer``."""


def default_customer_types(connector: str) -> list[str]:
    """The types that mark a customer in records read through ``connector``, by default."""
    return list(CUSTOMER_TYPES_BY_CONNECTOR.get(connector, DEFAULT_CUSTOMER_TYPES))


class RulesConfig(_Strict):
    """Rules of engagement: duplicate and channel-conflict handling.

    ``customer_account_types`` defaults to the values that mark a customer in the system
    ``customers_from`` reads: Salesforce Account Types, or ``customer`` (the lifecycle stage)
    for a HubSpot system. A value the configuration sets always wins.
    """

    protection_window_days: int = Field(default=90, ge=0, le=3650)
    reject_existing_customers: bool = True
    reject_open_opportunities: bool = True
    customer_account_types: list[str] = Field(
        default_factory=lambda: list(DEFAULT_CUSTOMER_TYPES),
        description="values of customers_from's type_field that mark a customer (default: "
        "the source system's, e.g. Customer - Direct and Customer - Channel, or customer on "
        "HubSpot)",
    )
    customers_from: CustomerSourceConfig | None = Field(
        default=None, description="read existing customers from this CRM object"
    )
    open_opportunities_from: OpportunitySourceConfig | None = Field(
        default=None, description="read open deals from this CRM object (needs customers_from)"
    )


class DaemonConfig(_Strict):
    """How ``refsync run`` behaves: its HTTP endpoint, leases, shutdown and readiness."""

    http_host: str = Field(default="127.0.0.1", description="address of /healthz, /metrics")
    http_port: int = Field(default=9464, ge=0, le=65535, description="0 picks a free port")
    lease_ttl: str = Field(
        default="60s", pattern=_DURATION,
        description="how long a silent daemon keeps the sync lease before another takes over",
    )
    shutdown_timeout: str = Field(
        default="30s", pattern=_DURATION,
        description="how long SIGTERM waits for the current page to commit before exiting",
    )
    unready_after_failures: int = Field(
        default=3, ge=1,
        description="/readyz fails once a job's last N runs all failed",
    )

    @field_validator("lease_ttl")
    @classmethod
    def _heartbeat_fits(cls, value: str) -> str:
        if parse_duration(value) < 3:
            raise InvalidValueError(
                "must be at least 3s: the heartbeat renews it every third of it",
                "give 3s or more, e.g. 60s")
        return value

    @property
    def lease_duration(self) -> timedelta:
        """``lease_ttl`` as a duration."""
        return timedelta(seconds=parse_duration(self.lease_ttl))

    @property
    def shutdown_seconds(self) -> float:
        """``shutdown_timeout`` in seconds."""
        return parse_duration(self.shutdown_timeout)


class RefsyncConfig(_Strict):
    """The whole ``refsync.yaml``."""

    version: Literal[1] = 1
    instance: str | None = Field(default=None, description="name of this daemon in run history")
    state: StateConfig = Field(default_factory=StateConfig)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)
    systems: dict[str, SystemConfig] = Field(min_length=1)
    schedules: list[ScheduleConfig] = Field(default_factory=list)
    matching: MatchingConfig = Field(default_factory=MatchingConfig)
    rules: RulesConfig = Field(default_factory=RulesConfig)
    daemon: DaemonConfig = Field(default_factory=DaemonConfig)

    @field_validator("rules")
    @classmethod
    def _customer_types_of_the_source(
        cls, rules: RulesConfig, info: ValidationInfo
    ) -> RulesConfig:
        """Unless set, the customer types are those of the system ``customers_from`` reads."""
        source = rules.customers_from
        if source is None or "customer_account_types" in rules.model_fields_set:
            return rules
        systems = info.data.get("systems") or {}
        system = systems.get(source.system)
        connector = (system.connector if system is not None else None) or source.system
        return rules.model_copy(
            update={"customer_account_types": default_customer_types(connector)})

    def connector_name(self, system: str) -> str:
        """The connector a system uses (its ``connector:`` or, by default, its key)."""
        return self.systems[system].connector or system


class LoadedConfig:
    """A validated configuration plus where it came from and the secrets it resolved."""

    def __init__(
        self, config: RefsyncConfig, path: Path, secrets: list[str], source: SourceMap
    ) -> None:
        self.config = config
        self.path = path
        self.source = source
        self.base_dir = path.parent
        self.secrets = secrets

    def resolve_path(self, reference: str) -> str:
        """A file named in the config, relative to the config file; ``builtin:`` left as is."""
        if reference.startswith("builtin:"):
            return reference
        candidate = Path(reference).expanduser()
        return str(candidate if candidate.is_absolute() else self.base_dir / candidate)


def config_path_from(option: str | None, environ: Mapping[str, str] | None = None) -> Path:
    """The config file: ``-c/--config``, else ``$REFSYNC_CONFIG``, else ``./refsync.yaml``."""
    env = os.environ if environ is None else environ
    return Path(option or env.get("REFSYNC_CONFIG") or DEFAULT_CONFIG_PATH)


def load_config(
    path: str | os.PathLike[str], environ: Mapping[str, str] | None = None
) -> LoadedConfig:
    """Load and validate a configuration file, reporting every problem at once.

    Raises:
        ConfigError: with every problem found, each located in the file.
    """
    config_path = Path(path)
    loaded = load_yaml(config_path, environ=environ, resolve_references=True,
                       unreadable_fix="check the path, or pass another with -c/--config")
    problems = (_literal_secrets(config_path, loaded) + _unknown_schedule_systems(loaded)
                + _duplicate_schedule_names(loaded) + _streams_sharing_an_object(loaded)
                + _rule_source_systems(loaded)
                + _opportunity_source_problems(loaded) + _no_referral_source(loaded)
                + _state_url_problems(loaded) + _state_left_behind(loaded, config_path.parent))
    try:
        config = validate_model(RefsyncConfig, loaded)
    except ConfigError as exc:
        every = sorted([*exc.problems, *problems], key=lambda p: (p.line, p.column))
        raise ConfigError(every) from None
    if problems:
        raise ConfigError(sorted(problems, key=lambda p: (p.line, p.column)))
    config = _state_beside_config(config, config_path.parent)
    return LoadedConfig(config, config_path, _resolved_secrets(loaded), loaded.source)


def _mapping_at(data: Any, key: str) -> dict[Any, Any]:
    value = data.get(key) if isinstance(data, dict) else None
    return value if isinstance(value, dict) else {}


def _list_at(data: Any, key: str) -> list[Any]:
    value = data.get(key) if isinstance(data, dict) else None
    return value if isinstance(value, list) else []


def _configured(system: Any, systems: dict[Any, Any]) -> bool:
    return isinstance(system, str) and system in systems


def _unknown_system(
    loaded: LoadedYaml, where: tuple[str | int, ...], named_by: str, system: Any,
    systems: dict[Any, Any],
) -> Problem:
    """The problem of ``named_by`` naming a system that is not under ``systems:``."""
    configured = sorted(map(str, systems))
    guess = did_you_mean(str(system), configured)
    return loaded.source.problem(
        where, f"{named_by} names system '{system}', which is not configured",
        f"did you mean '{guess}'?" if guess else f"use one of: {', '.join(configured)}",
    )


def _unknown_schedule_systems(loaded: LoadedYaml) -> list[Problem]:
    systems = _mapping_at(loaded.data, "systems")
    if not systems:
        return []  # validation says systems are missing; every name would be unknown
    problems = []
    for index, schedule in enumerate(_list_at(loaded.data, "schedules")):
        for position, system in enumerate(_list_at(schedule, "systems")):
            if isinstance(system, str) and system not in systems:
                problems.append(_unknown_system(
                    loaded, ("schedules", index, "systems", position), "schedule", system,
                    systems))
    return problems


def _duplicate_schedule_names(loaded: LoadedYaml) -> list[Problem]:
    """Each schedule is one daemon job, known by its name: a second of the same name is lost."""
    first_line: dict[str, int] = {}
    problems = []
    for index, schedule in enumerate(_list_at(loaded.data, "schedules")):
        name = schedule.get("name") if isinstance(schedule, dict) else None
        if not isinstance(name, str):
            continue
        if name in first_line:
            problems.append(loaded.source.problem(
                ("schedules", index, "name"),
                f"schedule name '{name}' is already used by the schedule at line "
                f"{first_line[name]}: the daemon runs one job per name, so one of them would "
                "never run",
                "give each schedule its own name"))
        else:
            first_line[name] = loaded.source.position(("schedules", index, "name"))[0]
    return problems


def _streams_sharing_an_object(loaded: LoadedYaml) -> list[Problem]:
    """Two streams of one system on one object would read every record twice and keep two
    cursors, two outboxes and two quarantines of the same records: refuse the second."""
    problems = []
    for system, block in _mapping_at(loaded.data, "systems").items():
        streams = block.get("streams") if isinstance(block, dict) else None
        first: dict[str, tuple[str, int]] = {}
        for stream, settings in (streams or {}).items() if isinstance(streams, dict) else ():
            name = settings.get("object") if isinstance(settings, dict) else None
            if not isinstance(name, str):
                continue
            where = ("systems", system, "streams", stream, "object")
            if name in first:
                other, line = first[name]
                problems.append(loaded.source.problem(
                    where, f"stream '{system}.{stream}' reads object '{name}', as stream "
                    f"'{system}.{other}' at line {line} does: each record would be synced twice",
                    f"use one stream for {name} (direction: both reads and writes it)"))
            else:
                first[name] = (stream, loaded.source.position(where)[0])
    return problems


def _rule_source_systems(loaded: LoadedYaml) -> list[Problem]:
    """``customers_from`` and ``open_opportunities_from`` read systems that are configured.

    Said only when some system is: with none (``systems:`` missing or misspelt), validation's
    own problem says what to fix, and every name here would be unknown.
    """
    systems = _mapping_at(loaded.data, "systems")
    if not systems:
        return []
    rules = _mapping_at(loaded.data, "rules")
    problems = []
    for rule in ("customers_from", "open_opportunities_from"):
        system = _mapping_at(rules, rule).get("system")
        if isinstance(system, str) and system not in systems:
            problems.append(_unknown_system(
                loaded, ("rules", rule, "system"), f"rules.{rule}", system, systems))
    return problems


def _no_referral_source(loaded: LoadedYaml) -> list[Problem]:
    """Only a system with ``role: prm`` creates referrals; without one, every record is ignored."""
    systems = _mapping_at(loaded.data, "systems")
    declared = [system for system in systems.values() if isinstance(system, dict)]
    roles = [system.get("role", "crm") for system in declared]
    if not declared or "prm" in roles or any(role not in _ROLES for role in roles):
        return []  # nothing to say yet, or a wrong role that validation reports itself
    return [loaded.source.problem(
        ("systems",),
        "no system has role: prm, so no record can become a referral (a system's role is crm "
        "unless it says otherwise)",
        "set role: prm on the system partners submit referrals in", key=True)]


def _state_url_problems(loaded: LoadedYaml) -> list[Problem]:
    """A ``state.url`` refsync can open: a SQLite file or a PostgreSQL database."""
    url = _mapping_at(loaded.data, "state").get("url")
    if not isinstance(url, str) or not url:
        return []  # missing or not text: validation reports it
    from refsync.state.engine import state_url_mistake

    mistake = state_url_mistake(url)
    if mistake is None:
        if _url_password(url):
            return [loaded.source.problem(
                ("state", "url"), "state.url holds a password: secrets never live in URLs "
                "(they end up in process lists, logs and shell histories)",
                "remove it from the URL and give it to refsync as PGPASSWORD, or in a "
                "~/.pgpass file (PGPASSFILE)")]
        return []
    message, fix = mistake
    return [loaded.source.problem(("state", "url"), f"state.url: {message}", fix)]


def _url_password(url: str) -> bool:
    from urllib.parse import urlsplit

    try:
        return bool(urlsplit(url).password)
    except ValueError:
        return False


def _state_left_behind(loaded: LoadedYaml, directory: Path) -> list[Problem]:
    """A relative SQLite path once read from the working directory: a database left there.

    Without this, a daemon started from the directory that holds its database would start over
    from an empty one beside the config file, and create every referral again.
    """
    written = _mapping_at(loaded.data, "state").get("url", StateConfig().url)
    if not isinstance(written, str):
        return []
    from refsync.state.engine import (
        normalise_url,
        sqlite_path,
        sqlite_url_under,
        state_url_mistake,
    )

    if state_url_mistake(written) is not None:
        return []
    beside = sqlite_path(normalise_url(sqlite_url_under(written, directory)))
    before = sqlite_path(normalise_url(sqlite_url_under(written, Path.cwd())))
    if beside is None or before is None or beside == before or path_exists(beside) \
            or not path_exists(before):
        return []
    return [loaded.source.problem(
        ("state", "url"),
        f"state.url: a relative SQLite path is read from the config file's directory, which "
        f"has no {beside.name}, but {before} exists (read from the working directory)",
        f"move {before} (with its -wal and -shm files) to {beside}, or keep it there and "
        f"write state.url: sqlite:///{before}")]


def _state_beside_config(config: RefsyncConfig, directory: Path) -> RefsyncConfig:
    """The config with a relative SQLite path in ``state.url`` made relative to ``directory``.

    Every path in the configuration is relative to the config file, wherever refsync runs from;
    so is the state database's.
    """
    from refsync.state.engine import sqlite_url_under

    url = sqlite_url_under(config.state.url, directory)
    if url == config.state.url:
        return config
    return config.model_copy(update={"state": config.state.model_copy(update={"url": url})})


def _opportunity_source_problems(loaded: LoadedYaml) -> list[Problem]:
    """``rules.open_opportunities_from`` finds accounts among those ``customers_from`` reads."""
    data = loaded.data if isinstance(loaded.data, dict) else {}
    raw_rules = data.get("rules")
    rules: dict[Any, Any] = raw_rules if isinstance(raw_rules, dict) else {}
    source = rules.get("open_opportunities_from")
    if not isinstance(source, dict):
        return []
    system = source.get("system")
    customers = rules.get("customers_from")
    if not isinstance(customers, dict):
        named = f"system: {system}, " if isinstance(system, str) else ""
        return [loaded.source.problem(
            ("rules", "open_opportunities_from"),
            "rules.open_opportunities_from needs rules.customers_from: an opportunity is "
            "matched to a referral through its account, read from customers_from",
            f"add customers_from: {{{named}object: Account}} under rules", key=True)]
    accounts_system = customers.get("system")
    systems = _mapping_at(data, "systems")
    if not _configured(system, systems):
        return []  # an unknown system is reported at its own line first
    if _configured(accounts_system, systems) and system != accounts_system:
        return [loaded.source.problem(
            ("rules", "open_opportunities_from", "system"),
            f"rules.open_opportunities_from reads system '{system}' but rules.customers_from "
            f"reads '{accounts_system}': an opportunity's account must be one customers_from "
            "reads",
            f"use system: {accounts_system}, the system customers_from reads")]
    declared = systems[system]
    connector = (declared.get("connector") if isinstance(declared, dict) else None) or system
    association = source.get("account_association")
    if connector == "hubspot" and not association:
        return [loaded.source.problem(
            ("rules", "open_opportunities_from", "system"),
            f"rules.open_opportunities_from reads HubSpot system '{system}', whose deals reach "
            "their company through associations, not a property: name the associated object "
            "type",
            "add account_association: companies (a HubSpot source reads {system: "
            f"{system}, object: deals, account_association: companies, closed_field: "
            "hs_is_closed, name_field: dealname})")]
    if connector != "hubspot" and association:
        return [loaded.source.problem(
            ("rules", "open_opportunities_from", "account_association"),
            f"rules.open_opportunities_from reads '{system}' through associations, which only "
            "HubSpot systems have",
            "remove account_association; account_field names the opportunity's account")]
    accounts_object = customers.get("object")
    if association and isinstance(accounts_object, str) and association != accounts_object:
        return [loaded.source.problem(
            ("rules", "open_opportunities_from", "account_association"),
            f"rules.open_opportunities_from finds a deal's accounts among '{association}' but "
            f"rules.customers_from reads '{accounts_object}': no deal would match an account",
            f"use account_association: {accounts_object}, the object customers_from reads")]
    return []


def is_secret_setting(name: str) -> bool:
    """Whether a connector setting holds a credential (and so must be a reference).

    A setting naming a file (``private_key_file``) holds a path, not the credential itself.
    """
    return bool(SECRET_SETTING.search(name)) and not PATH_SETTING.search(name)


def _setting_paths(data: Any, wanted: Callable[[str], bool]) -> list[tuple[str | int, ...]]:
    """Where the connector settings whose name ``wanted`` accepts are, in every system."""
    paths: list[tuple[str | int, ...]] = []
    systems = data.get("systems") if isinstance(data, dict) else None
    if not isinstance(systems, dict):
        return paths
    for name, system in systems.items():
        settings = system.get("settings") if isinstance(system, dict) else None
        if isinstance(settings, dict):
            for key in settings:
                if isinstance(key, str) and wanted(key):
                    paths.append(("systems", name, "settings", key))
    return paths


def _secret_paths(data: Any) -> list[tuple[str | int, ...]]:
    return _setting_paths(data, is_secret_setting)


def _written_value(
    text: list[str], loaded: LoadedYaml, setting: tuple[str | int, ...]
) -> tuple[int, int, str]:
    """Line, column and the text written from there on (quotes stripped) of a setting's value."""
    line, column = loaded.source.position(setting)
    raw = text[line - 1][column - 1:] if 0 < line <= len(text) else ""
    return line, column, raw.lstrip("'\"")


def _literal_secrets(path: Path, loaded: LoadedYaml) -> list[Problem]:
    text = path.read_text(encoding="utf-8").splitlines()
    problems = []
    for secret_path in _secret_paths(loaded.data):
        line, column, raw = _written_value(text, loaded, secret_path)
        if not (raw.startswith("${") or raw.startswith("file:")):
            problems.append(Problem(
                str(path), line, column,
                f"secret setting '{secret_path[-1]}' is written in the YAML",
                f"move it to an environment variable and write ${{{_env_name(secret_path)}}}, "
                "or to a file and write file:/path/to/it",
            ))
    for file_setting in _setting_paths(loaded.data, lambda name: bool(PATH_SETTING.search(name))):
        line, column, raw = _written_value(text, loaded, file_setting)
        if raw.startswith("file:"):
            problems.append(Problem(
                str(path), line, column,
                f"setting '{file_setting[-1]}' takes the path of a file, but file: would put "
                "the file's contents in its place",
                f"write the path itself: {file_setting[-1]}: /path/to/the/file",
            ))
    return problems


def _env_name(path: tuple[str | int, ...]) -> str:
    return re.sub(r"[^A-Z0-9]+", "_", f"{path[1]}_{path[-1]}".upper())


def _resolved_secrets(loaded: LoadedYaml) -> list[str]:
    values = []
    for secret_path in _secret_paths(loaded.data):
        node: Any = loaded.data
        for part in secret_path:
            node = node[part]
        if isinstance(node, str) and node:
            values.append(node)
    return values
