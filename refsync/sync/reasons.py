"""Why a run did not succeed: each distinct problem said once, naming the streams it stopped."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

__all__ = ["RunReasons"]


class RunReasons:
    """Why a run did not succeed, each distinct problem said once.

    A problem that stopped several streams is said once, naming them all. A system's daily API
    allowance, spent, is one problem however many of its streams it stopped, reading or
    writing: it is said in the words of the first refusal (which say when the allowance comes
    back), with the streams whose reading and whose writes wait for the next run.
    """

    def __init__(self) -> None:
        # in the order they came: a problem by its text, a spent allowance by its system
        self._problems: dict[str | tuple[str, str], _Problem | _AllowanceSpent] = {}

    def __bool__(self) -> bool:
        return bool(self._problems)

    def add(self, problem: str, stream: str | None = None) -> None:
        """Say ``problem`` (once), naming ``stream`` among those it stopped."""
        said = self._problems.get(problem)
        if not isinstance(said, _Problem):  # a text's problem is always one
            said = self._problems[problem] = _Problem(problem)
        said.stopped(stream)

    def allowance_spent(self, system: str, stream: str, *, said: str | None = None,
                        writing: bool = False) -> None:
        """``system``'s daily API allowance stopped ``stream``: its reading, or with
        ``writing`` its writes; ``said`` is the refusal's message, when there is one."""
        spent = self._problems.get(("allowance", system))
        if not isinstance(spent, _AllowanceSpent):  # a system's allowance is always one
            spent = self._problems[("allowance", system)] = _AllowanceSpent(system)
        spent.said = spent.said or said
        waiting = spent.writing if writing else spent.reading
        if stream not in waiting:
            waiting.append(stream)

    def text(self) -> str:
        """Every problem, in the order they came, separated by semicolons."""
        return "; ".join(str(problem) for problem in self._problems.values())


@dataclass
class _Problem:
    """One reason a run did not succeed, and the streams it stopped (if it stopped any)."""

    text: str
    streams: list[str] = field(default_factory=list)

    def stopped(self, stream: str | None) -> None:
        """Name ``stream`` among those the problem stopped."""
        if stream is not None and stream not in self.streams:
            self.streams.append(stream)

    def __str__(self) -> str:
        return f"{', '.join(self.streams)}: {self.text}" if self.streams else self.text


@dataclass
class _AllowanceSpent:
    """A system's daily API allowance, spent during a run, and the streams it stopped."""

    system: str
    said: str | None = None
    reading: list[str] = field(default_factory=list)
    writing: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        waits = []
        if self.reading:
            waits.append(f"reading {_listed(self.reading)} resumes next run")
        if self.writing:
            waits.append(f"the remaining writes to {_listed(self.writing)} wait in the outbox "
                         "for the next run")
        said = self.said or f"{self.system}'s daily API allowance is spent"
        return f"{said} — {', and '.join(waits)}"


def _listed(names: Sequence[str]) -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"
