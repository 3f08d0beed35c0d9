"""Reads and updates by a list of ids (``IN``) give the same rows whatever the list's length.

Lists are sent with statements prepared for a few padded lengths (the last value repeated), and
lists longer than the longest prepared one go SQLAlchemy's way: every length must find exactly
the rows asked for, on both backends.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

from refsync.state import StateStore
from refsync.state.store import _LONGEST_PREPARED_LIST

MOMENT = datetime(2024, 1, 5, 10, 0, tzinfo=UTC)

LENGTHS = [1, 2, 3, 5, 63, 64, 65, 130]


def _ids(count: int) -> list[str]:
    return [str(uuid.UUID(int=index + 1)) for index in range(count)]


def _write(store: StateStore, ids: list[str]) -> dict[str, int]:
    """A referral, a link and an outbox row per id; the outbox row ids by referral."""
    with store.transaction() as tx:
        tx.upsert_referrals([{"id": referral_id, "email": f"p{index}@acme.example",
                              "email_norm": f"p{index}@acme.example",
                              "submitted_at": MOMENT, "custom": {"n": index}}
                             for index, referral_id in enumerate(ids)])
        tx.upsert_links([{"system": "salesforce", "object": "Lead", "external_id": f"00Q{index}",
                          "canonical_id": referral_id, "last_read_hash": "h"}
                         for index, referral_id in enumerate(ids)])
        tx.enqueue([{"referral_id": referral_id, "system": "salesforce", "stream": "leads",
                     "payload": {"version": 1}, "payload_hash": "v1", "next_attempt_at": MOMENT}
                    for referral_id in ids])
    with store.snapshot() as view:
        due = view.due_writes("salesforce", "leads", limit=len(ids) + 1, now=MOMENT)
    return {row["referral_id"]: row["id"] for row in due}


@pytest.mark.parametrize("length", LENGTHS)
def test_every_list_length_reads_exactly_its_rows(tmp_path: Path, length: int) -> None:
    stored = _ids(200)
    with StateStore(f"sqlite:///{tmp_path / 'state.db'}") as store:
        _write(store, stored)
        asked = [*stored[::-1][:length - 1], "00000000-0000-0000-0000-00000000dead"]
        expected = {referral_id for referral_id in asked if referral_id in stored}
        with store.snapshot() as view:
            referrals = view.referrals(asked)
            links = view.links_by_canonical("salesforce", "Lead", asked)
            by_external = view.links_by_external(
                "salesforce", "Lead", [f"00Q{stored.index(i)}" for i in expected] + ["none"])
            matching = view.referrals_by(
                "email_norm", [referrals[i]["email_norm"] for i in expected] + ["none"])
    assert set(referrals) == expected
    assert all(row["custom"] == {"n": stored.index(i)} for i, row in referrals.items())
    assert all(row["submitted_at"] == MOMENT for row in referrals.values())
    assert set(links) == expected
    assert {row["canonical_id"] for row in by_external.values()} == expected
    assert sorted(row["id"] for row in matching) == sorted(expected)


def test_lists_longer_than_the_prepared_ones_read_and_update_all_their_rows(
    state_url: str,
) -> None:
    stored = _ids(_LONGEST_PREPARED_LIST + 10)
    with StateStore(state_url) as store:
        outbox = _write(store, stored)
        with store.snapshot() as view:
            assert set(view.referrals(stored)) == set(stored)
            assert set(view.links_by_canonical("salesforce", "Lead", stored)) == set(stored)
        with store.transaction() as tx:
            tx.finish_outbox([outbox[referral_id] for referral_id in stored[:-3]])
        with store.snapshot() as view:
            left = view.due_writes("salesforce", "leads", limit=100, now=MOMENT)
    assert [row["referral_id"] for row in left] == stored[-3:]


@pytest.mark.parametrize("length", [1, 3, 64, 65, 200])
def test_finishing_outbox_rows_marks_exactly_those(state_url: str, length: int) -> None:
    stored = _ids(260)
    with StateStore(state_url) as store:
        outbox = _write(store, stored)
        finished = stored[5:5 + length]
        with store.transaction() as tx:
            tx.finish_outbox([outbox[referral_id] for referral_id in finished],
                             state="quarantined")
        with store.snapshot() as view:
            left = view.due_writes("salesforce", "leads", limit=300, now=MOMENT)
            states = {row["referral_id"]: row["state"]
                      for row in view.outbox_rows(list(outbox.values()))}
    assert [row["referral_id"] for row in left] == [i for i in stored if i not in finished]
    assert {i for i, state in states.items() if state == "quarantined"} == set(finished)


def test_referrals_read_only_the_columns_asked_for(state_url: str) -> None:
    stored = _ids(3)
    with StateStore(state_url) as store:
        _write(store, stored)
        with store.snapshot() as view:
            full = view.referrals(stored)
            some = view.referrals(stored, provenance=False,
                                  columns=["email", "custom", "custom.tier", "no_such_column"])
            only_id = view.referrals(stored, columns=[])
    assert set(some) == set(stored)
    for referral_id, row in some.items():
        assert row == {key: full[referral_id][key] for key in ("id", "email", "custom")}
    assert all(row == {"id": referral_id} for referral_id, row in only_id.items())
