"""HubSpot CRM v3 emulator: objects, search, batch, properties, associations v4, OAuth."""

from refsync.sandbox.hubspot.emulator import PARTIAL_FAILURE_MARKER, HubSpotEmulator
from refsync.sandbox.hubspot.ratelimit import HubSpotLimits

__all__ = ["PARTIAL_FAILURE_MARKER", "HubSpotEmulator", "HubSpotLimits"]
