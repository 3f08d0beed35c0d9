"""Per-field authority rules: who wins when the hub and a remote system disagree.

The sync engine calls :func:`decide` once per mapped field of a referral it has read from a
remote system. The function is pure: it compares the hub's value and provenance with the
remote's value and modification stamp and returns a :class:`Decision` saying which value stands,
whether the hub changes and whether the remote must be written.

=========================== ==================================================================
rule                        outcome when the values differ
=========================== ==================================================================
``two_way``                 the later change wins: remote modstamp vs the time the hub value
                            was set (ties go to the hub, which avoids ping-pong)
``remote_wins``             the remote value is copied into the hub, blank or not
``hub_wins``                the hub value is written to the remote, blank or not
``remote_wins_unless_blank`` remote wins, except a blank remote is filled from the hub
``hub_wins_unless_blank``   hub wins, except a blank hub is filled from the remote
``set_if_empty``            only blanks are filled (remote from hub, hub from remote); two
                            different non-blank values are both left alone
``partner_owned``           once the hub value has provenance (it was set at submission),
                            it stands and is written out, even when blank; before that the
                            remote value is taken
=========================== ==================================================================

Blank means ``None``, empty text or an empty list; two blanks are equal. Times without a zone
are taken as UTC. ``direction`` cuts
the outcome: an ``in`` field never writes the remote, an ``out`` field never changes the hub.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Literal

from refsync.mapping.transforms import is_blank

__all__ = ["Decision", "Direction", "FieldState", "Rule", "Winner", "decide"]


class Rule(StrEnum):
    """How a field's conflicts between the hub and one remote system are settled."""

    TWO_WAY = "two_way"
    REMOTE_WINS = "remote_wins"
    HUB_WINS = "hub_wins"
    REMOTE_WINS_UNLESS_BLANK = "remote_wins_unless_blank"
    HUB_WINS_UNLESS_BLANK = "hub_wins_unless_blank"
    SET_IF_EMPTY = "set_if_empty"
    PARTNER_OWNED = "partner_owned"


class Direction(StrEnum):
    """Which way a field moves: ``in`` (remote → hub), ``out`` (hub → remote) or ``both``."""

    IN = "in"
    OUT = "out"
    BOTH = "both"


Winner = Literal["equal", "hub", "remote", "neither"]


@dataclass(frozen=True, slots=True)
class FieldState:
    """One side's view of a field.

    Attributes:
        value: the canonical value (the remote side's value already mapped to canonical form).
        system: for the hub, the system that last set the value (its provenance); for the remote,
            the remote system's name. ``None`` when unknown / never set.
        at: for the hub, when the value was set; for the remote, the record's modification stamp.
    """

    value: Any
    system: str | None = None
    at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Decision:
    """What to do with one field.

    Attributes:
        winner: ``equal`` (nothing to do), ``hub`` or ``remote`` (whose value stands), or
            ``neither`` (the values differ and the rule leaves both alone).
        hub_value: the value the hub holds afterwards.
        remote_value: the value the remote holds afterwards.
        update_hub: whether the hub must store ``hub_value`` (with the remote's provenance).
        write_remote: whether ``remote_value`` must be written to the remote system.
        reason: one sentence for plans and logs explaining the outcome.
    """

    winner: Winner
    hub_value: Any
    remote_value: Any
    update_hub: bool
    write_remote: bool
    reason: str


def _same(left: Any, right: Any) -> bool:
    left_blank, right_blank = is_blank(left), is_blank(right)
    if left_blank or right_blank:
        return left_blank and right_blank
    return bool(left == right)


def decide(
    rule: Rule | str,
    hub: FieldState,
    remote: FieldState,
    *,
    direction: Direction | str = Direction.BOTH,
) -> Decision:
    """Settle one field between the hub and a remote system according to ``rule``.

    Args:
        rule: the field's rule from the mapping.
        hub: the hub value with its provenance (who set it and when).
        remote: the remote value (in canonical form) with the record's modification stamp.
        direction: the field's direction; ``in`` never writes the remote and ``out`` never
            updates the hub (the losing side is then simply left as it is).

    Returns:
        The decision; see the module docstring for the table of outcomes.
    """
    rule = Rule(rule)
    direction = Direction(direction)
    if _same(hub.value, remote.value):
        return Decision("equal", hub.value, remote.value, False, False, "values are equal")
    winner, reason = _winner(rule, hub, remote)
    if winner == "remote" and direction is Direction.OUT:
        return Decision("neither", hub.value, remote.value, False, False,
                        f"{reason}; but the field only flows out, so the hub keeps its value")
    if winner == "hub" and direction is Direction.IN:
        return Decision("neither", hub.value, remote.value, False, False,
                        f"{reason}; but the field only flows in, so the remote is not written")
    if winner == "remote":
        return Decision("remote", remote.value, remote.value, True, False, reason)
    if winner == "hub":
        return Decision("hub", hub.value, hub.value, False, True, reason)
    return Decision("neither", hub.value, remote.value, False, False, reason)


def _winner(rule: Rule, hub: FieldState, remote: FieldState) -> tuple[Winner, str]:
    hub_blank, remote_blank = is_blank(hub.value), is_blank(remote.value)
    if rule is Rule.TWO_WAY:
        return _latest(hub, remote)
    if rule is Rule.REMOTE_WINS:
        return "remote", "remote_wins: the remote value is authoritative"
    if rule is Rule.HUB_WINS:
        return "hub", "hub_wins: the hub value is authoritative"
    if rule is Rule.REMOTE_WINS_UNLESS_BLANK:
        if remote_blank:
            return "hub", "remote_wins_unless_blank: the remote is blank, so the hub value fills it"
        return "remote", "remote_wins_unless_blank: the remote has a value"
    if rule is Rule.HUB_WINS_UNLESS_BLANK:
        if hub_blank:
            return "remote", "hub_wins_unless_blank: the hub is blank, so the remote value fills it"
        return "hub", "hub_wins_unless_blank: the hub has a value"
    if rule is Rule.SET_IF_EMPTY:
        if remote_blank:
            return "hub", "set_if_empty: the remote field is empty, so it is set"
        if hub_blank:
            return "remote", "set_if_empty: the hub field is empty, so it takes the remote value"
        return "neither", "set_if_empty: both have values, neither is overwritten"
    if hub.system is not None:
        return "hub", f"partner_owned: set at submission by {hub.system}; never overwritten"
    return "remote", "partner_owned: not submitted yet, so the remote value is taken"


def _aware(moment: datetime | None) -> datetime | None:
    # a time without a zone is taken as UTC, so mixed inputs compare instead of raising
    if moment is not None and moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment


def _latest(hub: FieldState, remote: FieldState) -> tuple[Winner, str]:
    hub_at, remote_at = _aware(hub.at), _aware(remote.at)
    if remote_at is not None and (hub_at is None or remote_at > hub_at):
        return "remote", "two_way: the remote changed after the hub value was set"
    if hub_at is None and remote_at is None:
        if is_blank(hub.value):
            return "remote", "two_way: no change times known and the hub is blank"
        return "hub", "two_way: no change times known, the hub value stands"
    return "hub", "two_way: the hub value was set after (or with) the remote change"
