"""A partner's edit to a field the hub owns is written back over, at the next sync.

The PartnerStack mapping makes the lead's status ``hub_wins`` and its company ``partner_owned``
(the hub's value stands once the referral is submitted). refsync remembers the hash of what it
last wrote to each record, and skips a write whose payload has that hash: the record already
holds it. A partner who edits the lead afterwards changes what the record holds, so the next
sync must write the hub's values back even though they are what it wrote last time.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from refsync.config import load_config
from refsync.sandbox.config import sandbox_config
from refsync.sandbox.runner import RunningSandbox, start_sandbox
from refsync.state import StateStore
from refsync.sync.engine import SyncEngine
from refsync.sync.wiring import build_engine

AUTH = ("pk_sandbox_refsync", "sk_sandbox_refsync")


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[RunningSandbox]:
    with start_sandbox(seed="demo", ports=dict.fromkeys(
            ("salesforce", "hubspot", "partnerstack"), 0), workdir=tmp_path / "tls") as running:
        yield running


def _lead(sandbox: RunningSandbox, key: str) -> dict[str, Any]:
    return next(lead for lead in sandbox.emulators["partnerstack"].records("leads")
                if lead["key"] == key)


@pytest.fixture
def synced(
    sandbox: RunningSandbox, tmp_path: Path, state_url: str
) -> Iterator[tuple[SyncEngine, StateStore]]:
    """An engine on the sandbox after two syncs: the referrals made, the write-backs echoed."""
    config = tmp_path / "refsync.yaml"
    config.write_text(sandbox_config(sandbox.urls, sandbox.ca_bundle, state_url,
                                     comment="write-back test", instance="refsync-test"))
    with StateStore(state_url) as store:
        engine = build_engine(load_config(config), store)
        engine.run()
        engine.run()  # the write-backs come back as echoes
        yield engine, store


def test_a_partner_edit_of_hub_owned_fields_is_written_back_over(
    sandbox: RunningSandbox, synced: tuple[SyncEngine, StateStore]
) -> None:
    engine, store = synced
    submitted = [lead for lead in sandbox.emulators["partnerstack"].records("leads")
                 if lead["status"] == "new" and (lead.get("fields") or {}).get("refsync_id")]
    key = submitted[0]["key"]
    before = _lead(sandbox, key)
    edited = requests.patch(f"{sandbox.urls['partnerstack']}/api/v2/leads/{key}", auth=AUTH,
                            json={"status": "approved", "company": "Renamed GmbH"},
                            timeout=10)
    assert edited.status_code < 300, edited.text

    report = engine.run()

    after = _lead(sandbox, key)
    assert (after["status"], after["company"]) == ("new", before["company"]), after
    assert report.counts["streams"]["partnerstack.leads"]["written"] == 1, report.counts
    referral_id = before["fields"]["refsync_id"]
    referral = store.get_referral(referral_id)
    assert referral is not None
    assert (referral["status"], referral["company"]) == ("submitted", before["company"])
    # the write-back comes back as an echo: nothing more is written
    quiet = engine.run()
    assert quiet.counts["written"] == 0, quiet.counts
    assert _lead(sandbox, key)["company"] == before["company"]


def test_a_partner_edit_of_a_field_refsync_only_writes_is_written_back_over(
    sandbox: RunningSandbox, synced: tuple[SyncEngine, StateStore]
) -> None:
    """``status_reason`` goes out only (``fields.refsync_reason``: why refsync decided a
    status); a partner who edits it gets refsync's reason back, and no write follows."""
    engine, _ = synced
    explained = [lead for lead in sandbox.emulators["partnerstack"].records("leads")
                 if (lead.get("fields") or {}).get("refsync_reason")]
    key, reason = explained[0]["key"], explained[0]["fields"]["refsync_reason"]
    edited = requests.patch(f"{sandbox.urls['partnerstack']}/api/v2/leads/{key}", auth=AUTH,
                            json={"fields": {**explained[0]["fields"],
                                             "refsync_reason": "edited by the partner"}},
                            timeout=10)
    assert edited.status_code < 300, edited.text
    assert _lead(sandbox, key)["fields"]["refsync_reason"] == "edited by the partner"

    report = engine.run()

    assert _lead(sandbox, key)["fields"]["refsync_reason"] == reason
    assert report.counts["streams"]["partnerstack.leads"]["written"] == 1, report.counts
    assert engine.run().counts["written"] == 0
