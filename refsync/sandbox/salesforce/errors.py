"""Salesforce error bodies, as the REST API returns them."""

from __future__ import annotations

from typing import Any

__all__ = ["ApiError", "record_error"]


class ApiError(Exception):
    """A request-level Salesforce error: HTTP ``status`` with ``[{message, errorCode, fields}]``."""

    def __init__(
        self, status: int, error_code: str, message: str, fields: list[str] | None = None
    ) -> None:
        super().__init__(f"{error_code}: {message}")
        self.status = status
        self.error_code = error_code
        self.message = message
        self.fields = fields

    def body(self) -> list[dict[str, Any]]:
        """Return the JSON error body (a one-element array)."""
        entry: dict[str, Any] = {"message": self.message, "errorCode": self.error_code}
        if self.fields is not None:
            entry["fields"] = self.fields
        return [entry]


def record_error(status_code: str, message: str, fields: list[str] | None = None) -> dict[str, Any]:
    """Return one record-level error as in sObject Collections results."""
    return {"statusCode": status_code, "message": message, "fields": fields or []}
