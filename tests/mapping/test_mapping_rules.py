"""decide(): every rule against every situation, as one table."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from refsync.mapping import Decision, Direction, FieldState, Rule, decide

EARLY = datetime(2026, 1, 1, 9, 0, tzinfo=UTC)
LATE = datetime(2026, 1, 2, 9, 0, tzinfo=UTC)

HUB_OLD = FieldState("hub", "partnerstack", EARLY)
HUB_NEW = FieldState("hub", "partnerstack", LATE)
HUB_BLANK = FieldState(None, "partnerstack", EARLY)
HUB_UNSET = FieldState(None)  # never set: no provenance
HUB_UNTIMED = FieldState("hub")
REMOTE_OLD = FieldState("remote", "salesforce", EARLY)
REMOTE_NEW = FieldState("remote", "salesforce", LATE)
REMOTE_BLANK = FieldState("", "salesforce", LATE)
REMOTE_UNTIMED = FieldState("remote", "salesforce")

# (rule, hub, remote) → (winner, hub value after, remote value after, update_hub, write_remote)
TABLE = [
    # two_way: latest change wins, ties go to the hub
    (Rule.TWO_WAY, HUB_OLD, REMOTE_NEW, "remote", "remote", "remote", True, False),
    (Rule.TWO_WAY, HUB_NEW, REMOTE_OLD, "hub", "hub", "hub", False, True),
    (Rule.TWO_WAY, HUB_OLD, REMOTE_OLD, "hub", "hub", "hub", False, True),
    (Rule.TWO_WAY, HUB_OLD, REMOTE_BLANK, "remote", "", "", True, False),
    (Rule.TWO_WAY, HUB_UNSET, REMOTE_OLD, "remote", "remote", "remote", True, False),
    (Rule.TWO_WAY, HUB_NEW, REMOTE_UNTIMED, "hub", "hub", "hub", False, True),
    (Rule.TWO_WAY, HUB_UNTIMED, REMOTE_UNTIMED, "hub", "hub", "hub", False, True),
    (Rule.TWO_WAY, HUB_UNSET, REMOTE_UNTIMED, "remote", "remote", "remote", True, False),
    # remote_wins / hub_wins: unconditional, blanks included
    (Rule.REMOTE_WINS, HUB_NEW, REMOTE_OLD, "remote", "remote", "remote", True, False),
    (Rule.REMOTE_WINS, HUB_OLD, REMOTE_BLANK, "remote", "", "", True, False),
    (Rule.HUB_WINS, HUB_OLD, REMOTE_NEW, "hub", "hub", "hub", False, True),
    (Rule.HUB_WINS, HUB_BLANK, REMOTE_NEW, "hub", None, None, False, True),
    # ..._unless_blank: a blank side is filled from the other
    (Rule.REMOTE_WINS_UNLESS_BLANK, HUB_NEW, REMOTE_OLD, "remote", "remote", "remote", True,
     False),
    (Rule.REMOTE_WINS_UNLESS_BLANK, HUB_OLD, REMOTE_BLANK, "hub", "hub", "hub", False, True),
    (Rule.HUB_WINS_UNLESS_BLANK, HUB_OLD, REMOTE_NEW, "hub", "hub", "hub", False, True),
    (Rule.HUB_WINS_UNLESS_BLANK, HUB_BLANK, REMOTE_NEW, "remote", "remote", "remote", True,
     False),
    # set_if_empty: only blanks are filled
    (Rule.SET_IF_EMPTY, HUB_OLD, REMOTE_BLANK, "hub", "hub", "hub", False, True),
    (Rule.SET_IF_EMPTY, HUB_BLANK, REMOTE_NEW, "remote", "remote", "remote", True, False),
    (Rule.SET_IF_EMPTY, HUB_OLD, REMOTE_NEW, "neither", "hub", "remote", False, False),
    # partner_owned: fixed once submitted (even blank), taken from the remote before that
    (Rule.PARTNER_OWNED, HUB_OLD, REMOTE_NEW, "hub", "hub", "hub", False, True),
    (Rule.PARTNER_OWNED, HUB_BLANK, REMOTE_NEW, "hub", None, None, False, True),
    (Rule.PARTNER_OWNED, HUB_UNSET, REMOTE_NEW, "remote", "remote", "remote", True, False),
]


@pytest.mark.parametrize(
    ("rule", "hub", "remote", "winner", "hub_after", "remote_after", "update_hub", "write_remote"),
    TABLE,
)
def test_rule_table(
    rule: Rule, hub: FieldState, remote: FieldState, winner: str, hub_after: object,
    remote_after: object, update_hub: bool, write_remote: bool,
) -> None:
    decision = decide(rule, hub, remote)
    assert (decision.winner, decision.hub_value, decision.remote_value, decision.update_hub,
            decision.write_remote) == (winner, hub_after, remote_after, update_hub, write_remote)
    assert decision.reason.startswith(rule.value)


def test_every_rule_is_in_the_table() -> None:
    assert {row[0] for row in TABLE} == set(Rule)


@pytest.mark.parametrize("rule", list(Rule))
@pytest.mark.parametrize(
    ("hub_value", "remote_value"), [("same", "same"), (None, ""), ("", "  "), (None, None)]
)
def test_equal_values_never_change_anything(rule: Rule, hub_value: object,
                                            remote_value: object) -> None:
    decision = decide(rule, FieldState(hub_value, "x", EARLY), FieldState(remote_value, "y", LATE))
    assert decision == Decision("equal", hub_value, remote_value, False, False, "values are equal")


@pytest.mark.parametrize("rule", list(Rule))
def test_direction_in_never_writes_the_remote(rule: Rule) -> None:
    for hub, remote in ((HUB_OLD, REMOTE_NEW), (HUB_NEW, REMOTE_OLD), (HUB_OLD, REMOTE_BLANK)):
        decision = decide(rule, hub, remote, direction=Direction.IN)
        assert not decision.write_remote
        if decision.winner == "neither":
            assert not decision.update_hub and decision.remote_value == remote.value


@pytest.mark.parametrize("rule", list(Rule))
def test_direction_out_never_updates_the_hub(rule: Rule) -> None:
    for hub, remote in ((HUB_OLD, REMOTE_NEW), (HUB_NEW, REMOTE_OLD), (HUB_BLANK, REMOTE_NEW)):
        decision = decide(rule, hub, remote, direction="out")
        assert not decision.update_hub
        assert decision.hub_value == hub.value


def test_rule_names_are_accepted_as_text() -> None:
    assert decide("hub_wins", HUB_OLD, REMOTE_NEW).winner == "hub"
    with pytest.raises(ValueError):
        decide("loudest_wins", HUB_OLD, REMOTE_NEW)


def test_naive_and_aware_times_compare_as_utc() -> None:
    naive_late = FieldState("remote", "salesforce", LATE.replace(tzinfo=None))
    assert decide(Rule.TWO_WAY, HUB_OLD, naive_late).winner == "remote"
    naive_early = FieldState("remote", "salesforce", EARLY.replace(tzinfo=None))
    assert decide(Rule.TWO_WAY, HUB_NEW, naive_early).winner == "hub"
