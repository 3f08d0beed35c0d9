"""Referral ids as people see them: the random tail in tables, and lookups by tail or prefix."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from refsync.cli import cli
from refsync.domain.ids import new_referral_id, short_referral_id
from refsync.state import StateStore
from tests.foundation.test_cli_foundation import make_config


@pytest.fixture()
def hub(tmp_path: Path) -> tuple[Path, list[str]]:
    """A config and a state store holding five referrals made one after the other."""
    url = f"sqlite:///{tmp_path / 'state.db'}"
    ids = [new_referral_id() for _ in range(5)]
    with StateStore(url) as store, store.transaction() as tx:
        tx.upsert_referrals([{"id": rid, "status": "submitted", "email": f"p{n}@example.com",
                              "source_system": "partnerstack"} for n, rid in enumerate(ids)])
    return make_config(tmp_path, url), ids


def test_referrals_made_together_show_distinct_short_ids(hub: tuple[Path, list[str]]) -> None:
    config, ids = hub
    # time-ordered ids made in the same moment share their first digits...
    assert len({rid[:8] for rid in ids}) == 1
    # ...so tables show the random tail, which tells them apart
    assert len({short_referral_id(rid) for rid in ids}) == 5
    listed = CliRunner().invoke(cli, ["referrals", "-c", str(config)], terminal_width=200)
    assert listed.exit_code == 0, listed.output
    for rid in ids:
        assert short_referral_id(rid) in listed.output


@pytest.mark.parametrize("how", ["tail", "prefix", "whole", "upper"])
def test_referrals_show_finds_a_referral_by_what_tables_show(
    hub: tuple[Path, list[str]], how: str
) -> None:
    config, ids = hub
    wanted = ids[2]
    given = {"tail": short_referral_id(wanted), "prefix": wanted[:30], "whole": wanted,
             "upper": short_referral_id(wanted).upper()}[how]
    shown = CliRunner().invoke(cli, ["referrals", "show", given, "-c", str(config), "--json"])
    assert shown.exit_code == 0, shown.output
    assert f'"id": "{wanted}"' in shown.output


@pytest.mark.parametrize(("given", "message"), [
    ("shared-prefix", "several referrals match"),
    ("0000deadbeef", "no referral '0000deadbeef'"),
    ("not-an-id!", "is not a referral id"),
])
def test_referrals_show_explains_what_it_cannot_find(
    hub: tuple[Path, list[str]], given: str, message: str
) -> None:
    config, ids = hub
    if given == "shared-prefix":
        given = ids[0][:8]
    shown = CliRunner().invoke(cli, ["referrals", "show", given, "-c", str(config)])
    assert shown.exit_code != 0
    assert message in shown.output
