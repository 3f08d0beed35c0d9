"""Build a SyncEngine from a loaded configuration: connectors from the registry, mappings
compiled from their files.

This is also where the files and settings a configuration *names* are checked: each system's
connector settings, and each stream's mapping file and whether it fits the stream (its system
and object). ``refsync check`` and the commands that sync (``sync``, ``plan``, ``retry``,
``run``) run these same checks after :func:`~refsync.config.load_config`, so they can never
disagree, and every problem points at the line to change, with a fix.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from refsync.config import LoadedConfig, StreamConfig, load_config
from refsync.connectors.base import Connector, ConnectorContext, ConnectorSettings
from refsync.connectors.registry import ConnectorRegistry, UnknownConnectorError, default_registry
from refsync.errors import ConfigError, Problem
from refsync.mapping import (
    BUILTIN_PREFIX,
    builtin_mapping_names,
    default_mapping_path,
    load_mapping,
)
from refsync.mapping.compiled import CompiledMapping
from refsync.state import StateStore
from refsync.sync.bindings import StreamBinding
from refsync.sync.engine import SyncEngine
from refsync.validation import MAX_SHOWN, problems_from_validation, shortened
from refsync.yamlsource import SourceMap, did_you_mean, load_yaml

__all__ = [
    "build_bindings",
    "build_engine",
    "config_problems",
    "connector_settings",
    "every_problem",
    "load_checked",
]

ContextFactory = Callable[[str], ConnectorContext]

_PATH_SETTINGS = frozenset({"ca_bundle", "directory"})
"""Connector settings holding a path, besides those whose name ends in ``_file``."""

Location = tuple[str | int, ...]
M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class _SystemView:
    """What the checks read of one system; ``None`` where the configuration could not say."""

    connector: str | None
    settings: dict[str, Any] | None
    streams: dict[str, StreamConfig]


@dataclass(frozen=True)
class _ConfigView:
    """What the checks read of a configuration: all of a valid one, or the parts of a refused
    one that are still well formed (so their problems can be reported with the others)."""

    source: SourceMap
    base_dir: Path
    systems: dict[str, _SystemView]

    @classmethod
    def of(cls, loaded: LoadedConfig) -> _ConfigView:
        """The view of a valid configuration."""
        config = loaded.config
        systems = {
            name: _SystemView(config.connector_name(name), dict(system.settings),
                              dict(system.streams))
            for name, system in config.systems.items()
        }
        return cls(loaded.source, loaded.base_dir, systems)

    @classmethod
    def salvaged(cls, data: Any, source: SourceMap, base_dir: Path) -> _ConfigView:
        """The view of a refused configuration's data: only the parts that validate."""
        raw_systems = _mapping_at(data, "systems")
        systems = {
            str(name): _salvaged_system(str(name), raw) for name, raw in raw_systems.items()
        }
        return cls(source, base_dir, systems)

    def problem(self, where: Location, message: str, fix: str = "", *,
                key: bool = False) -> Problem:
        """A problem located in the configuration file."""
        return self.source.problem(where, message, fix, key=key)


def _mapping_at(data: Any, key: str) -> dict[Any, Any]:
    value = data.get(key) if isinstance(data, dict) else None
    return value if isinstance(value, dict) else {}


def _valid_or_none(model: type[M], raw: Any) -> M | None:
    try:
        return model.model_validate(raw) if raw is not None else None
    except ValidationError:
        return None


def _salvaged_system(name: str, raw: Any) -> _SystemView:
    if not isinstance(raw, dict):
        return _SystemView(None, None, {})
    connector = raw.get("connector", name)
    settings = raw.get("settings", {})
    streams = {
        str(stream): valid
        for stream, stream_raw in _mapping_at(raw, "streams").items()
        if (valid := _valid_or_none(StreamConfig, stream_raw)) is not None
    }
    return _SystemView(connector if isinstance(connector, str) and connector else None,
                       settings if isinstance(settings, dict) else None, streams)


