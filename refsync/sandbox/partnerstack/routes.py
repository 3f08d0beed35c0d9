"""HTTP routes of the PartnerStack emulator under ``/api/v2``, behind HTTP Basic auth."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from refsync.sandbox.partnerstack.errors import PartnerStackError, envelope

if TYPE_CHECKING:
    from refsync.sandbox.partnerstack.emulator import PartnerStackEmulator

__all__ = ["BASE_PATH", "partnerstack_routes"]

BASE_PATH = "/api/v2"

Handler = Callable[[Request, Any], tuple[int, dict[str, Any]]]


def _basic_credentials(header: str | None) -> tuple[str, str] | None:
    scheme, _, encoded = (header or "").partition(" ")
    if scheme.lower() != "basic" or not encoded:
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    public, sep, secret = decoded.partition(":")
    return (public, secret) if sep else None


def partnerstack_routes(emulator: PartnerStackEmulator) -> list[BaseRoute]:
    """Build the API routes served for ``emulator``."""
    program = emulator.program

    def endpoint(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        async def serve(request: Request) -> Response:
            try:
                if _basic_credentials(request.headers.get("authorization")) != emulator.keys:
                    raise PartnerStackError(401, "Unauthorized: check your public and secret key")
                body: Any = None
                if request.method in ("POST", "PATCH"):
                    raw = await request.body()
                    try:
                        body = json.loads(raw) if raw.strip() else {}
                    except ValueError:
                        raise PartnerStackError(400, "Request body is not valid JSON") from None
                with emulator.lock:
                    status, payload = handler(request, body)
            except PartnerStackError as exc:
                return JSONResponse(exc.body, status_code=exc.status)
            return JSONResponse(payload, status_code=status)

        return serve

    def resource(request: Request) -> str:
        return str(request.path_params["resource"])

    def list_items(request: Request, _: Any) -> tuple[int, dict[str, Any]]:
        name = resource(request)
        data = program.list(name, dict(request.query_params))
        return 200, envelope(data, f"Retrieved {name}")

    def get_item(request: Request, _: Any) -> tuple[int, dict[str, Any]]:
        name = resource(request)
        return 200, envelope(program.get(name, request.path_params["key"]), f"Retrieved {name}")

    def create_item(request: Request, body: Any) -> tuple[int, dict[str, Any]]:
        name = resource(request)
        item = program.create(name, body)
        return 200, envelope(item, f"Created {program.store(name).spec.singular.lower()}")

    def update_item(request: Request, body: Any) -> tuple[int, dict[str, Any]]:
        name = resource(request)
        item = program.update(name, request.path_params["key"], body)
        return 200, envelope(item, f"Updated {program.store(name).spec.singular.lower()}")

    def delete_item(request: Request, _: Any) -> tuple[int, dict[str, Any]]:
        name = resource(request)
        program.delete(name, request.path_params["key"])
        return 200, envelope(None, f"Deleted {program.store(name).spec.singular.lower()}")

    collection = BASE_PATH + "/{resource}"
    member = collection + "/{key}"
    return [
        Route(collection, endpoint(list_items), methods=["GET"]),
        Route(collection, endpoint(create_item), methods=["POST"]),
        Route(member, endpoint(get_item), methods=["GET"]),
        Route(member, endpoint(update_item), methods=["PATCH"]),
        Route(member, endpoint(delete_item), methods=["DELETE"]),
    ]
