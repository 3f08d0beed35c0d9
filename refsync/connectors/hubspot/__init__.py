"""The HubSpot connector (``hubspot-api-client``); see :mod:`.connector`."""

from __future__ import annotations

from refsync.connectors.hubspot.connector import HubSpotConnector, schema_from_properties
from refsync.connectors.hubspot.settings import HubSpotSettings

__all__ = ["HubSpotConnector", "HubSpotSettings", "schema_from_properties"]