def load_checked(
    path: str | Path,
    *,
    environ: Mapping[str, str] | None = None,
    registry: ConnectorRegistry | None = None,
) -> LoadedConfig:
    """Load a configuration and check everything it names, as ``refsync check`` does offline.

    Raises:
        ConfigError: with every problem at once: those of the configuration itself and, as far
            as it could be read, those of its connector settings and mapping files.
    """
    try:
        loaded = load_config(path, environ)
    except ConfigError as exc:
        raise ConfigError(every_problem(exc, path, environ=environ, registry=registry)) from None
    problems = config_problems(loaded, registry)
    if problems:
        raise ConfigError(problems)
    return loaded


def every_problem(
    error: ConfigError,
    path: str | Path,
    *,
    environ: Mapping[str, str] | None = None,
    registry: ConnectorRegistry | None = None,
) -> list[Problem]:
    """The problems of a refused configuration, with those of what it names that can be read.

    A mistake in one part of the configuration does not hide a broken mapping file or settings
    block elsewhere: the parts that are still well formed are checked too. A place already
    reported is not reported twice.
    """
    try:
        loaded = load_yaml(path, environ=environ, resolve_references=True)
    except ConfigError:
        return list(error.problems)
    view = _ConfigView.salvaged(loaded.data, loaded.source, Path(path).parent)
    reported = {(p.file, p.line, p.column) for p in error.problems}
    more = [p for p in _problems(view, registry) if (p.file, p.line, p.column) not in reported]
    return _in_reading_order([*error.problems, *more], loaded.source.file)


def config_problems(
    loaded: LoadedConfig, registry: ConnectorRegistry | None = None
) -> list[Problem]:
    """Every problem :func:`build_bindings` would refuse a valid configuration for, offline."""
    return _problems(_ConfigView.of(loaded), registry)


def _problems(view: _ConfigView, registry: ConnectorRegistry | None) -> list[Problem]:
    registry = registry or default_registry()
    problems = _validated_settings(view, registry)[1]
    problems.extend(_compiled_mappings(view, registry)[1])
    return _in_reading_order(problems, view.source.file)


def _in_reading_order(problems: Iterable[Problem], config_file: str) -> list[Problem]:
    """The configuration file's problems by position, then the other files' as found."""
    unique = list(dict.fromkeys(problems))
    in_config = sorted((p for p in unique if p.file == config_file),
                       key=lambda p: (p.line, p.column))
    return [*in_config, *(p for p in unique if p.file != config_file)]


def connector_settings(
    loaded: LoadedConfig, registry: ConnectorRegistry | None = None
) -> tuple[dict[str, ConnectorSettings], list[Problem]]:
    """Validate every system's ``settings:`` with its connector's model; collect problems.

    Settings naming a file or directory (``ca_bundle``, ``directory``, ``private_key_file``)
    are read relative to the configuration file's directory, like mapping files.
    """
    return _validated_settings(_ConfigView.of(loaded), registry)


def _validated_settings(
    view: _ConfigView, registry: ConnectorRegistry | None
) -> tuple[dict[str, ConnectorSettings], list[Problem]]:
    registry = registry or default_registry()
    validated: dict[str, ConnectorSettings] = {}
    problems: list[Problem] = []
    for name, system in view.systems.items():
        if system.connector is None or system.settings is None:
            continue
        where = ("systems", name)
        try:
            model = registry.settings_model(system.connector)
        except UnknownConnectorError as exc:
            problems.append(view.problem(
                (*where, "connector"), exc.message,
                "set 'connector:' to an installed connector", key=True))
            continue
        raw = {key: _from_config_dir(view.base_dir, value) if _names_a_path(key) else value
               for key, value in system.settings.items()}
        try:
            validated[name] = model.model_validate(raw)
        except ValidationError as exc:
            shifted = _Shifted(view.source, (*where, "settings"))
            problems.extend(problems_from_validation(exc, shifted, model))  # type: ignore[arg-type]
    return validated, problems


def _names_a_path(setting: Any) -> bool:
    return isinstance(setting, str) and (setting in _PATH_SETTINGS or setting.endswith("_file"))


