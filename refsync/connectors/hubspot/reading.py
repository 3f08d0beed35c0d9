"""Reading HubSpot objects: full reads by list paging, incremental reads by search.

**Full read** (no cursor): ``GET /crm/v3/objects/{type}`` pages through every record in id
order. Its pages carry a positional cursor (``list:<after>:<start ms>``), so an interrupted full
read resumes where it stopped; the last page's cursor switches to the modstamp cursor at the
newest modstamp the listing read, and the next run reads incrementally from there.

**Incremental read**: ``POST /crm/v3/objects/{type}/search`` with
``lower <= hs_lastmodifieddate <= upper``, sorted by (``hs_lastmodifieddate``,
``hs_object_id``). One search query cannot page past its 10,000th result, so before ``after``
would reach that cap the query is **re-anchored**: restarted with the window's lower bound at
the last modstamp seen. The records at that boundary come back again and are skipped by the
cursor's boundary de-duplication (``seen``). When a whole capped query holds one single
modstamp (more than 10,000 records changed within the same millisecond), the next query
breaks the tie by id instead: ``(modstamp = anchor AND hs_object_id > last id) OR
modstamp > anchor``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

from refsync.connectors.base import Page, ReadRecord
from refsync.connectors.cursor import Cursor, IncrementalWindow
from refsync.connectors.hubspot.settings import HubSpotSettings
from refsync.connectors.hubspot.transport import ApiAnswer, HubSpotTransport, read_failure
from refsync.errors import FatalConnectorError, RecordError

__all__ = ["LIST_POSITION_PREFIX", "list_pages", "parse_hubspot_time", "search_pages", "to_ms"]

LIST_POSITION_PREFIX = "list:"


def parse_hubspot_time(value: Any) -> datetime | None:
    """Parse a HubSpot datetime value: epoch milliseconds or ISO 8601 (``...Z``)."""
    if value is None:
        return None
    text = str(value).strip()
    if not text:
        return None
    if text.isdigit():
        return datetime.fromtimestamp(int(text) / 1000, tz=UTC)
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def to_ms(moment: datetime) -> int:
    """Return an aware datetime as epoch milliseconds (HubSpot's filter value format)."""
    return round(moment.timestamp() * 1000)


def _from_ms(epoch_ms: int) -> datetime:
    return datetime.fromtimestamp(epoch_ms / 1000, tz=UTC)


def _request_names(fields: Sequence[str], modstamp_property: str) -> list[str]:
    return list(dict.fromkeys([*fields, modstamp_property, "hs_object_id"]))


def _record(
    item: dict[str, Any], fields: Sequence[str], modstamp_property: str
) -> tuple[ReadRecord, datetime]:
    properties = item.get("properties") or {}
    stamp = parse_hubspot_time(properties.get(modstamp_property)) or parse_hubspot_time(
        item.get("updatedAt")
    )
    if stamp is None:
        stamp = datetime.fromtimestamp(0, tz=UTC)
    data = {name: properties.get(name) for name in fields} if fields else dict(properties)
    record = ReadRecord(
        id=str(item["id"]), modstamp=stamp, data=data, deleted=bool(item.get("archived"))
    )
    return record, stamp


def _next_after(answer: ApiAnswer) -> str | None:
    body = answer.body if isinstance(answer.body, dict) else {}
    after = ((body.get("paging") or {}).get("next") or {}).get("after")
    return str(after) if after not in (None, "") else None


def _results(answer: ApiAnswer) -> list[dict[str, Any]]:
    body = answer.body if isinstance(answer.body, dict) else {}
    return [item for item in body.get("results") or [] if isinstance(item, dict)]


def list_pages(
    transport: HubSpotTransport,
    settings: HubSpotSettings,
    object_type: str,
    fields: Sequence[str],
    window: IncrementalWindow,
    position: str | None,
) -> Iterator[Page]:
    """Yield every record by list paging (a full read), resuming at ``position`` if given.

    Records changed after the window's upper bound are left for the next incremental read; the
    last page's cursor holds the newest modstamp read (no modstamp when nothing was read, so
    the next run lists again).
    """
    after: str | None = None
    start_ms = to_ms(window.upper)
    if position and position.startswith(LIST_POSITION_PREFIX):
        token, _, started = position[len(LIST_POSITION_PREFIX) :].partition(":")
        after = token or None
        if started.isdigit():
            start_ms = int(started)
    names = _request_names(fields, settings.modstamp_property)
    limit = settings.effective_list_page_size()
    # The newest modstamp read so far and the ids read at it, carried by every page's cursor
    # (a resumed listing continues them), so the next incremental read starts there and skips
    # exactly the versions already read.
    carried = window.cursor if position else Cursor()
    newest = carried.modstamp
    at_newest = {rid for rid, stamp in carried.seen.items() if stamp == newest}

    def cursor(position: str | None) -> Cursor:
        seen = dict.fromkeys(at_newest, newest) if newest is not None else {}
        return Cursor(modstamp=newest, seen=seen, position=position)

    while True:
        try:
            answer = transport.call(
                "list",
                transport.basic_api.get_page,
                object_type,
                limit=limit,
                after=after,
                properties=names,
                archived=False,
            )
        except RecordError as error:
            raise read_failure(error, system=transport.system) from error
        records = []
        for item in _results(answer):
            record, stamp = _record(item, fields, settings.modstamp_property)
            if to_ms(stamp) > start_ms:
                continue
            records.append(record)
            if newest is None or stamp > newest:
                newest, at_newest = stamp, {record.id}
            elif stamp == newest:
                at_newest.add(record.id)
        after = _next_after(answer)
        if after is None:
            # Continue from the newest modstamp HubSpot reported, not from the listing's start
            # on refsync's clock: if that clock runs ahead of HubSpot's, a record changed just
            # after the listing passed it would carry an older modstamp and never be read.
            yield Page(records=records, cursor=cursor(None))
            return
        yield Page(records=records, cursor=cursor(f"{LIST_POSITION_PREFIX}{after}:{start_ms}"))


def _search_body(
    settings: HubSpotSettings,
    names: list[str],
    *,
    anchor_ms: int | None,
    tie_after_id: int | None,
    upper_ms: int,
    after: int,
) -> dict[str, Any]:
    prop = settings.modstamp_property
    upper = {"propertyName": prop, "operator": "LTE", "value": str(upper_ms)}
    if anchor_ms is not None and tie_after_id is not None:
        groups = [
            {
                "filters": [
                    {"propertyName": prop, "operator": "EQ", "value": str(anchor_ms)},
                    {"propertyName": "hs_object_id", "operator": "GT", "value": str(tie_after_id)},
                ]
            },
            {
                "filters": [
                    {"propertyName": prop, "operator": "GT", "value": str(anchor_ms)},
                    upper,
                ]
            },
        ]
    elif anchor_ms is not None:
        lower = {"propertyName": prop, "operator": "GTE", "value": str(anchor_ms)}
        groups = [{"filters": [lower, upper]}]
    else:
        groups = [{"filters": [upper]}]
    body: dict[str, Any] = {
        "filterGroups": groups,
        "sorts": [
            {"propertyName": prop, "direction": "ASCENDING"},
            {"propertyName": "hs_object_id", "direction": "ASCENDING"},
        ],
        "properties": names,
        "limit": settings.effective_search_page_size(),
    }
    if after:
        body["after"] = str(after)
    return body


def search_pages(
    transport: HubSpotTransport,
    settings: HubSpotSettings,
    object_type: str,
    fields: Sequence[str],
    window: IncrementalWindow,
) -> Iterator[Page]:
    """Yield records changed inside ``window``, re-anchoring before the search result cap."""
    names = _request_names(fields, settings.modstamp_property)
    limit = settings.effective_search_page_size()
    cap = settings.search_result_cap
    anchor_ms = to_ms(window.lower) if window.lower is not None else None
    tie_after_id: int | None = None
    upper_ms = to_ms(window.upper)
    while True:  # one iteration per (re-anchored) query
        after = 0
        last: tuple[int, int] | None = None
        passed_anchor = False
        while True:  # one iteration per page of this query
            body = _search_body(
                settings,
                names,
                anchor_ms=anchor_ms,
                tie_after_id=tie_after_id,
                upper_ms=upper_ms,
                after=after,
            )
            try:
                answer = transport.call(
                    "search",
                    transport.search_api.do_search,
                    object_type,
                    body,
                    search=True,
                )
            except RecordError as error:
                raise read_failure(error, system=transport.system) from error
            records = []
            for item in _results(answer):
                record, stamp = _record(item, fields, settings.modstamp_property)
                stamp_ms = to_ms(stamp)
                last = (stamp_ms, int(record.id))
                if anchor_ms is None or stamp_ms > anchor_ms:
                    passed_anchor = True
                if window.accept(stamp, record.id):
                    records.append(record)
            if records:
                yield Page(records=records, cursor=window.cursor)
            next_after = _next_after(answer)
            if next_after is None:
                return
            after = int(next_after)
            if after + limit > cap:
                break  # the next page would cross the cap: re-anchor
        assert last is not None  # a query that has a next page returned records
        transport.context.logger.info(
            "hubspot_search_reanchored",
            system=transport.system,
            object=object_type,
            anchor=_from_ms(last[0]).isoformat(),
            by_id=not passed_anchor,
        )
        # When the whole capped query sat on one modstamp, move on by id within it.
        next_anchor = (last[0], None if passed_anchor else last[1])
        if next_anchor == (anchor_ms, tie_after_id):
            raise FatalConnectorError(
                f"{transport.system} search returned the same {cap} results twice for "
                f"{object_type}; refsync cannot page further without skipping records",
                system=transport.system,
            )
        anchor_ms, tie_after_id = next_anchor
