"""HTTP routes of the HubSpot emulator (CRM v3 objects, properties, v4 associations, OAuth).

Every API call goes through the same steps, in the real API's order: authenticate the bearer
token, count the call against the rate limits (429 past them), run the operation under the
emulator's lock, and answer with the usage headers.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from refsync.sandbox.core import record_faults
from refsync.sandbox.hubspot import batch
from refsync.sandbox.hubspot.errors import HubSpotApiError, new_correlation_id

if TYPE_CHECKING:
    from refsync.sandbox.hubspot.emulator import HubSpotEmulator

__all__ = ["hubspot_routes"]

Handler = Callable[[Request, Any], tuple[int, Any]]


def _respond(status: int, payload: Any, headers: dict[str, str]) -> Response:
    if payload is None:
        return Response(status_code=status, headers=headers)
    return JSONResponse(payload, status_code=status, headers=headers)


async def _json(request: Request) -> Any:
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise HubSpotApiError.validation(f"Invalid input JSON on line 1: {exc}") from exc


def _int(request: Request, name: str, default: int) -> int:
    value = request.query_params.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise HubSpotApiError.validation(f"{name} must be an integer; got {value!r}") from None


def _bool(request: Request, name: str) -> bool:
    return request.query_params.get(name, "false").lower() == "true"


def _names(request: Request) -> list[str] | None:
    names = [n.strip() for value in request.query_params.getlist("properties")
             for n in value.split(",") if n.strip()]
    return names or None


def hubspot_routes(emulator: HubSpotEmulator) -> list[BaseRoute]:
    """Build the API routes served for ``emulator``."""
    portal = emulator.portal

    def endpoint(
        handler: Handler, *, search: bool = False
    ) -> Callable[[Request], Awaitable[Response]]:
        async def serve(request: Request) -> Response:
            headers = emulator.limiter.headers(daily_headers=True)
            try:
                private_app = emulator.tokens.authenticate(request.headers.get("authorization"))
                headers = emulator.limiter.admit(search=search, daily_headers=private_app)
                body = await _json(request) if request.method in ("POST", "PATCH", "PUT") else None
                with emulator.lock:
                    status, payload = handler(request, body)
            except HubSpotApiError as exc:
                return _respond(exc.status, exc.body, {**headers, **exc.headers})
            return _respond(status, payload, headers)

        return serve

    def p(request: Request, name: str) -> str:
        return str(request.path_params[name])

    # ------------------------------------------------------------ objects
    def list_objects(request: Request, _: Any) -> tuple[int, Any]:
        return 200, portal.list_page(
            p(request, "object_type"), limit=_int(request, "limit", 10),
            after=request.query_params.get("after"), properties=_names(request),
            archived=_bool(request, "archived"))

    def create_object(request: Request, body: Any) -> tuple[int, Any]:
        return 201, portal.create(p(request, "object_type"), body)

    def get_object(request: Request, _: Any) -> tuple[int, Any]:
        return 200, portal.get(
            p(request, "object_type"), p(request, "object_id"), properties=_names(request),
            id_property=request.query_params.get("idProperty"),
            archived=_bool(request, "archived"))

    def update_object(request: Request, body: Any) -> tuple[int, Any]:
        return 200, portal.update(p(request, "object_type"), p(request, "object_id"), body,
                                  request.query_params.get("idProperty"))

    def archive_object(request: Request, _: Any) -> tuple[int, Any]:
        portal.archive(p(request, "object_type"), p(request, "object_id"))
        return 204, None

    def search_objects(request: Request, body: Any) -> tuple[int, Any]:
        if not isinstance(body, dict):
            raise HubSpotApiError.validation("search body must be an object")
        return 200, portal.search(p(request, "object_type"), body)

    # -------------------------------------------------------------- batch
    def batch_read(request: Request, body: Any) -> tuple[int, Any]:
        return batch.batch_read(portal, p(request, "object_type"), body)

    def batch_create(request: Request, body: Any) -> tuple[int, Any]:
        return batch.batch_create(portal, p(request, "object_type"), body,
                                  record_faults(request))

    def batch_update(request: Request, body: Any) -> tuple[int, Any]:
        return batch.batch_update(portal, p(request, "object_type"), body,
                                  record_faults(request))

    def batch_upsert(request: Request, body: Any) -> tuple[int, Any]:
        return batch.batch_upsert(portal, p(request, "object_type"), body,
                                  record_faults(request))

    def batch_archive(request: Request, body: Any) -> tuple[int, Any]:
        batch.batch_archive(portal, p(request, "object_type"), body)
        return 204, None

    # --------------------------------------------------------- properties
    def list_properties(request: Request, _: Any) -> tuple[int, Any]:
        return 200, portal.properties(p(request, "object_type"))

    def get_property(request: Request, _: Any) -> tuple[int, Any]:
        return 200, portal.property(p(request, "object_type"), p(request, "property_name"))

    # ------------------------------------------------------- associations
    def associate_default(request: Request, _: Any) -> tuple[int, Any]:
        return 200, portal.associate_default(
            p(request, "from_type"), p(request, "from_id"), p(request, "to_type"),
            p(request, "to_id"))

    def list_associations(request: Request, _: Any) -> tuple[int, Any]:
        return 200, portal.associated(p(request, "from_type"), p(request, "from_id"),
                                      p(request, "to_type"), _int(request, "limit", 500))

    def batch_associate(request: Request, body: Any) -> tuple[int, Any]:
        return portal.batch_associate(p(request, "from_type"), p(request, "to_type"), body,
                                      default_only=False)

    def batch_associate_default(request: Request, body: Any) -> tuple[int, Any]:
        return portal.batch_associate(p(request, "from_type"), p(request, "to_type"), body,
                                      default_only=True)

    def batch_read_associations(request: Request, body: Any) -> tuple[int, Any]:
        return portal.batch_read_associations(p(request, "from_type"), p(request, "to_type"),
                                              body)

    async def oauth_token(request: Request) -> Response:
        raw = (await request.body()).decode("utf-8", "replace")
        try:
            form = json.loads(raw) if raw.lstrip().startswith("{") else dict(parse_qsl(raw))
            if not isinstance(form, dict):
                raise ValueError("not an object")
        except ValueError:
            return JSONResponse({"status": "BAD_REQUEST", "message": "unreadable token request",
                                 "correlationId": new_correlation_id()}, status_code=400)
        try:
            with emulator.lock:
                answer = emulator.tokens.refresh(form)
        except HubSpotApiError as exc:
            return JSONResponse(exc.body, status_code=exc.status)
        return JSONResponse(answer)

    objects = "/crm/v3/objects/{object_type}"
    assoc = "/crm/v4/associations/{from_type}/{to_type}/batch"
    return [
        Route(objects, endpoint(list_objects), methods=["GET"]),
        Route(objects, endpoint(create_object), methods=["POST"]),
        Route(objects + "/search", endpoint(search_objects, search=True), methods=["POST"]),
        Route(objects + "/batch/read", endpoint(batch_read), methods=["POST"]),
        Route(objects + "/batch/create", endpoint(batch_create), methods=["POST"]),
        Route(objects + "/batch/update", endpoint(batch_update), methods=["POST"]),
        Route(objects + "/batch/upsert", endpoint(batch_upsert), methods=["POST"]),
        Route(objects + "/batch/archive", endpoint(batch_archive), methods=["POST"]),
        Route(objects + "/{object_id}", endpoint(get_object), methods=["GET"]),
        Route(objects + "/{object_id}", endpoint(update_object), methods=["PATCH"]),
        Route(objects + "/{object_id}", endpoint(archive_object), methods=["DELETE"]),
        Route("/crm/v3/properties/{object_type}", endpoint(list_properties), methods=["GET"]),
        Route("/crm/v3/properties/{object_type}/{property_name}", endpoint(get_property),
              methods=["GET"]),
        Route("/crm/v4/objects/{from_type}/{from_id}/associations/default/{to_type}/{to_id}",
              endpoint(associate_default), methods=["PUT"]),
        Route("/crm/v4/objects/{from_type}/{from_id}/associations/{to_type}",
              endpoint(list_associations), methods=["GET"]),
        Route(assoc + "/create", endpoint(batch_associate), methods=["POST"]),
        Route(assoc + "/associate/default", endpoint(batch_associate_default), methods=["POST"]),
        Route(assoc + "/read", endpoint(batch_read_associations), methods=["POST"]),
        Route("/oauth/v1/token", oauth_token, methods=["POST"]),
    ]
