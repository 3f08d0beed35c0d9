"""A reproducible sync scenario on the sandbox: seeded data, a running sandbox and a config.

The crash harness (:mod:`refsync.testing.chaos`) and the fault soak (:mod:`refsync.testing.soak`)
both sync a few thousand PartnerStack referrals into Salesforce and HubSpot. This module builds
that world: the seed data (the demo generator at any size, so the mix exercises the rules:
a prospect referred twice, existing customers, leads the CRM already holds, partner-set
statuses), the sandbox serving it, and a configuration pointing refsync at it with pacing
lifted so the emulators, not the client's politeness, set the pace.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from refsync.sandbox.config import sandbox_config
from refsync.sandbox.demo import generate_demo
from refsync.sandbox.hubspot.auth import OAUTH_CLIENT
from refsync.sandbox.runner import RunningSandbox, start_sandbox

__all__ = [
    "SANDBOX_SECRETS",
    "sandbox_environment",
    "scenario_config",
    "scenario_sandbox",
    "scenario_seed",
]

SYSTEMS = ("salesforce", "hubspot", "partnerstack")

#: Environment variables the scenario config reads its sandbox secrets from (secrets never
#: live in the YAML); their values are the sandbox's documented test credentials.
SANDBOX_SECRETS: dict[str, str] = {
    "SANDBOX_PARTNERSTACK_SECRET": "sk_sandbox_refsync",
    "SANDBOX_SALESFORCE_SECRET": "refsync-sandbox-secret",
    "SANDBOX_HUBSPOT_TOKEN": "pat-sandbox-refsync",
    "SANDBOX_HUBSPOT_CLIENT_SECRET": OAUTH_CLIENT["client_secret"],
    "SANDBOX_HUBSPOT_REFRESH_TOKEN": OAUTH_CLIENT["refresh_token"],
}

def scenario_seed(seed: int, referrals: int, partners: int = 12) -> dict[str, dict[str, Any]]:
    """Seed payloads for the sandbox: ``referrals`` PartnerStack leads and the CRMs around them.

    The demo generator's mix, with one change: HubSpot contacts already holding a referred
    prospect's email (outside the customers) are left out, since HubSpot refuses a second
    contact with one email and the harness wants every referral to be syncable.
    """
    data = generate_demo(seed=seed, partners=partners, referrals=max(8, referrals))
    referred = {str(lead["email"]).strip().lower() for lead in data["partnerstack"]["leads"]}
    data["hubspot"]["contacts"] = [
        contact for contact in data["hubspot"]["contacts"]
        if contact["properties"].get("lifecyclestage") == "customer"
        or str(contact["properties"].get("email") or "").strip().lower() not in referred
    ]
    return data


@contextmanager
def scenario_sandbox(
    seed_data: dict[str, dict[str, Any]], workdir: Path
) -> Iterator[RunningSandbox]:
    """Start the sandbox in this process (threads) with the data, HubSpot limits lifted."""
    with start_sandbox(seed=seed_data, ports=dict.fromkeys(SYSTEMS, 0),
                       workdir=workdir / "tls") as sandbox:
        sandbox.emulators["hubspot"].configure({"enforce_rate_limits": False})
        yield sandbox


def scenario_config(
    sandbox: RunningSandbox,
    state_url: str,
    *,
    instance: str = "refsync-scenario",
    backoff_seconds: float = 1.0,
    max_attempts: int = 5,
    hubspot_oauth: bool = False,
    crm_batch_size: int | None = None,
    lease_ttl: str = "60s",
) -> str:
    """The configuration text for a running scenario sandbox.

    Args:
        sandbox: the running sandbox.
        state_url: the state store's URL (SQLite file or PostgreSQL database).
        instance: the instance name runs are recorded under.
        backoff_seconds: first retry wait of every connector.
        max_attempts: attempts per API call, retries included.
        hubspot_oauth: sign in to HubSpot with OAuth (tokens that expire and are renewed)
            instead of the private-app token.
        crm_batch_size: records per CRM write call (default: each API's maximum).
        lease_ttl: how long the sync lease of a process that died stays taken.
    """
    http = {"backoff_seconds": backoff_seconds, "max_attempts": max_attempts}
    hubspot_auth: dict[str, Any] = {
        "access_token": None, "client_id": OAUTH_CLIENT["client_id"],
        "client_secret": "${SANDBOX_HUBSPOT_CLIENT_SECRET}",
        "refresh_token": "${SANDBOX_HUBSPOT_REFRESH_TOKEN}",
    } if hubspot_oauth else {}
    return sandbox_config(
        sandbox.urls, sandbox.ca_bundle, state_url,
        comment="A refsync configuration for the sandbox (crash harness / fault soak).",
        instance=instance, env_prefix="SANDBOX", secret_defaults=False,
        settings={
            "partnerstack": {"requests_per_minute": 1_000_000, **http},
            "salesforce": {"calls_per_second": 100_000, **http},
            "hubspot": {"search_per_second": 1000, **http, **hubspot_auth},
        },
        streams={"salesforce.leads": {"batch_size": crm_batch_size or 200},
                 "hubspot.contacts": {"batch_size": crm_batch_size or 100}},
        top={"logging": {"level": "warning"}, "daemon": {"lease_ttl": lease_ttl}},
    )


def sandbox_environment() -> dict[str, str]:
    """This process's environment plus the sandbox secrets the scenario config reads."""
    return {**os.environ, **SANDBOX_SECRETS}
