"""The connector registry over the ``refsync.connectors`` entry-point group."""

from __future__ import annotations

import tomllib
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest
from pydantic import ValidationError

from refsync.connectors.base import ConnectorContext
from refsync.connectors.file import FileConnector, FileSettings
from refsync.connectors.registry import ENTRY_POINT_GROUP, ConnectorRegistry, UnknownConnectorError

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"


def declared_entry_points() -> list[EntryPoint]:
    """The entry points this project declares, as an installed copy would expose them."""
    data = tomllib.loads(PYPROJECT.read_text())
    table = data["project"]["entry-points"][ENTRY_POINT_GROUP]
    return [EntryPoint(name, value, ENTRY_POINT_GROUP) for name, value in table.items()]


def registry(*extra: EntryPoint) -> ConnectorRegistry:
    return ConnectorRegistry(lambda: [*declared_entry_points(), *extra])


def test_builtin_connectors_are_declared() -> None:
    assert {"file", "salesforce", "hubspot", "partnerstack"} <= set(registry().names())


def test_file_connector_loads_and_exposes_its_settings_model() -> None:
    reg = registry()
    assert reg.get("file") is FileConnector
    assert reg.settings_model("file") is FileSettings


def test_create_validates_settings(tmp_path: Path) -> None:
    connector = registry().create(
        "file", {"directory": str(tmp_path)}, ConnectorContext(system="files")
    )
    assert isinstance(connector, FileConnector)
    with pytest.raises(ValidationError, match="directry"):
        registry().create("file", {"directry": "x"}, ConnectorContext(system="files"))


def test_unknown_name_suggests_the_closest() -> None:
    with pytest.raises(UnknownConnectorError, match="Did you mean 'salesforce'"):
        registry().get("salesforse")


def test_a_plugin_that_cannot_be_imported_names_what_to_install() -> None:
    broken = EntryPoint("marketo", "refsync_marketo_missing:MarketoConnector", ENTRY_POINT_GROUP)
    with pytest.raises(UnknownConnectorError) as raised:
        registry(broken).get("marketo")
    assert "pip install --upgrade refsync_marketo_missing" in raised.value.message
    assert "ModuleNotFoundError" in raised.value.message


def test_an_entry_point_that_is_not_a_connector_class_is_refused() -> None:
    odd = EntryPoint("odd", "refsync.connectors.file:_csv_value", ENTRY_POINT_GROUP)
    with pytest.raises(UnknownConnectorError, match="not a connector class"):
        registry(odd).get("odd")


def test_installed_entry_points_include_the_file_connector() -> None:
    from refsync.connectors.registry import default_registry

    assert default_registry().get("file") is FileConnector
