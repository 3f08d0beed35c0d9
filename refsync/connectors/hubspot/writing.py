"""Writing HubSpot objects: ``batch/upsert`` by a unique property, 100 inputs a call.

Every input carries ``idProperty`` (the key field, e.g. ``refsync_id``), ``id`` (its value) and
an ``objectWriteTraceId`` (its position in the call). A 207 answer lists the failed inputs in
``errors[]``; each error is matched back to its input by the trace id, else by the key values in
its ``context.ids``. Successful results are matched by trace id, else by the key property they
echo. The caller gets one :class:`~refsync.connectors.base.WriteResult` per record, in input
order; a failed record never fails the rest of its batch.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from refsync.connectors.base import REMOTE_ID_FIELD, WriteResult
from refsync.connectors.errors import Action, ErrorFacts, ErrorTable, WriteError
from refsync.connectors.hubspot.transport import HubSpotTransport, first_detail_message
from refsync.errors import RecordError, RetryableError

__all__ = ["hubspot_value", "upsert_records"]


@dataclass(frozen=True)
class _Input:
    """One record to send: its position in the caller's list, key and HubSpot properties."""

    position: int
    key: str
    properties: dict[str, str]


def hubspot_value(value: Any) -> str:
    """Render a value the way HubSpot stores properties: as text.

    ``None`` clears the property (empty string); booleans are ``true``/``false``; datetimes
    are ISO 8601 in UTC with milliseconds; lists and dicts are JSON.
    """
    if value.__class__ is str:  # the common case: text is stored as it is
        return value
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=UTC)
        return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, dict | list):
        return json.dumps(value, default=str)
    return str(value)


def _chunks(inputs: Sequence[_Input], size: int) -> Iterator[list[_Input]]:
    """Split inputs into calls of at most ``size``, never repeating a key within one call.

    HubSpot refuses a whole call holding the same id twice, so a repeated key starts a new call
    (the later version is written after the earlier one, as given).
    """
    chunk: list[_Input] = []
    keys: set[str] = set()
    for item in inputs:
        if len(chunk) >= size or item.key in keys:
            yield chunk
            chunk, keys = [], set()
        chunk.append(item)
        keys.add(item.key)
    if chunk:
        yield chunk


def _facts_of_batch_error(error: Mapping[str, Any]) -> ErrorFacts:
    details = [d for d in error.get("errors") or [] if isinstance(d, dict)]
    category = str(error.get("category") or "")
    code = (details[0].get("code") if details else None) or category or "error"
    fields = tuple(dict.fromkeys(str(d["in"]) for d in details if d.get("in")))
    return ErrorFacts(
        status=409 if category == "CONFLICT" else 400,
        code=str(code),
        message=first_detail_message(details) or str(error.get("message") or ""),
        fields=fields,
    )


def _record_error_of(error: RecordError) -> WriteError:
    return WriteError(
        code=error.code,
        message=error.message,
        fields=(error.field,) if error.field else (),
        action=Action.RECORD_ERROR,
        detail=error.detail or "",
    )


