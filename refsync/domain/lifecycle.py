"""The referral status lifecycle: a state machine whose transitions are data."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from enum import StrEnum

__all__ = ["DEFAULT_TERMINAL", "DEFAULT_TRANSITIONS", "Lifecycle", "ReferralStatus"]


class ReferralStatus(StrEnum):
    """Where a referral stands, from submission to a closed deal."""

    SUBMITTED = "submitted"
    ACCEPTED = "accepted"
    QUALIFIED = "qualified"
    OPPORTUNITY = "opportunity"
    WON = "won"
    LOST = "lost"
    REJECTED = "rejected"
    DUPLICATE = "duplicate"
    EXPIRED = "expired"


_S = ReferralStatus

DEFAULT_TRANSITIONS: Mapping[ReferralStatus, frozenset[ReferralStatus]] = {
    _S.SUBMITTED: frozenset({_S.ACCEPTED, _S.REJECTED, _S.DUPLICATE, _S.EXPIRED}),
    _S.ACCEPTED: frozenset({_S.QUALIFIED, _S.REJECTED, _S.LOST}),
    _S.QUALIFIED: frozenset({_S.OPPORTUNITY, _S.LOST}),
    _S.OPPORTUNITY: frozenset({_S.WON, _S.LOST}),
    _S.WON: frozenset(),
    _S.LOST: frozenset(),
    _S.REJECTED: frozenset(),
    _S.DUPLICATE: frozenset(),
    _S.EXPIRED: frozenset(),
}
"""The lifecycle of DESIGN section 3: submitted → accepted → qualified → opportunity → won/lost."""

DEFAULT_TERMINAL = frozenset({_S.WON, _S.REJECTED, _S.DUPLICATE})


class Lifecycle:
    """A configurable status state machine.

    Args:
        transitions: for each status, the statuses it may move to. Defaults to DESIGN section 3.
        reopenable: terminal statuses a rule allows to move again (``lost`` → ``accepted``).
    """

    def __init__(
        self,
        transitions: Mapping[ReferralStatus, Iterable[ReferralStatus]] | None = None,
        reopenable: Mapping[ReferralStatus, Iterable[ReferralStatus]] | None = None,
    ) -> None:
        source = transitions if transitions is not None else DEFAULT_TRANSITIONS
        self._next: dict[ReferralStatus, frozenset[ReferralStatus]] = {
            status: frozenset(targets) for status, targets in source.items()
        }
        for status, targets in (reopenable or {}).items():
            self._next[status] = self._next.get(status, frozenset()) | frozenset(targets)

    def can_move(self, current: ReferralStatus, target: ReferralStatus) -> bool:
        """Whether ``current → target`` is legal. Staying put is always legal."""
        return current == target or target in self._next.get(current, frozenset())

    def is_forward(self, current: ReferralStatus, target: ReferralStatus) -> bool:
        """Whether ``target`` can be reached from ``current`` in one or more legal steps."""
        seen: set[ReferralStatus] = set()
        frontier = [current]
        while frontier:
            for step in self._next.get(frontier.pop(), frozenset()):
                if step == target:
                    return True
                if step not in seen:
                    seen.add(step)
                    frontier.append(step)
        return False

    def is_terminal(self, status: ReferralStatus) -> bool:
        """Whether no transition leaves ``status``."""
        return not self._next.get(status)

    def path(self, current: ReferralStatus, target: ReferralStatus) -> list[ReferralStatus] | None:
        """The shortest legal sequence of statuses after ``current`` ending at ``target``."""
        if current == target:
            return []
        parents: dict[ReferralStatus, ReferralStatus] = {}
        frontier = [current]
        while frontier:
            following: list[ReferralStatus] = []
            for status in frontier:
                for step in sorted(self._next.get(status, frozenset())):
                    if step in parents or step == current:
                        continue
                    parents[step] = status
                    if step == target:
                        route = [step]
                        while route[-1] != current and parents[route[-1]] != current:
                            route.append(parents[route[-1]])
                        return list(reversed(route))
                    following.append(step)
            frontier = following
        return None
