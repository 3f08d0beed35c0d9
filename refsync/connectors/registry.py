"""Connector classes found through the ``refsync.connectors`` entry-point group.

A third-party package adds a connector by declaring, in its own ``pyproject.toml``::

    [project.entry-points."refsync.connectors"]
    marketo = "refsync_marketo:MarketoConnector"

Entry points are read lazily: a connector whose module cannot be imported only fails when a
configuration uses it, with a message naming what to install.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from importlib.metadata import EntryPoint, entry_points
from typing import Any, cast

from refsync.connectors.base import Connector, ConnectorClass, ConnectorContext, ConnectorSettings
from refsync.errors import RefsyncError
from refsync.yamlsource import did_you_mean

__all__ = ["ENTRY_POINT_GROUP", "ConnectorRegistry", "UnknownConnectorError", "default_registry"]

ENTRY_POINT_GROUP = "refsync.connectors"


class UnknownConnectorError(RefsyncError):
    """A configuration names a connector that is not installed or cannot be loaded."""


def _installed_entry_points() -> Iterable[EntryPoint]:
    return entry_points(group=ENTRY_POINT_GROUP)


class ConnectorRegistry:
    """Lookup of connector classes by name (``file``, ``salesforce``, a plugin's name).

    Args:
        entry_point_source: returns the entry points to offer; defaults to the installed
            distributions' ``refsync.connectors`` group (injected in tests).
    """

    def __init__(
        self, entry_point_source: Callable[[], Iterable[EntryPoint]] = _installed_entry_points
    ) -> None:
        self._entry_point_source = entry_point_source
        self._loaded: dict[str, ConnectorClass] = {}

    def _entry_points(self) -> dict[str, EntryPoint]:
        return {ep.name: ep for ep in self._entry_point_source()}

    def names(self) -> list[str]:
        """Return the names of every registered connector, sorted."""
        return sorted(self._entry_points())

    def get(self, name: str) -> ConnectorClass:
        """Return the connector class registered as ``name``.

        Raises:
            UnknownConnectorError: no such connector (with a did-you-mean suggestion), or its
                module cannot be imported (naming the distribution to install).
        """
        if name in self._loaded:
            return self._loaded[name]
        registered = self._entry_points()
        entry_point = registered.get(name)
        if entry_point is None:
            suggestion = did_you_mean(name, registered)
            hint = f" Did you mean {suggestion!r}?" if suggestion else ""
            known = ", ".join(sorted(registered)) or "none"
            raise UnknownConnectorError(
                f"no connector named {name!r} is installed (installed: {known}).{hint} "
                f"Install the package providing it; it must register {name!r} under the "
                f"{ENTRY_POINT_GROUP!r} entry-point group."
            )
        try:
            loaded: Any = entry_point.load()
        except Exception as error:  # any import failure of a plugin is reported the same way
            package = _distribution_name(entry_point)
            raise UnknownConnectorError(
                f"connector {name!r} is registered by {package!r} but cannot be loaded "
                f"({type(error).__name__}: {error}). Install or upgrade it, with its "
                f"dependencies: pip install --upgrade {package}",
                detail=f"entry point {entry_point.value}",
            ) from error
        if not isinstance(loaded, type) or not hasattr(loaded, "from_settings"):
            raise UnknownConnectorError(
                f"connector {name!r} ({entry_point.value}) is not a connector class with "
                "Settings and from_settings: report this to its authors"
            )
        connector_class = cast(ConnectorClass, loaded)
        self._loaded[name] = connector_class
        return connector_class

    def settings_model(self, name: str) -> type[ConnectorSettings]:
        """Return the pydantic model validating a system's ``settings:`` block for ``name``."""
        return self.get(name).Settings

    def create(self, name: str, settings: Any, context: ConnectorContext) -> Connector:
        """Validate ``settings`` (a dict or a settings model) and build the connector."""
        connector_class = self.get(name)
        if not isinstance(settings, connector_class.Settings):
            settings = connector_class.Settings.model_validate(settings)
        return connector_class.from_settings(settings, context)


def _distribution_name(entry_point: EntryPoint) -> str:
    dist = getattr(entry_point, "dist", None)
    name = getattr(dist, "name", None)
    if name:
        return str(name)
    return entry_point.value.split(":", 1)[0].split(".", 1)[0]


def default_registry() -> ConnectorRegistry:
    """Return a registry over the installed ``refsync.connectors`` entry points."""
    return ConnectorRegistry()
