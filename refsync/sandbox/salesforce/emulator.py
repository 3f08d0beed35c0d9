"""The Salesforce REST emulator: OAuth, SOQL queries, sObjects, Collections upsert, limits.

Every ``/services/data/v{version}/...`` call needs a bearer token from
``POST /services/oauth2/token``, counts against the daily API allowance and carries the
``Sforce-Limit-Info`` header. Errors use Salesforce's bodies and codes.
"""

from __future__ import annotations

import base64
import itertools
import json
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, ClassVar
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from refsync.sandbox.core import Emulator, EmulatorRequestError, record_faults
from refsync.sandbox.faults import FaultRule, generic_presets
from refsync.sandbox.salesforce.auth import OAuthError, TokenIssuer
from refsync.sandbox.salesforce.errors import ApiError, record_error
from refsync.sandbox.salesforce.schema import ObjectDef, SchemaError, field_from_metadata
from refsync.sandbox.salesforce.simulate import simulate_sales_activity
from refsync.sandbox.salesforce.soql import compile_query, format_datetime, parse_datetime
from refsync.sandbox.salesforce.store import Clock, RecordStore, WriteOutcome
from refsync.yamlsource import did_you_mean

__all__ = ["SalesforceEmulator"]

Handler = Callable[[Request], Awaitable[Response]]

_API = "/services/data/{version}"
_MAX_COLLECTION = 200
_MAX_CURSORS = 200
_INVALID_SESSION = "Session expired or invalid"


@dataclass
class _Cursor:
    object_name: str
    fields: list[str]
    rows: list[dict[str, Any]]
    batch_size: int
    resource: str = "query"