def _from_config_dir(base_dir: Path, value: Any) -> Any:
    """A relative path as read from the configuration file's directory (``builtin:`` as is)."""
    if not isinstance(value, str) or not value or value.startswith(BUILTIN_PREFIX):
        return value
    path = Path(value).expanduser()
    return str(path if path.is_absolute() else base_dir / path)


class _Shifted:
    """A SourceMap view rooted at a sub-path (a system's settings block)."""

    def __init__(self, source: SourceMap, prefix: Location) -> None:
        self._source = source
        self._prefix = prefix

    def problem(self, path: Any, message: str, fix: str = "", *, key: bool = False) -> Problem:
        return self._source.problem((*self._prefix, *path), message, fix, key=key)


def _compiled_mappings(
    view: _ConfigView, registry: ConnectorRegistry
) -> tuple[dict[tuple[str, str], CompiledMapping], list[Problem]]:
    """Every stream's mapping, compiled; problems of the files and of how they fit the streams.

    A mapping is compared with its system only when the system's connector is installed (an
    unknown connector is reported with the settings, and its fix changes what to compare).
    """
    mappings: dict[tuple[str, str], CompiledMapping] = {}
    problems: list[Problem] = []
    installed = set(registry.names())
    for system_name, system in view.systems.items():
        for stream_name, stream in system.streams.items():
            where = ("systems", system_name, "streams", stream_name, "mapping")
            unreadable = _unreadable_mapping(view, where, stream.mapping)
            if unreadable is not None:
                problems.append(unreadable)
                continue
            try:
                mapping = load_mapping(_from_config_dir(view.base_dir, stream.mapping))
            except ConfigError as exc:
                problems.extend(exc.problems)
                continue
            problems.extend(_misfits(view, where, (system_name, stream_name), system, mapping,
                                     compare_system=system.connector in installed))
            mappings[(system_name, stream_name)] = mapping
    return mappings, problems


def _unreadable_mapping(view: _ConfigView, where: Location, reference: str) -> Problem | None:
    """The problem, at the config line naming it, of a mapping that cannot be opened at all."""
    if reference.startswith(BUILTIN_PREFIX):
        try:
            default_mapping_path(reference)
        except ConfigError as exc:
            unknown = exc.problems[0]
            return view.problem(where, unknown.message, unknown.fix)
        return None
    path = Path(_from_config_dir(view.base_dir, reference))
    shown = _shown_mapping(reference, path)
    try:
        with path.open("rb"):
            return None
    except FileNotFoundError:
        return view.problem(where, f"mapping file {shown} does not exist",
                            _missing_mapping_fix(reference, path))
    except IsADirectoryError:
        return view.problem(where, f"mapping {shown} is a directory, not a mapping file",
                            "name a mapping file (.yaml) in it, or use builtin:NAME")
    except OSError as exc:
        fix = (_too_long_fix(reference) if exc.errno == errno.ENAMETOOLONG
               else "check the file's permissions")
        return view.problem(where, f"cannot read mapping file {shown}: {exc.strerror or exc}",
                            fix)


def _too_long_fix(reference: str) -> str:
    """What to do about a path the system refused as too long: a name in it, or all of it."""
    if any(len(os.fsencode(part)) > _NAME_MAX for part in PurePath(reference).parts):
        return f"a file or directory name may be at most {_NAME_MAX} bytes: shorten it"
    return "the path is longer than the system allows: shorten it, or move the file nearer " \
        "the config"


_NAME_MAX = 255
"""The longest file or directory name common file systems allow, in bytes."""


def _shown_mapping(reference: str, path: Path) -> str:
    """A mapping file as a problem names it: as written, with the path it was looked for at
    when that is another (a relative one), unless that is long: then once, shortened. A long
    value that does not look like a path at all (a key or token pasted in its place) is not
    shown."""
    if len(reference) > MAX_SHOWN and "/" not in reference and \
            not reference.endswith((".yaml", ".yml")):
        return f"(a value of {len(reference)} characters, not shown)"
    both = f"{reference} ({path})"
    return both if str(path) != reference and len(both) <= MAX_SHOWN else shortened(reference)


