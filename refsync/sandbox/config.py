"""A refsync configuration pointing at a running sandbox: its URLs, CA bundle and test credentials.

The demo, the benchmarks, the crash harness and the tests all sync PartnerStack leads into
Salesforce and HubSpot; they differ only in a few settings. :func:`sandbox_config` writes the
common configuration and applies each caller's differences. Secrets stay out of the YAML as
``${VAR}`` references (with the sandbox's public test credentials as defaults, unless the caller
sets them in the environment).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

__all__ = ["SANDBOX_CREDENTIALS", "sandbox_config"]

SANDBOX_CREDENTIALS: dict[str, str] = {
    "PARTNERSTACK_SECRET": "sk_sandbox_refsync",
    "SALESFORCE_SECRET": "refsync-sandbox-secret",
    "HUBSPOT_TOKEN": "pat-sandbox-refsync",
}
"""The emulators' fixed test secrets, by the suffix of the variable that carries them."""


def sandbox_config(
    urls: Mapping[str, str],
    ca_bundle: Path | str,
    state_url: str,
    *,
    comment: str,
    instance: str | None = None,
    env_prefix: str = "SANDBOX",
    secret_defaults: bool = True,
    settings: Mapping[str, Mapping[str, Any]] | None = None,
    streams: Mapping[str, Mapping[str, Any]] | None = None,
    top: Mapping[str, Any] | None = None,
) -> str:
    """The configuration text for a sandbox started with ``urls`` and ``ca_bundle``.

    Args:
        urls: each emulator's base URL (``RunningSandbox.urls``).
        ca_bundle: the CA bundle that signs the Salesforce emulator's certificate.
        state_url: the state store's URL.
        comment: the first line of the file, saying who wrote it.
        instance: the ``instance:`` name (none: the process's host and pid).
        env_prefix: secrets are read from ``{env_prefix}_PARTNERSTACK_SECRET`` and so on.
        secret_defaults: give those references the sandbox's credentials as defaults
            (``${VAR:-value}``); without them the variables must be set.
        settings: extra connector settings by system; a ``None`` value removes a setting.
        streams: extra stream keys by ``system.stream``; a ``None`` value removes a key.
        top: top-level keys to set (``daemon``, ``schedules``, ``logging``…); ``None`` removes.
    """

    def secret(suffix: str) -> str:
        variable = f"{env_prefix}_{suffix}"
        return f"${{{variable}:-{SANDBOX_CREDENTIALS[suffix]}}}" if secret_defaults \
            else f"${{{variable}}}"

    config: dict[str, Any] = {
        "version": 1,
        "instance": instance,
        "state": {"url": state_url},
        "systems": {
            "partnerstack": {
                "role": "prm",
                "settings": {
                    "base_url": f"{urls['partnerstack']}/api/v2",
                    "public_key": "pk_sandbox_refsync",
                    "secret_key": secret("PARTNERSTACK_SECRET"),
                    "settle_lag_seconds": 0,
                },
                "streams": {"leads": {"object": "leads", "direction": "both",
                                      "mapping": "builtin:partnerstack-leads"}},
            },
            "salesforce": {
                "role": "crm",
                "settings": {
                    "base_url": urls["salesforce"],
                    "consumer_key": "refsync-sandbox-key",
                    "consumer_secret": secret("SALESFORCE_SECRET"),
                    "ca_bundle": str(ca_bundle),
                    "settle_lag_seconds": 0,
                },
                "streams": {"leads": {"object": "Lead", "direction": "both",
                                      "mapping": "builtin:salesforce-lead", "batch_size": 200}},
            },
            "hubspot": {
                "role": "marketing",
                "settings": {
                    "base_url": urls["hubspot"],
                    "access_token": secret("HUBSPOT_TOKEN"),
                    "settle_lag_seconds": 0,
                },
                "streams": {"contacts": {"object": "contacts", "direction": "both",
                                         "mapping": "builtin:hubspot-contacts"}},
            },
        },
        "matching": {"keys": ["email"]},
        "rules": {"protection_window_days": 90,
                  "customers_from": {"system": "salesforce", "object": "Account"},
                  "open_opportunities_from": {"system": "salesforce",
                                              "object": "Opportunity"}},
    }
    systems = config["systems"]
    for system, extra in (settings or {}).items():
        _merge(systems[system]["settings"], extra)
    for label, extra in (streams or {}).items():
        system, _, stream = label.partition(".")
        _merge(systems[system]["streams"].setdefault(stream, {}), extra)
    _merge(config, top or {})
    if config.get("instance") is None:
        config.pop("instance", None)
    text = yaml.safe_dump(config, sort_keys=False, allow_unicode=True, width=100)
    return f"# {comment}\n{text}"


def _merge(target: dict[str, Any], changes: Mapping[str, Any]) -> None:
    for key, value in changes.items():
        if value is None:
            target.pop(key, None)
        else:
            target[key] = value
