"""Syncing through 429s, 5xx, slow answers, expired tokens and refused records: every referral
ends up synced or quarantined with its reason, none missing, none duplicated."""

from __future__ import annotations

from pathlib import Path

import pytest

from refsync.testing.soak import SoakOptions, run_soak

pytestmark = pytest.mark.slow


def test_fault_soak_accounts_for_every_referral(state_url: str, tmp_path: Path) -> None:
    options = SoakOptions(seed=3, referrals=300, rate_429=0.1, retry_after=1, rate_5xx=0.1,
                          rate_slow=0.05, slow_ms=50, rate_401=0.1, rate_record=0.02,
                          crm_batch_size=20, state_url=state_url, workdir=tmp_path / "soak")
    report = run_soak(options)
    text = "\n".join(report.lines())
    assert report.ok, text
    injected = {kind for kinds in report.injected.values() for kind in kinds}
    assert injected >= {"rate_limited", "server_error", "slow", "record_refused"}, text
    for system in ("salesforce", "hubspot"):
        assert report.injected[system].get("token_expired", 0) > 0, text  # signed in again
    assert 1.0 in report.waits  # Retry-After honoured (recorded by the injected sleep)
    assert report.audit is not None and report.recovered is not None
    for name, system in report.audit.systems.items():
        assert not system.missing and not system.duplicated, text
        assert system.synced + sum(system.quarantined.values()) == system.expected, text
        assert sum(system.quarantined.values()) > 0, text  # the refused records, with reason
        recovered = report.recovered.systems[name]
        assert recovered.synced == recovered.expected, text