def _missing_mapping_fix(reference: str, path: Path) -> str:
    """A mapping file with a close name next to the one named, or a shipped one."""
    siblings = [p.name for p in path.parent.glob("*.y*ml")] if path.parent.is_dir() else []
    guess = did_you_mean(path.name, siblings)
    if guess is not None:
        return f"did you mean {shortened(str(PurePath(reference).with_name(guess)))}?"
    check = "check the path (a relative one is read from the config file's directory)"
    shipped = did_you_mean(path.stem, builtin_mapping_names())
    if shipped is not None:
        return f"{check}, or use the shipped mapping {BUILTIN_PREFIX}{shipped}"
    names = ", ".join(BUILTIN_PREFIX + name for name in builtin_mapping_names())
    return f"{check}, or use a shipped mapping: {names}"


def _misfits(
    view: _ConfigView, where: Location, names: tuple[str, str], system: _SystemView,
    mapping: CompiledMapping, *, compare_system: bool,
) -> list[Problem]:
    """The problems of a stream whose mapping is for another system or object."""
    system_name, stream_name = names
    stream = system.streams[stream_name]
    problems = []
    label = f"{system_name}.{stream_name}"
    connector = system.connector or system_name
    if compare_system and mapping.system not in (system_name, connector):
        on = system_name if connector == system_name else f"{system_name} (connector {connector})"
        shipped = [BUILTIN_PREFIX + name for name in builtin_mapping_names()
                   if name.startswith(f"{connector}-")]
        fix = f"point the stream at a mapping for {connector}" + (
            f", e.g. {shipped[0]}" if shipped else "") + \
            f", or set system: {system_name} in the mapping if it is written for this system"
        problems.append(view.problem(
            where, f"stream '{label}' is on system {on} but its mapping {stream.mapping} is for "
                   f"system '{mapping.system}'", fix))
    if mapping.object != stream.object:
        problems.append(view.problem(
            where,
            f"stream '{label}' reads object '{stream.object}' but its mapping {stream.mapping} "
            f"is for '{mapping.object}'",
            "point the stream at a mapping for that object, or fix 'object:'"))
    return problems


def build_bindings(
    loaded: LoadedConfig,
    *,
    registry: ConnectorRegistry | None = None,
    context_factory: ContextFactory | None = None,
) -> list[StreamBinding]:
    """Connect every configured stream to its connector and compiled mapping.

    Nothing is contacted: connectors sign in on their first call.

    Raises:
        ConfigError: a settings block or mapping file is invalid, or a mapping is not for its
            stream's system or object (every problem at once).
    """
    registry = registry or default_registry()
    view = _ConfigView.of(loaded)
    settings, problems = _validated_settings(view, registry)
    mappings, mapping_problems = _compiled_mappings(view, registry)
    problems.extend(mapping_problems)
    if problems:
        raise ConfigError(_in_reading_order(problems, view.source.file))
    factory = context_factory or (lambda system: ConnectorContext(system=system))
    bindings = []
    for system_name, system in loaded.config.systems.items():
        connector: Connector = registry.create(
            loaded.config.connector_name(system_name), settings[system_name],
            factory(system_name))
        for stream_name, stream in system.streams.items():
            bindings.append(StreamBinding(
                system_name, stream_name, system.role, stream,
                mappings[(system_name, stream_name)], connector,
            ))
    return bindings


def build_engine(
    loaded: LoadedConfig,
    store: StateStore,
    *,
    registry: ConnectorRegistry | None = None,
    context_factory: ContextFactory | None = None,
    bindings: Sequence[StreamBinding] | None = None,
    **options: Any,
) -> SyncEngine:
    """A SyncEngine for the configuration (options go to SyncEngine: clock, instance...).

    Pass ``bindings`` already built (and so checked) with :func:`build_bindings` to use them.
    """
    if bindings is None:
        bindings = build_bindings(loaded, registry=registry, context_factory=context_factory)
    if loaded.config.instance and "instance" not in options:
        options["instance"] = loaded.config.instance
    return SyncEngine(loaded.config, store, list(bindings), **options)
