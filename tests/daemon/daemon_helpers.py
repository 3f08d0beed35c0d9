"""Helpers of the daemon tests, in a module of their own name so that no other directory's
``conftest`` can shadow them when several test directories run in one command."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from refsync.sandbox.runner import RunningSandbox

WriteConfig = Callable[..., Path]
"""The ``write_config`` fixture: writes a sandbox config and returns its path."""


def assert_each_referral_once(sandbox: RunningSandbox, links: dict[str, int]) -> None:
    """Every referral refsync wrote is in Salesforce and HubSpot exactly once."""
    leads = [r["Refsync_Id__c"] for r in sandbox.emulators["salesforce"].records("Lead")
             if r.get("Refsync_Id__c")]
    assert len(leads) == len(set(leads)) == links["salesforce"] > 0
    contacts = [r["properties"]["refsync_id"]
                for r in sandbox.emulators["hubspot"].records("contacts")
                if r.get("properties", {}).get("refsync_id")]
    assert len(contacts) == len(set(contacts)) == links["hubspot"] > 0
