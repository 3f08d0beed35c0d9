"""Build a SyncEngine from a loaded configuration: connectors from the registry, mappings
compiled from their files. Connector settings are validated here with positions in the YAML."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from refsync.config import LoadedConfig
from refsync.connectors.base import Connector, ConnectorContext, ConnectorSettings
from refsync.connectors.registry import ConnectorRegistry, UnknownConnectorError, default_registry
from refsync.errors import ConfigError, Problem
from refsync.mapping import load_mapping
from refsync.mapping.compiled import CompiledMapping
from refsync.state import StateStore
from refsync.sync.bindings import StreamBinding
from refsync.sync.engine import SyncEngine
from refsync.yamlsource import problems_from_validation

__all__ = ["build_bindings", "build_engine", "connector_settings"]

ContextFactory = Callable[[str], ConnectorContext]


def connector_settings(
    loaded: LoadedConfig, registry: ConnectorRegistry | None = None
) -> tuple[dict[str, ConnectorSettings], list[Problem]]:
    """Validate every system's ``settings:`` with its connector's model; collect problems."""
    registry = registry or default_registry()
    validated: dict[str, ConnectorSettings] = {}
    problems: list[Problem] = []
    for system in loaded.config.systems:
        name = loaded.config.connector_name(system)
        where = ("systems", system)
        try:
            model = registry.settings_model(name)
        except UnknownConnectorError as exc:
            problems.append(loaded.source.problem(
                (*where, "connector"), exc.message,
                "set 'connector:' to an installed connector", key=True))
            continue
        raw = dict(loaded.config.systems[system].settings)
        ca_bundle = raw.get("ca_bundle")
        if isinstance(ca_bundle, str) and ca_bundle and not Path(ca_bundle).is_absolute():
            raw["ca_bundle"] = str(loaded.base_dir / ca_bundle)
        directory = raw.get("directory")
        if isinstance(directory, str) and directory and not Path(directory).is_absolute():
            raw["directory"] = str(loaded.base_dir / directory)
        try:
            validated[system] = model.model_validate(raw)
        except ValidationError as exc:
            shifted = _Shifted(loaded, (*where, "settings"))
            problems.extend(problems_from_validation(exc, shifted, model))  # type: ignore[arg-type]
    return validated, problems


class _Shifted:
    """A SourceMap view rooted at a sub-path (a system's settings block)."""

    def __init__(self, loaded: LoadedConfig, prefix: tuple[str | int, ...]) -> None:
        self._source = loaded.source
        self._prefix = prefix

    def problem(self, path: Any, message: str, fix: str = "", *, key: bool = False) -> Problem:
        return self._source.problem((*self._prefix, *path), message, fix, key=key)


def build_bindings(
    loaded: LoadedConfig,
    *,
    registry: ConnectorRegistry | None = None,
    context_factory: ContextFactory | None = None,
) -> list[StreamBinding]:
    """Connect every configured stream to its connector and compiled mapping.

    Raises:
        ConfigError: a settings block or mapping file is invalid (every problem at once).
    """
    registry = registry or default_registry()
    settings, problems = connector_settings(loaded, registry)
    mappings: dict[tuple[str, str], CompiledMapping] = {}
    for system_name, system in loaded.config.systems.items():
        for stream_name, stream in system.streams.items():
            try:
                mappings[(system_name, stream_name)] = load_mapping(
                    loaded.resolve_path(stream.mapping))
            except ConfigError as exc:
                problems.extend(exc.problems)
    source = loaded.config.rules.customers_from
    if source is not None and source.system not in loaded.config.systems:
        problems.append(loaded.source.problem(
            ("rules", "customers_from", "system"),
            f"rules.customers_from names system '{source.system}', which is not configured",
            f"use one of: {', '.join(loaded.config.systems)}"))
    if problems:
        raise ConfigError(problems)
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
    **options: Any,
) -> SyncEngine:
    """A SyncEngine for the configuration (options go to SyncEngine: clock, instance...)."""
    bindings = build_bindings(loaded, registry=registry, context_factory=context_factory)
    if loaded.config.instance and "instance" not in options:
        options["instance"] = loaded.config.instance
    return SyncEngine(loaded.config, store, bindings, **options)