class SalesforceEmulator(Emulator):
    """Emulates the parts of the Salesforce REST API refsync uses.

    Args:
        clock: source of the current time (aware datetime) for modstamps and token expiry;
            real UTC now by default. Modstamps handed out are strictly increasing (ms).
        daily_api_max: the org's daily API allowance (``limits`` and ``Sforce-Limit-Info``).
        token_lifetime: how long access tokens stay valid.
    """

    name: ClassVar[str] = "salesforce"
    tls: ClassVar[bool] = True
    ignore_trailing_slash: ClassVar[bool] = True

    def __init__(
        self,
        *,
        clock: Clock | None = None,
        daily_api_max: int = 100_000,
        token_lifetime: timedelta = timedelta(hours=2),
    ) -> None:
        super().__init__()
        self.store = RecordStore(clock)
        self.auth = TokenIssuer(lifetime=token_lifetime)
        self._defaults = (daily_api_max, token_lifetime)
        self.daily_api_max = daily_api_max
        self.api_used = 0
        self._cursors: OrderedDict[str, _Cursor] = OrderedDict()
        self._cursor_ids = itertools.count(1)

    # -- Emulator interface -----------------------------------------------------------------
    def reset(self) -> None:
        """Drop records, custom fields, tokens, cursors and settings; zero the API usage."""
        with self.lock:
            super().reset()
            self.store.reset()
            self.auth.expire_all()
            self.daily_api_max, self.auth.lifetime = self._defaults
            self.auth.jwt_public_key = None
            self.api_used = 0
            self._cursors.clear()

    def seed(self, payload: dict[str, Any]) -> dict[str, int]:
        """Add records (``{"Lead": [...]}``) and custom fields (``{"_metadata": {...}}``).

        Metadata: ``{"_metadata": {"Lead": {"fields": [{"name": "X__c", "type": "string",
        "length": 80, "externalId": false, "unique": false, "picklistValues": [...]}]}}}``.
        Ids, CreatedDate, LastModifiedDate and SystemModstamp are assigned unless given.
        """
        with self.lock:
            metadata = payload.get("_metadata", {})
            if not isinstance(metadata, dict):
                raise EmulatorRequestError("_metadata must be an object per sObject")
            for object_name, spec in metadata.items():
                obj = self._object_or_request_error(object_name)
                spec = spec or {}
                field_specs = spec.get("fields", []) if isinstance(spec, dict) else None
                if not isinstance(field_specs, list) or not all(
                        isinstance(item, dict) for item in field_specs):
                    raise EmulatorRequestError(
                        f'_metadata of {obj.name} must be {{"fields": [field objects]}}')
                for field_spec in field_specs:
                    try:
                        obj.add(field_from_metadata(field_spec))
                    except SchemaError as exc:
                        raise EmulatorRequestError(f"{obj.name}: {exc}") from exc
                for record in self.store.records[obj.name].values():
                    for name, definition in obj.fields.items():
                        record.setdefault(name, definition.default)
                self.store.rebuild_indexes(obj)
            counts: dict[str, int] = {}
            stamp = format_datetime(self.store.now())
            for object_name, rows in payload.items():
                if object_name == "_metadata":
                    continue
                obj = self._object_or_request_error(object_name)
                if not isinstance(rows, list) or not all(isinstance(row, dict) for row in rows):
                    raise EmulatorRequestError(f"{obj.name}: expected a list of records")
                for row in rows:
                    try:
                        self.store.seed_record(obj, row, stamp)
                    except ValueError as exc:
                        raise EmulatorRequestError(str(exc)) from exc
                counts[obj.name] = counts.get(obj.name, 0) + len(rows)
            return counts

    def records(self, object_name: str) -> list[dict[str, Any]]:
        """Return copies of every record of ``object_name``, deleted ones with IsDeleted true."""
        with self.lock:
            for name, table in self.store.records.items():
                if name.lower() == object_name.lower():
                    return [dict(r) for r in table.values()]
        raise KeyError(object_name)

    def api_routes(self) -> list[BaseRoute]:
        """Return the REST routes; more specific paths come first, as Salesforce resolves them."""
        api = self._api
        return [
            Route("/services/oauth2/token", self._token, methods=["POST"]),
            Route(f"{_API}/limits", api(self._limits), methods=["GET"]),
            Route(f"{_API}/sobjects", api(self._global_describe), methods=["GET"]),
            Route(f"{_API}/query", api(self._query), methods=["GET"]),
            Route(f"{_API}/queryAll", api(self._query_all), methods=["GET"]),
            Route(f"{_API}/query/{{locator}}", api(self._query_more), methods=["GET"]),
            Route(f"{_API}/queryAll/{{locator}}", api(self._query_more), methods=["GET"]),
            Route(f"{_API}/composite/sobjects/{{object_name}}/{{ext_field}}",
                  api(self._collection_upsert), methods=["PATCH"]),
            Route(f"{_API}/sobjects/{{object_name}}/describe", api(self._describe),
                  methods=["GET"]),
            Route(f"{_API}/sobjects/{{object_name}}/updated", api(self._updated),
                  methods=["GET"]),
            Route(f"{_API}/sobjects/{{object_name}}/deleted", api(self._deleted),
                  methods=["GET"]),
            Route(f"{_API}/sobjects/{{object_name}}", api(self._object_root),
                  methods=["GET", "POST"]),
            Route(f"{_API}/sobjects/{{object_name}}/{{record_id}}", api(self._record),
                  methods=["GET", "PATCH", "DELETE"]),
            Route(f"{_API}/sobjects/{{object_name}}/{{ext_field}}/{{ext_value}}",
                  api(self._by_external_id), methods=["GET", "PATCH"]),
        ]

    def fault_presets(self) -> dict[str, list[FaultRule]]:
        """Salesforce presets: session expiry, org limit, partial Collections failure.

        The generic presets apply to the data API only (``^/services/data/``), so a client can
        still get a token during a 429 burst; pass ``"path"`` to aim them elsewhere.

        - ``session_expired``: the next API call gets 401 ``INVALID_SESSION_ID``;
        - ``request_limit_exceeded``: the next API call gets 403 ``REQUEST_LIMIT_EXCEEDED``;
        - ``partial_batch_failure``: Collections upserts fail the records whose JSON contains
          ``match_record`` (default ``"SANDBOX_FAIL"``) with a validation-rule error, while the
          other records succeed.
        """
        data_api_only = {
            name: [rule.model_copy(update={"path": r"^/services/data/"}) for rule in rules]
            for name, rules in generic_presets().items()
        }
        return {
            **data_api_only,
            "session_expired": [FaultRule(
                path=r"^/services/data/", status=401, times=1, preset="session_expired",
                body=[{"message": _INVALID_SESSION, "errorCode": "INVALID_SESSION_ID"}])],
            "request_limit_exceeded": [FaultRule(
                path=r"^/services/data/", status=403, times=1, preset="request_limit_exceeded",
                body=[{"message": "TotalRequests Limit exceeded.",
                       "errorCode": "REQUEST_LIMIT_EXCEEDED"}])],
            "partial_batch_failure": [FaultRule(
                method="PATCH", path=r"/composite/sobjects/", match_record="SANDBOX_FAIL",
                preset="partial_batch_failure",
                body=record_error("FIELD_CUSTOM_VALIDATION_EXCEPTION",
                                  "Rejected by the sandbox validation rule"))],
        }

    def fault_body(self, status: int) -> Any:
        """Return Salesforce's error array for an injected status."""
        code, message = {
            401: ("INVALID_SESSION_ID", _INVALID_SESSION),
            403: ("REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded."),
            404: ("NOT_FOUND", "The requested resource does not exist"),
            429: ("REQUEST_LIMIT_EXCEEDED",
                  "ConcurrentPerOrgLongTxn Limit exceeded."),
            503: ("SERVER_UNAVAILABLE", "Server temporarily unavailable"),
        }.get(status, ("UNKNOWN_EXCEPTION", "An unexpected error occurred. Please include "
                       "this ErrorId if you contact support: 0000000-0000 (sandbox)"))
        return [{"message": message, "errorCode": code}]

    def response_headers(self) -> dict[str, str]:
        """Return the usage header carried by every response."""
        return {"Sforce-Limit-Info": f"api-usage={self.api_used}/{self.daily_api_max}"}

    def not_found_body(self, path: str) -> Any:
        """Return Salesforce's NOT_FOUND body."""
        return [{"errorCode": "NOT_FOUND", "message": "The requested resource does not exist"}]

    def simulate(self, payload: dict[str, Any]) -> dict[str, Any]:
        """Advance leads, convert some into opportunities, close some (see simulate module)."""
        seed = payload.get("seed", 1)
        fraction = payload.get("fraction", 0.3)
        if not isinstance(seed, int) or not isinstance(fraction, int | float):
            raise EmulatorRequestError("simulate takes an integer seed and a numeric fraction")
        if not 0 <= fraction <= 1:
            raise EmulatorRequestError("fraction must be between 0 and 1")
        with self.lock:
            return simulate_sales_activity(self.store, seed=seed, fraction=float(fraction))

    def configure(self, settings: dict[str, Any]) -> dict[str, Any]:
        """Settings: ``daily_api_max``, ``api_used``, ``token_lifetime_seconds``,
        ``jwt_public_key`` (PEM or null) and ``expire_tokens`` (true invalidates every token).
        """
        known = {"daily_api_max", "api_used", "token_lifetime_seconds", "jwt_public_key",
                 "expire_tokens"}
        unknown = sorted(set(settings) - known)
        if unknown:
            raise EmulatorRequestError(
                f"unknown Salesforce settings {unknown}; known: {sorted(known)}")
        with self.lock:
            if "daily_api_max" in settings:
                self.daily_api_max = int(settings["daily_api_max"])
            if "api_used" in settings:
                self.api_used = int(settings["api_used"])
            if "token_lifetime_seconds" in settings:
                self.auth.lifetime = timedelta(seconds=float(settings["token_lifetime_seconds"]))
            if "jwt_public_key" in settings:
                self.auth.jwt_public_key = settings["jwt_public_key"]
            if settings.get("expire_tokens"):
                self.auth.expire_all()
            return {
                "daily_api_max": self.daily_api_max,
                "api_used": self.api_used,
                "token_lifetime_seconds": self.auth.lifetime.total_seconds(),
                "jwt_public_key": self.auth.jwt_public_key,
            }

    # -- plumbing ---------------------------------------------------------------------------
    def _object_or_request_error(self, name: str) -> ObjectDef:
        try:
            return self.store.object_def(name)
        except ApiError as exc:
            guess = did_you_mean(name, self.store.objects)
            hint = f" (did you mean {guess!r}?)" if guess else \
                f" (the sObjects are {', '.join(sorted(self.store.objects))})"
            raise EmulatorRequestError(f"unknown sObject {name!r}{hint}") from exc

    def _api(self, handler: Handler) -> Handler:
        """Wrap a data API handler: version, session, daily limit, usage header, error bodies."""

        async def endpoint(request: Request) -> Response:
            try:
                self._check_version(request.path_params["version"])
                self._authenticate(request)
                with self.lock:
                    if self.api_used >= self.daily_api_max:
                        raise ApiError(403, "REQUEST_LIMIT_EXCEEDED",
                                       "TotalRequests Limit exceeded.")
                    self.api_used += 1
                response = await handler(request)
            except ApiError as exc:
                response = JSONResponse(exc.body(), status_code=exc.status)
            response.headers.update(self.response_headers())
            return response

        return endpoint

    @staticmethod
    def _check_version(version: str) -> None:
        try:
            number = float(version.removeprefix("v")) if version.startswith("v") else 0.0
        except ValueError:
            number = 0.0
        if number < 50:
            raise ApiError(404, "NOT_FOUND", "The requested resource does not exist")

    def _authenticate(self, request: Request) -> None:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() not in ("bearer", "oauth") or not token:
            raise ApiError(401, "INVALID_SESSION_ID", _INVALID_SESSION)
        with self.lock:
            if not self.auth.valid(token.strip(), self.store.peek_now()):
                raise ApiError(401, "INVALID_SESSION_ID", _INVALID_SESSION)

    def _version(self, request: Request) -> str:
        return str(request.path_params["version"])

    def _record_url(self, version: str, object_name: str, record_id: str) -> str:
        return f"/services/data/{version}/sobjects/{object_name}/{record_id}"

    def _project(
        self, version: str, object_name: str, record: dict[str, Any], fields: list[str] | None
    ) -> dict[str, Any]:
        row: dict[str, Any] = {"attributes": {
            "type": object_name, "url": self._record_url(version, object_name, record["Id"])}}
        if fields is None:
            row.update(record)
        else:
            for name in fields:
                row[name] = record.get(name)
        return row

    async def _json(self, request: Request) -> Any:
        raw = await request.body()
        try:
            return json.loads(raw) if raw.strip() else {}
        except ValueError as exc:
            raise ApiError(400, "JSON_PARSER_ERROR", f"Unexpected character: {exc}") from exc

    # -- OAuth ------------------------------------------------------------------------------
    async def _token(self, request: Request) -> Response:
        form = dict(parse_qsl((await request.body()).decode("utf-8", "replace")))
        form.update(request.query_params)
        basic = None
        header = request.headers.get("authorization", "")
        if header.lower().startswith("basic "):
            try:
                user, _, password = base64.b64decode(header[6:]).decode().partition(":")
                basic = (user, password)
            except ValueError:
                basic = None
        try:
            with self.lock:
                now = self.store.peek_now()
                token = self.auth.grant(form, basic, now)
        except OAuthError as exc:
            return JSONResponse(exc.body(), status_code=exc.status)
        instance_url = str(request.base_url).rstrip("/")
        return JSONResponse({
            "access_token": token,
            "instance_url": instance_url,
            "id": f"{instance_url}/id/00DSANDBOX0000001AAA/005SANDBOX0000001AAA",
            "token_type": "Bearer",
            "issued_at": str(int(now.timestamp() * 1000)),
            "scope": "api",
            "signature": base64.b64encode(token[-16:].encode()).decode(),
        })

    # -- read -------------------------------------------------------------------------------
    async def _limits(self, request: Request) -> Response:
        return JSONResponse({
            "DailyApiRequests": {"Max": self.daily_api_max,
                                 "Remaining": max(self.daily_api_max - self.api_used, 0)},
            "DailyBulkV2QueryJobs": {"Max": 10000, "Remaining": 10000},
            "DailyBulkApiBatches": {"Max": 15000, "Remaining": 15000},
            "DataStorageMB": {"Max": 1024, "Remaining": 1024},
        })

    async def _global_describe(self, request: Request) -> Response:
        version = self._version(request)
        with self.lock:
            objects = [
                {"name": o.name, "label": o.label, "labelPlural": o.label + "s",
                 "keyPrefix": o.key_prefix, "custom": False, "queryable": True,
                 "createable": True, "updateable": True, "deletable": True,
                 "urls": {"sobject": f"/services/data/{version}/sobjects/{o.name}",
                          "describe": f"/services/data/{version}/sobjects/{o.name}/describe"}}
                for o in self.store.objects.values()
            ]
        return JSONResponse({"encoding": "UTF-8", "maxBatchSize": 200, "sobjects": objects})

    async def _describe(self, request: Request) -> Response:
        version = self._version(request)
        with self.lock:
            obj = self.store.object_def(request.path_params["object_name"])
            body = obj.describe()
        body["urls"] = {
            "sobject": f"/services/data/{version}/sobjects/{obj.name}",
            "describe": f"/services/data/{version}/sobjects/{obj.name}/describe",
            "rowTemplate": f"/services/data/{version}/sobjects/{obj.name}/{{ID}}",
        }
        return JSONResponse(body)

    async def _query(self, request: Request) -> Response:
        return self._run_query(request, include_deleted=False)

    async def _query_all(self, request: Request) -> Response:
        return self._run_query(request, include_deleted=True)

    def _batch_size(self, request: Request) -> int:
        options = request.headers.get("sforce-query-options", "")
        for part in options.split(","):
            key, _, value = part.strip().partition("=")
            if key.strip().lower() == "batchsize" and value.strip().isdigit():
                return min(max(int(value), 200), 2000)
        return 2000

    def _run_query(self, request: Request, *, include_deleted: bool) -> Response:
        soql = request.query_params.get("q", "")
        version = self._version(request)
        with self.lock:
            compiled = compile_query(soql, self.store.objects)
            table = self.store.records[compiled.object_name].values()
            candidates = list(table) if include_deleted else [
                r for r in table if not r["IsDeleted"]]
            rows = compiled.run(candidates)
            if compiled.count_only:
                return JSONResponse({"totalSize": len(rows), "done": True, "records": []})
            cursor = _Cursor(compiled.object_name, compiled.fields, rows,
                             self._batch_size(request),
                             "queryAll" if include_deleted else "query")
            locator = f"01gSBX{next(self._cursor_ids):012d}"[:18]
            return JSONResponse(self._page(version, locator, cursor, 0))

    def _page(self, version: str, locator: str, cursor: _Cursor, offset: int) -> dict[str, Any]:
        end = offset + cursor.batch_size
        records = [
            self._project(version, cursor.object_name, r, cursor.fields)
            for r in cursor.rows[offset:end]
        ]
        body: dict[str, Any] = {"totalSize": len(cursor.rows), "done": end >= len(cursor.rows),
                                "records": records}
        if end < len(cursor.rows):
            self._cursors[locator] = cursor
            self._cursors.move_to_end(locator)
            while len(self._cursors) > _MAX_CURSORS:
                self._cursors.popitem(last=False)
            body["nextRecordsUrl"] = (
                f"/services/data/{version}/{cursor.resource}/{locator}-{end}")
        else:
            self._cursors.pop(locator, None)
        return body

    async def _query_more(self, request: Request) -> Response:
        locator, _, offset_text = request.path_params["locator"].rpartition("-")
        with self.lock:
            cursor = self._cursors.get(locator)
            if cursor is None or not offset_text.isdigit():
                raise ApiError(400, "INVALID_QUERY_LOCATOR", "invalid query locator")
            return JSONResponse(self._page(self._version(request), locator, cursor,
                                           int(offset_text)))

    def _replication_window(self, request: Request, max_days: int) -> tuple[str, str]:
        start_text = request.query_params.get("start")
        end_text = request.query_params.get("end")
        if not start_text or not end_text:
            raise ApiError(400, "MISSING_ARGUMENT", "start and end parameters are required")
        try:
            start, end = parse_datetime(start_text), parse_datetime(end_text)
        except ValueError as exc:
            raise ApiError(400, "INVALID_REPLICATION_DATE",
                           f"Invalid replication date: {exc}") from exc
        if end < start:
            raise ApiError(400, "INVALID_REPLICATION_DATE",
                           "end date must be after start date")
        if start < self.store.peek_now() - timedelta(days=max_days):
            raise ApiError(400, "INVALID_REPLICATION_DATE",
                           f"startDate cannot be more than {max_days} days ago")
        return format_datetime(start), format_datetime(end)

    async def _updated(self, request: Request) -> Response:
        start, end = self._replication_window(request, max_days=30)
        with self.lock:
            obj = self.store.object_def(request.path_params["object_name"])
            ids = [r["Id"] for r in self.store.records[obj.name].values()
                   if not r["IsDeleted"] and start <= r["SystemModstamp"] <= end]
        return JSONResponse({"ids": ids, "latestDateCovered": end})

    async def _deleted(self, request: Request) -> Response:
        start, end = self._replication_window(request, max_days=15)
        with self.lock:
            obj = self.store.object_def(request.path_params["object_name"])
            deleted = [{"id": record_id, "deletedDate": when}
                       for record_id, when in self.store.deleted_at[obj.name].items()
                       if start <= when <= end]
        earliest = min((d["deletedDate"] for d in deleted), default=start)
        return JSONResponse({"deletedRecords": deleted, "earliestDateAvailable": earliest,
                             "latestDateCovered": end})

    # -- records ----------------------------------------------------------------------------
    async def _object_root(self, request: Request) -> Response:
        version = self._version(request)
        if request.method == "GET":
            with self.lock:
                obj = self.store.object_def(request.path_params["object_name"])
                describe = obj.describe()
                describe.pop("fields")
                recent = [self._project(version, obj.name, r, ["Id"])
                          for r in list(self.store.records[obj.name].values())[-5:]]
            return JSONResponse({"objectDescribe": describe, "recentItems": recent})
        values = await self._json(request)
        if not isinstance(values, dict):
            raise ApiError(400, "JSON_PARSER_ERROR", "Expected a JSON object")
        with self.lock:
            obj = self.store.object_def(request.path_params["object_name"])
            cleaned, errors = self.store.clean(obj, values, creating=True)
            if errors:
                return _errors_response(errors)
            record = self.store.insert(obj, cleaned, format_datetime(self.store.now()))
        return JSONResponse({"id": record["Id"], "success": True, "errors": []}, status_code=201)

    def _live_record(self, obj: ObjectDef, record_id: str) -> dict[str, Any]:
        record = self.store.get(obj.name, record_id)
        if record is None:
            raise ApiError(404, "NOT_FOUND", "The requested resource does not exist")
        if record["IsDeleted"]:
            raise ApiError(404, "ENTITY_IS_DELETED", "entity is deleted")
        return record

    async def _record(self, request: Request) -> Response:
        version = self._version(request)
        values = await self._json(request) if request.method == "PATCH" else {}
        with self.lock:
            obj = self.store.object_def(request.path_params["object_name"])
            record = self._live_record(obj, request.path_params["record_id"])
            if request.method == "GET":
                return JSONResponse(self._project(version, obj.name, record,
                                                  self._field_list(obj, request)))
            stamp = format_datetime(self.store.now())
            if request.method == "DELETE":
                self.store.delete(obj, record, stamp)
                return Response(status_code=204)
            if not isinstance(values, dict):
                raise ApiError(400, "JSON_PARSER_ERROR", "Expected a JSON object")
            cleaned, errors = self.store.clean(obj, values, creating=False, existing=record)
            if errors:
                return _errors_response(errors)
            self.store.update(obj, record, cleaned, stamp)
        return Response(status_code=204)

    def _field_list(self, obj: ObjectDef, request: Request) -> list[str] | None:
        raw = request.query_params.get("fields")
        if not raw:
            return None
        names = []
        for name in (n.strip() for n in raw.split(",") if n.strip()):
            definition = obj.get(name)
            if definition is None:
                raise ApiError(400, "INVALID_FIELD",
                               f"No such column '{name}' on entity '{obj.name}'")
            names.append(definition.name)
        return names

    def _external_field(self, obj: ObjectDef, name: str) -> str:
        definition = obj.get(name)
        if definition is None or not (definition.external_id or definition.name == "Id"):
            raise ApiError(400, "INVALID_FIELD",
                           f"Field name provided, {name} is not an External ID or indexed field "
                           f"for {obj.name}")
        return definition.name

    async def _by_external_id(self, request: Request) -> Response:
        version = self._version(request)
        values = await self._json(request) if request.method == "PATCH" else {}
        with self.lock:
            obj = self.store.object_def(request.path_params["object_name"])
            ext_field = self._external_field(obj, request.path_params["ext_field"])
            ext_value = request.path_params["ext_value"]
            if request.method == "GET":
                matches = self.store.find_by(obj.name, ext_field, ext_value)
                if not matches:
                    raise ApiError(404, "NOT_FOUND", "The requested resource does not exist")
                if len(matches) > 1:
                    return JSONResponse(
                        [self._record_url(version, obj.name, r["Id"]) for r in matches],
                        status_code=300)
                return JSONResponse(self._project(version, obj.name, matches[0],
                                                  self._field_list(obj, request)))
            if not isinstance(values, dict):
                raise ApiError(400, "JSON_PARSER_ERROR", "Expected a JSON object")
            matches = self.store.find_by(obj.name, ext_field, ext_value)
            if len(matches) > 1:
                return JSONResponse(
                    [self._record_url(version, obj.name, r["Id"]) for r in matches],
                    status_code=300)
            outcome = self.store.upsert(obj, ext_field, ext_value, values,
                                        format_datetime(self.store.now()))
        if outcome.errors:
            return _errors_response(outcome.errors)
        if outcome.created:
            return JSONResponse({"id": outcome.id, "success": True, "errors": [],
                                 "created": True}, status_code=201)
        return Response(status_code=204)

    async def _collection_upsert(self, request: Request) -> Response:
        body = await self._json(request)
        if not isinstance(body, dict) or not isinstance(body.get("records"), list):
            raise ApiError(400, "JSON_PARSER_ERROR",
                           'Expected {"allOrNone": bool, "records": [...]}')
        rows: list[Any] = body["records"]
        if len(rows) > _MAX_COLLECTION:
            raise ApiError(400, "EXCEEDED_ID_LIMIT",
                           "record limit reached. cannot submit more than 200 records into "
                           "this call")
        all_or_none = bool(body.get("allOrNone", False))
        faults = record_faults(request)
        with self.lock:
            obj = self.store.object_def(request.path_params["object_name"])
            ext_field = self._external_field(obj, request.path_params["ext_field"])
            stamp = format_datetime(self.store.now())
            planned = self._plan_collection(obj, ext_field, rows, faults, stamp)
            failed = any(not o.success for o in planned)
            results: list[dict[str, Any]] = []
            for row, outcome in zip(rows, planned, strict=True):
                if not outcome.success:
                    results.append({"success": False, "errors": outcome.errors})
                elif all_or_none and failed:
                    results.append({"success": False, "errors": [record_error(
                        "ALL_OR_NONE_OPERATION_ROLLED_BACK",
                        "Record rolled back because not all records were valid and the "
                        "request was using AllOrNone header")]})
                else:
                    done = self.store.upsert(obj, ext_field, _ext_value(row, ext_field), row,
                                             stamp)
                    results.append({"id": done.id, "success": done.success,
                                    "errors": done.errors or [], "created": done.created})
        return JSONResponse(results)

    def _plan_collection(
        self, obj: ObjectDef, ext_field: str, rows: list[Any], faults: Any, stamp: str
    ) -> list[WriteOutcome]:
        """Validate every record of a Collections upsert without writing anything."""
        values = [_ext_value(r, ext_field) if isinstance(r, dict) else None for r in rows]
        seen: dict[Any, int] = {}
        for value in values:
            if value is not None:
                key = value.lower() if isinstance(value, str) else value
                seen[key] = seen.get(key, 0) + 1
        planned: list[WriteOutcome] = []
        for row, value in zip(rows, values, strict=True):
            if not isinstance(row, dict):
                planned.append(WriteOutcome(errors=[record_error(
                    "JSON_PARSER_ERROR", "Each record must be a JSON object")]))
                continue
            attributes = row.get("attributes") or {}
            if attributes.get("type") not in (None, obj.name):
                planned.append(WriteOutcome(errors=[record_error(
                    "INVALID_TYPE", f"Record type {attributes.get('type')} does not match "
                    f"{obj.name}")]))
                continue
            if value in (None, ""):
                planned.append(WriteOutcome(errors=[record_error(
                    "REQUIRED_FIELD_MISSING", f"Required fields are missing: [{ext_field}]",
                    [ext_field])]))
                continue
            if seen[value.lower() if isinstance(value, str) else value] > 1:
                planned.append(WriteOutcome(errors=[record_error(
                    "DUPLICATE_EXTERNAL_ID",
                    f"Duplicate external id specified: {value}", [ext_field])]))
                continue
            injected = faults.error_for(json.dumps(row)) if faults else None
            if injected is not None:
                planned.append(WriteOutcome(errors=[injected]))
                continue
            try:
                planned.append(self.store.upsert(obj, ext_field, value, row, stamp, apply=False))
            except ApiError as exc:
                planned.append(WriteOutcome(errors=[record_error(exc.error_code, exc.message)]))
        return planned


def _ext_value(row: dict[str, Any], ext_field: str) -> Any:
    for key, value in row.items():
        if key.lower() == ext_field.lower():
            return value
    return None


def _errors_response(errors: list[dict[str, Any]]) -> JSONResponse:
    body = [{"message": e["message"], "errorCode": e["statusCode"], "fields": e["fields"]}
            for e in errors]
    return JSONResponse(body, status_code=400)
