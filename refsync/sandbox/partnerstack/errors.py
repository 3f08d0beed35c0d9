"""PartnerStack answers: the ``{data, message, status}`` envelope for successes and errors."""

from __future__ import annotations

from typing import Any

__all__ = ["PartnerStackError", "envelope", "error_envelope"]


def envelope(data: Any, message: str, status: int = 200) -> dict[str, Any]:
    """A successful answer: ``{"data": ..., "message": ..., "status": ...}``."""
    return {"data": data, "message": message, "status": status}


def error_envelope(
    status: int, message: str, errors: dict[str, list[str]] | None = None
) -> dict[str, Any]:
    """An error answer: the same envelope with ``data: null`` and, for 400s, field errors."""
    body: dict[str, Any] = {"data": None, "message": message, "status": status}
    if errors:
        body["errors"] = errors
    return body


class PartnerStackError(Exception):
    """An error answer raised inside the emulator; the routes turn it into HTTP.

    Args:
        status: HTTP status.
        message: the envelope's ``message``.
        errors: field name → problems (validation errors only).
    """

    def __init__(
        self, status: int, message: str, errors: dict[str, list[str]] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.errors = errors

    @property
    def body(self) -> dict[str, Any]:
        """The JSON body of the answer."""
        return error_envelope(self.status, self.message, self.errors)

    @classmethod
    def invalid(cls, errors: dict[str, list[str]]) -> PartnerStackError:
        """A 400 listing every invalid field."""
        return cls(400, "Invalid request: " + "; ".join(
            f"{field}: {' '.join(problems)}" for field, problems in sorted(errors.items())), errors)
