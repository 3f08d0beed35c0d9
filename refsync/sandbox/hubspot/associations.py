"""Associations between records (v4 API). Stored in both directions, as HubSpot does."""

from __future__ import annotations

from typing import Any

from refsync.sandbox.hubspot.schema import DEFAULT_ASSOCIATION_TYPES

__all__ = ["AssociationStore", "default_type_id"]

#: type id used for default associations between types HubSpot has no default for (custom)
_CUSTOM_DEFAULT = 1


def default_type_id(from_type: str, to_type: str) -> int:
    """The HubSpot-defined default association type id from one object type to another."""
    return DEFAULT_ASSOCIATION_TYPES.get((from_type, to_type), _CUSTOM_DEFAULT)


class AssociationStore:
    """Links ``(type, id) → (type, id)`` with their association types."""

    def __init__(self) -> None:
        self._links: dict[tuple[str, str], dict[str, dict[str, set[tuple[str, int]]]]] = {}

    def clear(self) -> None:
        """Forget every association."""
        self._links.clear()

    def add(
        self,
        from_type: str,
        from_id: str,
        to_type: str,
        to_id: str,
        types: list[tuple[str, int]] | None = None,
    ) -> None:
        """Associate two records (both directions); ``types`` default to the default label."""
        forward = types or [("HUBSPOT_DEFINED", default_type_id(from_type, to_type))]
        backward = [("HUBSPOT_DEFINED", default_type_id(to_type, from_type))]
        if types:
            backward = [(category, default_type_id(to_type, from_type)) for category, _ in types]
        self._side(from_type, from_id, to_type, to_id).update(forward)
        self._side(to_type, to_id, from_type, from_id).update(backward)

    def remove(self, from_type: str, from_id: str, to_type: str, to_id: str) -> None:
        """Drop every association between two records."""
        self._links.get((from_type, from_id), {}).get(to_type, {}).pop(to_id, None)
        self._links.get((to_type, to_id), {}).get(from_type, {}).pop(from_id, None)

    def of(self, from_type: str, from_id: str, to_type: str) -> list[dict[str, Any]]:
        """Associated records of ``to_type``, in the v4 list form."""
        targets = self._links.get((from_type, from_id), {}).get(to_type, {})
        return [
            {
                "toObjectId": int(to_id),
                "associationTypes": [
                    {"category": category, "typeId": type_id, "label": None}
                    for category, type_id in sorted(types)
                ],
            }
            for to_id, types in sorted(targets.items(), key=lambda item: int(item[0]))
        ]

    def _side(self, a_type: str, a_id: str, b_type: str, b_id: str) -> set[tuple[str, int]]:
        return self._links.setdefault((a_type, a_id), {}).setdefault(b_type, {}).setdefault(
            b_id, set())
