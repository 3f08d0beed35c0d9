"""Fixtures of the foundation tests."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _example_ca_bundle(tmp_path_factory: pytest.TempPathFactory,
                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Give config.example.yaml a CA bundle that exists.

    The example reads ``${SALESFORCE_CA_BUNDLE:-.refsync-sandbox/sandbox-ca.pem}``, the file
    ``refsync sandbox`` writes, and ``check`` refuses a CA bundle that does not exist; these
    tests run without a sandbox. A test that needs the real bundle sets the variable itself.
    """
    bundle = tmp_path_factory.getbasetemp() / "stand-in-ca.pem"
    if not bundle.exists():
        bundle.write_text("-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n")
    monkeypatch.setenv("SALESFORCE_CA_BUNDLE", str(Path(bundle)))