def upsert_records(
    transport: HubSpotTransport,
    table: ErrorTable,
    object_type: str,
    key_field: str,
    records: Sequence[Mapping[str, Any]],
    batch_size: int,
) -> list[WriteResult]:
    """Upsert ``records`` by ``key_field``; return one result per record, in input order.

    Raises:
        QuotaExhaustedError: the daily allowance ran out (earlier calls stay written; writes
            are upserts, so sending them again next run creates nothing twice).
        FatalConnectorError: the credentials or permissions are wrong.
    """
    system = transport.system
    results: list[WriteResult | None] = [None] * len(records)
    inputs: list[_Input] = []
    for position, record in enumerate(records):
        raw_key = record.get(key_field)
        if raw_key in (None, ""):
            facts = ErrorFacts(
                code="REQUIRED_FIELD_MISSING", message=f"missing {key_field}", fields=(key_field,)
            )
            results[position] = WriteResult.failure(None, table.write_error(facts, system=system))
            continue
        properties = {
            name: hubspot_value(value)
            for name, value in record.items()
            if name not in (key_field, REMOTE_ID_FIELD)  # upsert is by key; the hint is unused
        }
        inputs.append(_Input(position, str(raw_key), properties))
    stop_reason: WriteError | None = None
    for chunk in _chunks(inputs, batch_size):
        if stop_reason is not None:
            for item in chunk:
                results[item.position] = WriteResult.failure(item.key, stop_reason)
            continue
        try:
            answer = transport.call(
                "batch_upsert",
                transport.batch_api.upsert,
                object_type,
                {
                    "inputs": [
                        {
                            "idProperty": key_field,
                            "id": item.key,
                            "objectWriteTraceId": str(index),
                            "properties": item.properties,
                        }
                        for index, item in enumerate(chunk)
                    ]
                },
            )
        except RecordError as error:  # HubSpot refused the call as a whole
            failure = _record_error_of(error)
            for item in chunk:
                results[item.position] = WriteResult.failure(item.key, failure)
            continue
        except RetryableError as error:  # retries spent: leave this and later calls for later
            stop_reason = WriteError(
                code=error.code or "retry",
                message=error.message,
                action=Action.RETRY,
                detail=error.detail or "",
            )
            for item in chunk:
                results[item.position] = WriteResult.failure(item.key, stop_reason)
            continue
        for item, result in zip(chunk, _match(chunk, answer.body, key_field, table, system),
                                strict=True):
            results[item.position] = result
    return [result for result in results if result is not None]


def _match(
    chunk: list[_Input], body: Any, key_field: str, table: ErrorTable, system: str
) -> list[WriteResult]:
    """Match a batch answer's results and errors back to the chunk's inputs, in order."""
    body = body if isinstance(body, dict) else {}
    by_key = {item.key: index for index, item in enumerate(chunk)}
    matched: list[WriteResult | None] = [None] * len(chunk)

    def index_of(trace: Any, keys: Sequence[Any]) -> int | None:
        if trace is not None and str(trace).isdigit() and int(str(trace)) < len(chunk):
            return int(str(trace))
        for key in keys:
            if str(key) in by_key:
                return by_key[str(key)]
        return None

    unplaced_results: list[dict[str, Any]] = []
    for result in body.get("results") or []:
        if not isinstance(result, dict):
            continue
        echoed = (result.get("properties") or {}).get(key_field)
        index = index_of(result.get("objectWriteTraceId"), [echoed] if echoed else [])
        if index is None or matched[index] is not None:
            unplaced_results.append(result)
            continue
        matched[index] = WriteResult.success(
            chunk[index].key, remote_id=str(result.get("id")), created=bool(result.get("new"))
        )
    unplaced_errors: list[WriteError] = []
    for error in body.get("errors") or []:
        if not isinstance(error, dict):
            continue
        context = error.get("context") or {}
        traces = context.get("objectWriteTraceId") or [None]
        write_error = table.write_error(_facts_of_batch_error(error), system=system)
        placed = False
        for trace in traces:
            index = index_of(trace, context.get("ids") or [])
            if index is not None and matched[index] is None:
                matched[index] = WriteResult.failure(chunk[index].key, write_error)
                placed = True
        if not placed:
            unplaced_errors.append(write_error)
    # Whatever HubSpot answered without saying for which input: fill the gaps in order.
    for index, item in enumerate(chunk):
        if matched[index] is not None:
            continue
        if unplaced_results:
            result = unplaced_results.pop(0)
            matched[index] = WriteResult.success(
                item.key, remote_id=str(result.get("id")), created=bool(result.get("new"))
            )
        elif unplaced_errors:
            matched[index] = WriteResult.failure(item.key, unplaced_errors.pop(0))
        else:
            matched[index] = WriteResult.failure(
                item.key,
                WriteError(
                    code="NO_RESULT",
                    message=f"{system} answered the batch without a result for this record; "
                    "it will be sent again",
                    action=Action.RETRY,
                ),
            )
    return [result for result in matched if result is not None]
