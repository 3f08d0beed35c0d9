"""The Salesforce REST emulator (served over TLS; simple-salesforce only speaks https)."""

from __future__ import annotations

from refsync.sandbox.salesforce.emulator import SalesforceEmulator

__all__ = ["SalesforceEmulator"]
