"""HubSpot error bodies, shaped like the ones the real API returns.

Every HubSpot error answer carries ``status: "error"``, a ``message``, a ``correlationId`` (a
UUID the vendor's support uses to find the call) and a ``category``; validation errors add
``errors[]`` with one entry per problem (``message``, ``code``, ``in``) and batch errors add
``context`` (for instance ``{"objectWriteTraceId": ["..."]}`` or ``{"ids": ["..."]}``).
"""

from __future__ import annotations

import json
import uuid
from typing import Any

__all__ = [
    "HubSpotApiError",
    "PropertyProblem",
    "batch_error",
    "error_body",
    "new_correlation_id",
    "property_values_error",
    "rate_limit_body",
]


def new_correlation_id() -> str:
    """A fresh correlation id, as HubSpot puts in every error answer."""
    return str(uuid.uuid4())


def error_body(
    message: str,
    category: str,
    *,
    errors: list[dict[str, Any]] | None = None,
    context: dict[str, list[str]] | None = None,
    sub_category: str | None = None,
) -> dict[str, Any]:
    """Build a HubSpot error body (``{status, message, correlationId, category, ...}``)."""
    body: dict[str, Any] = {
        "status": "error",
        "message": message,
        "correlationId": new_correlation_id(),
        "category": category,
    }
    if sub_category is not None:
        body["subCategory"] = sub_category
    if errors:
        body["errors"] = errors
    if context:
        body["context"] = context
    return body


class HubSpotApiError(Exception):
    """An error answer: raised inside the emulator, turned into an HTTP response by the routes.

    Args:
        status: HTTP status of the answer.
        body: the JSON body (see :func:`error_body`).
        headers: extra headers (e.g. ``Retry-After``).
    """

    def __init__(
        self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(body.get("message", ""))
        self.status = status
        self.body = body
        self.headers = headers or {}

    @classmethod
    def validation(cls, message: str, **kwargs: Any) -> HubSpotApiError:
        """A 400 with category ``VALIDATION_ERROR``."""
        return cls(400, error_body(message, "VALIDATION_ERROR", **kwargs))

    @classmethod
    def not_found(cls, message: str = "resource not found") -> HubSpotApiError:
        """A 404 with category ``OBJECT_NOT_FOUND``."""
        return cls(404, error_body(message, "OBJECT_NOT_FOUND"))


class PropertyProblem:
    """One invalid property value of a write, as HubSpot reports it.

    Attributes:
        name: the property name.
        code: HubSpot's error code (``INVALID_OPTION``, ``PROPERTY_DOESNT_EXIST``, ...).
        message: the human-readable reason.
    """

    __slots__ = ("code", "message", "name")

    def __init__(self, name: str, code: str, message: str) -> None:
        self.name = name
        self.code = code
        self.message = message

    def as_detail(self) -> dict[str, Any]:
        """The entry of the inline JSON list inside HubSpot's ``message``."""
        return {
            "isValid": False,
            "message": self.message,
            "error": self.code,
            "name": self.name,
            "localizedErrorMessage": self.message,
        }

    def as_error(self) -> dict[str, Any]:
        """The entry of the ``errors[]`` list."""
        return {
            "message": self.message,
            "code": self.code,
            "in": self.name,
            "context": {"propertyName": [self.name]},
        }


def property_values_error(problems: list[PropertyProblem]) -> dict[str, Any]:
    """The 400 body HubSpot returns when property values are invalid."""
    inline = json.dumps([p.as_detail() for p in problems], separators=(",", ":"))
    return error_body(
        f"Property values were not valid: {inline}",
        "VALIDATION_ERROR",
        errors=[p.as_error() for p in problems],
    )


def batch_error(
    message: str,
    category: str,
    *,
    context: dict[str, list[str]] | None = None,
    errors: list[dict[str, Any]] | None = None,
    sub_category: str | None = None,
) -> dict[str, Any]:
    """One entry of a batch response's ``errors[]`` (a full StandardError object)."""
    entry: dict[str, Any] = {
        "status": "error",
        "category": category,
        "message": message,
        "context": context or {},
        "errors": errors or [],
        "links": {},
    }
    if sub_category is not None:
        entry["subCategory"] = sub_category
    return entry


def rate_limit_body(policy_name: str, message: str, group_name: str) -> dict[str, Any]:
    """The 429 body: ``errorType RATE_LIMIT`` plus the ``policyName`` that tripped."""
    return {
        "status": "error",
        "message": message,
        "errorType": "RATE_LIMIT",
        "correlationId": new_correlation_id(),
        "policyName": policy_name,
        "groupName": group_name,
        "category": "RATE_LIMITS",
    }
