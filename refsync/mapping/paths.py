"""Dotted remote field paths (``fields.refsync_id``) for reading and writing nested records."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["path_getter", "path_setter", "split_path"]


def split_path(path: str) -> tuple[str, ...]:
    """Split a dotted remote path: ``"fields.refsync_id"`` → ``("fields", "refsync_id")``."""
    return tuple(path.split("."))


def path_getter(path: str) -> Callable[[Mapping[str, Any]], Any]:
    """A fast reader for ``path``: missing keys and non-dict intermediates read as ``None``."""
    parts = split_path(path)
    if len(parts) == 1:
        key = parts[0]

        def get_flat(record: Mapping[str, Any]) -> Any:
            return record.get(key)

        return get_flat

    def get_nested(record: Mapping[str, Any]) -> Any:
        current: Any = record
        for part in parts:
            # exact dicts (what connectors return) skip the slower abstract-class check
            if current.__class__ is not dict and not isinstance(current, Mapping):
                return None
            current = current.get(part)
        return current

    return get_nested


def path_setter(path: str) -> Callable[[dict[str, Any], Any], None]:
    """A writer for ``path`` that creates intermediate dicts as needed."""
    parts = split_path(path)
    if len(parts) == 1:
        key = parts[0]

        def set_flat(record: dict[str, Any], value: Any) -> None:
            record[key] = value

        return set_flat

    parents, leaf = parts[:-1], parts[-1]

    def set_nested(record: dict[str, Any], value: Any) -> None:
        current = record
        for part in parents:
            child = current.get(part)
            if not isinstance(child, dict):
                child = {}
                current[part] = child
            current = child
        current[leaf] = value

    return set_nested
