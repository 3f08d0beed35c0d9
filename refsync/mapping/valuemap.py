"""Value maps: translate picklist values between a remote system and the hub, both ways."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any

from refsync.errors import RecordError
from refsync.mapping.transforms import is_blank

__all__ = ["UnmappedValueError", "ValueMap", "many_to_one", "match_key", "value_key"]


class UnmappedValueError(RecordError):
    """A value is missing from a value map; ``value`` and ``allowed`` say what came and fits."""

    def __init__(self, message: str, *, value: Any, allowed: list[str], field: str | None) -> None:
        super().__init__(
            message,
            code="unmapped_value",
            field=field,
            detail=f"value={value!r}; allowed={allowed!r}"[:2000],
        )
        self.value = value
        self.allowed = allowed


def value_key(value: Any) -> str:
    """The text form used for look-ups: a remote boolean ``True`` finds the key ``true``.

    Mapping files keep plain keys as written (``yes`` stays ``"yes"``), so this only matters for
    values that really are booleans or numbers: a checkbox a connector returns, a Python caller's
    pairs. A decimal is written without trailing zeros or an exponent, so an amount the state
    store gives back as ``1000000.00`` finds the value map's ``1000000``.
    """
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Decimal) and value.is_finite():
        return format(value.normalize(), "f")
    return str(value)


def match_key(value: Any) -> str:
    """The form reading matches a remote value by: its text, without case or surrounding spaces.

    Two keys of one value map with the same ``match_key`` (``Qualified`` and ``qualified ``)
    cannot be told apart when a remote value is read in another spelling; the mapping checks
    refuse them.
    """
    return value_key(value).strip().casefold()


def many_to_one(pairs: Mapping[str, Any]) -> dict[Any, list[str]]:
    """Canonical values that several remote values map to, with those remote values."""
    by_canonical: dict[Any, list[str]] = {}
    for remote, canonical in pairs.items():
        by_canonical.setdefault(canonical, []).append(remote)
    return {canonical: remotes for canonical, remotes in by_canonical.items() if len(remotes) > 1}


class ValueMap:
    """A two-way value map built from ``remote → canonical`` pairs.

    The ``canonical → remote`` direction is the inverse of the pairs. When several remote values
    map to one canonical value, ``out_choice`` must say which remote value to write for it (the
    loader reports a missing choice as a validation error; here it raises ``ValueError``).
    ``out_choice`` may also name what to write for canonical values the pairs never produce
    (hub statuses the remote has no value of its own for); those are written only.

    Reading is forgiving about case and surrounding spaces (``" working - contacted"`` finds
    ``"Working - Contacted"``); writing produces the exact remote value. A value missing from the
    map is a :class:`~refsync.errors.RecordError` with code ``unmapped_value`` naming the value
    and the allowed ones. Blank values pass through as ``None``.

    Args:
        pairs: remote value → canonical value.
        out_choice: canonical value → remote value, for many-to-one maps.
        field: the canonical field, used in error messages.
    """

    __slots__ = ("_exact", "_field", "_folded", "_out", "pairs")

    def __init__(
        self,
        pairs: Mapping[Any, Any],
        out_choice: Mapping[Any, Any] | None = None,
        *,
        field: str | None = None,
    ) -> None:
        self.pairs: dict[str, Any] = {value_key(k): v for k, v in pairs.items()}
        self._field = field
        self._exact = dict(self.pairs)
        self._folded = {match_key(k): v for k, v in self.pairs.items()}
        choice = {value_key(k): value_key(v) for k, v in (out_choice or {}).items()}
        out: dict[str, str] = {}
        for canonical, remotes in _group(self.pairs.items()).items():
            if len(remotes) == 1:
                out[canonical] = remotes[0]
            elif canonical in choice:
                out[canonical] = choice[canonical]
            else:
                raise ValueError(
                    f"{', '.join(map(repr, remotes))} all map to {canonical!r}; "
                    f"add out: {{{canonical}: ...}} to say which one to write"
                )
        for canonical, remote in choice.items():
            # extra out-only entries: hub values the remote has no value of its own for
            out.setdefault(canonical, remote)
        self._out = out

    @property
    def remote_values(self) -> list[str]:
        """The remote values the map knows, in file order."""
        return list(self.pairs)

    @property
    def canonical_values(self) -> list[str]:
        """The canonical values the map can produce, without repeats."""
        return list(self._out)

    def to_canonical(self, value: Any) -> Any:
        """Translate a remote value into the hub's value."""
        if is_blank(value):
            return None
        key = value_key(value)
        try:
            return self._exact[key]
        except KeyError:
            pass
        found = self._folded.get(match_key(key), _MISSING)
        if found is _MISSING:
            raise self._unmapped(value, self.remote_values, "incoming")
        return found

    def to_remote(self, value: Any) -> Any:
        """Translate a hub value into the remote's value."""
        if is_blank(value):
            return None
        found = self._out.get(value_key(value), _MISSING)
        if found is _MISSING:
            raise self._unmapped(value, self.canonical_values, "outgoing")
        return found

    def _unmapped(self, value: Any, allowed: Iterable[str], which: str) -> UnmappedValueError:
        allowed_list = list(allowed)
        where = f" for {self._field}" if self._field else ""
        return UnmappedValueError(
            f"{which} value {str(value)[:80]!r}{where} is not in the value map; "
            f"allowed: {', '.join(repr(item) for item in allowed_list)}",
            value=value,
            allowed=allowed_list,
            field=self._field,
        )


_MISSING: Any = object()


def _group(pairs: Iterable[tuple[str, Any]]) -> dict[str, list[str]]:
    grouped: dict[str, list[str]] = {}
    for remote, canonical in pairs:
        grouped.setdefault(value_key(canonical), []).append(remote)
    return grouped
