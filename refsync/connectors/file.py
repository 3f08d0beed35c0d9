"""The file connector: CSV and JSON Lines in and out, for imports, exports and tests.

An object is a file in the configured directory: object ``leads`` is ``<directory>/leads.jsonl``
(or ``leads.csv``). Two ways to read incrementally:

* **by modstamp** (default): every row carries an id column (``id_field``) and a change-time
  column (``modstamp_field``); reads go through the same (modstamp, id) cursor as the API
  connectors. Writes stamp the change time themselves.
* **by position** (``modstamp_field: null``): for append-only files produced by another tool.
  The cursor keeps the byte offset read so far plus a fingerprint of the bytes just before it;
  rows appended later are read next time, and a file rewritten under the reader is read again
  from the start (nothing is skipped; rows may repeat).

Writes are upserts by the key field: the whole file is rewritten to a temporary file and
renamed over the original, under an exclusive lock, so a reader never sees half a file.
"""

from __future__ import annotations

import contextlib
import csv
import fcntl
import hashlib
import io
import json
import os
import re
import tempfile
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field

from refsync.connectors.base import (
    REMOTE_ID_FIELD,
    CheckReport,
    ConnectorBase,
    ConnectorContext,
    ConnectorSettings,
    Finding,
    Page,
    ReadRecord,
    WriteResult,
)
from refsync.connectors.cursor import Cursor
from refsync.connectors.errors import DEFAULT_TABLE, ErrorFacts
from refsync.connectors.schema import FieldSchema, ObjectSchema
from refsync.errors import FatalConnectorError

__all__ = ["FileConnector", "FileSettings"]

_OBJECT_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
_DISCOVER_SAMPLE = 1000
_FINGERPRINT_BYTES = 4096


class FileSettings(ConnectorSettings):
    """Settings of a ``file`` system."""

    directory: Path = Field(description="folder holding one file per object")
    format: Literal["jsonl", "csv"] = Field(default="jsonl", description="file format")
    id_field: str = Field(default="id", description="column holding each row's id")
    modstamp_field: str | None = Field(
        default="updated_at",
        description="column holding each row's change time; null reads append-only by position",
    )
    required_fields: list[str] = Field(
        default_factory=list, description="columns a written record must have a value for"
    )
    settle_lag_seconds: float = Field(default=0.0, ge=0)
    encoding: str = "utf-8"


@dataclass(frozen=True)
class _Row:
    """One parsed row and the byte offset just after it."""

    data: dict[str, Any]
    line: int
    end_offset: int


class FileConnector(ConnectorBase):
    """Reads and writes CSV / JSON Lines files as objects.

    Args:
        settings: the validated ``settings:`` block.
        context: injected clock, logger and counters.
    """

    Settings: ClassVar[type[ConnectorSettings]] = FileSettings

    def __init__(self, settings: FileSettings, context: ConnectorContext) -> None:
        super().__init__(settings, context)
        self.file_settings = settings

    @classmethod
    def from_settings(cls, settings: Any, context: ConnectorContext) -> FileConnector:
        """Build the connector from a :class:`FileSettings` (or a dict validated into one)."""
        if not isinstance(settings, FileSettings):
            settings = FileSettings.model_validate(settings)
        return cls(settings, context)

    # --- paths ---------------------------------------------------------------------------

    def path_of(self, object_name: str) -> Path:
        """Return the file holding ``object_name``.

        Raises:
            FatalConnectorError: the name could escape the directory.
        """
        if not _OBJECT_NAME.match(object_name) or ".." in object_name:
            raise FatalConnectorError(
                f"object name {object_name!r} is not a plain file name: use letters, digits, "
                "'_', '-' and '.' only",
                system=self.system,
            )
        return self.file_settings.directory / f"{object_name}.{self.file_settings.format}"

    # --- check / discover ----------------------------------------------------------------

    def check(self) -> CheckReport:
        """Report whether the directory exists and can be read and written."""
        directory = self.file_settings.directory
        findings: list[Finding] = []
        readable = directory.is_dir() and os.access(directory, os.R_OK | os.X_OK)
        writable = readable and os.access(directory, os.W_OK)
        if not directory.is_dir():
            findings.append(
                Finding("error", f"directory {directory} does not exist", "create it or fix "
                        "the 'directory' setting")
            )
        elif not writable:
            findings.append(
                Finding("error", f"directory {directory} is not writable by this user",
                        "grant write permission or point 'directory' elsewhere")
            )
        return CheckReport(
            system=self.system, auth_ok=True, permissions_ok=writable, findings=findings
        )

    def discover(self, object_name: str) -> ObjectSchema:
        """Infer the object's fields from the CSV header or the first JSON Lines records."""
        settings = self.file_settings
        path = self.path_of(object_name)
        header, rows = self._load(path) if path.exists() else ([], [])
        samples = [row.data for row in rows[:_DISCOVER_SAMPLE]]
        names: list[str] = list(header)
        for sample in samples:
            names.extend(name for name in sample if name not in names)
        for name in (settings.id_field, settings.modstamp_field):
            if name and name not in names:
                names.insert(0, name)
        fields: dict[str, FieldSchema] = {}
        for name in names:
            values = [s[name] for s in samples if s.get(name) not in (None, "")]
            fields[name] = FieldSchema(
                name=name,
                type=_infer_type(values, is_modstamp=name == settings.modstamp_field),
                required=name in settings.required_fields,
                writable=name not in (settings.modstamp_field,),
                unique=name == settings.id_field,
                external_id=name == settings.id_field,
                picklist_values=None,
                length=None,
            )
        return ObjectSchema(name=object_name, fields=fields)

    # --- read ----------------------------------------------------------------------------

    def read(
        self, object_name: str, fields: Sequence[str], cursor: Cursor | None
    ) -> Iterator[Page]:
        """Yield pages of rows changed since ``cursor`` (see the module docstring)."""
        path = self.path_of(object_name)
        if self.file_settings.modstamp_field is None:
            yield from self._read_by_position(path, fields, cursor)
        else:
            modstamp_field = self.file_settings.modstamp_field
            yield from self._read_by_modstamp(path, fields, cursor, modstamp_field)

    def _page_size(self) -> int:
        return self.file_settings.page_size or 500

    def _read_by_modstamp(
        self, path: Path, fields: Sequence[str], cursor: Cursor | None, modstamp_field: str
    ) -> Iterator[Page]:
        window = self.incremental_window(cursor)
        if not path.exists():
            return
        _, rows = self._load(path)
        candidates: list[tuple[datetime, str, dict[str, Any]]] = []
        for row in rows:
            record_id = row.data.get(self.file_settings.id_field)
            stamp = _parse_datetime(row.data.get(modstamp_field))
            if record_id in (None, "") or stamp is None:
                raise FatalConnectorError(
                    f"{path.name} line {row.line} has no {self.file_settings.id_field!r} or no "
                    f"valid {modstamp_field!r}: fill them in, or set modstamp_field: null to "
                    "read the file by position",
                    system=self.system,
                )
            candidates.append((stamp, str(record_id), row.data))
        candidates.sort(key=lambda item: (item[0], item[1]))
        page: list[ReadRecord] = []
        for stamp, record_id, data in candidates:
            if not window.accept(stamp, record_id):
                continue
            page.append(ReadRecord(id=record_id, modstamp=stamp, data=_select(data, fields)))
            if len(page) >= self._page_size():
                yield Page(records=page, cursor=window.cursor)
                page = []
        if page:
            yield Page(records=page, cursor=window.cursor)

    def _read_by_position(
        self, path: Path, fields: Sequence[str], cursor: Cursor | None
    ) -> Iterator[Page]:
        if not path.exists():
            return
        start = _resume_offset(path, cursor.position if cursor else None)
        base = cursor if cursor is not None and start > 0 else Cursor()
        _, rows = self._load(path, start=start)
        size = self._page_size()
        for first in range(0, len(rows), size):
            chunk = rows[first : first + size]
            records = [
                ReadRecord(
                    id=str(row.data.get(self.file_settings.id_field) or f"line-{row.line}"),
                    modstamp=None,
                    data=_select(row.data, fields),
                )
                for row in chunk
            ]
            position = _position_token(path, chunk[-1].end_offset)
            yield Page(records=records, cursor=base.with_position(position))

    # --- write ---------------------------------------------------------------------------

    def write(
        self, object_name: str, key_field: str, records: Sequence[Mapping[str, Any]]
    ) -> list[WriteResult]:
        """Upsert ``records`` by ``key_field``, rewriting the file atomically.

        Fields given overwrite the stored ones; fields not given are kept. Records missing
        the key or a required field, or holding values the format cannot store, are refused
        one by one; the others are written.
        """
        settings = self.file_settings
        path = self.path_of(object_name)
        settings.directory.mkdir(parents=True, exist_ok=True)
        with _exclusive_lock(path):
            header, rows = self._load(path) if path.exists() else ([], [])
            table: list[dict[str, Any]] = [row.data for row in rows]
            by_key: dict[str, int] = {}
            for index, data in enumerate(table):
                key_value = data.get(key_field)
                if key_value not in (None, ""):
                    by_key.setdefault(str(key_value), index)
            results: list[WriteResult] = []
            for record in records:
                results.append(self._upsert_one(record, key_field, table, by_key))
            if any(result.ok for result in results):
                self._store(path, header, table)
        return results

    def _upsert_one(
        self,
        record: Mapping[str, Any],
        key_field: str,
        table: list[dict[str, Any]],
        by_key: dict[str, int],
    ) -> WriteResult:
        settings = self.file_settings
        remote_id = record.get(REMOTE_ID_FIELD)
        record = {name: value for name, value in record.items() if name != REMOTE_ID_FIELD}
        key_value = record.get(key_field)
        key = None if key_value in (None, "") else str(key_value)
        index = None if key is None else self._stored_index(key, remote_id, table, by_key)
        stored = table[index] if index is not None else {}
        problem = self._validate(record, key_field, stored)
        if problem is not None:
            return WriteResult.failure(key, DEFAULT_TABLE.write_error(problem, system=self.system))
        assert key is not None  # _validate refuses a missing key
        stamp = self.context.clock().astimezone(UTC).isoformat()
        if index is None:
            data = dict(record)
            data[settings.id_field] = str(data.get(settings.id_field) or uuid.uuid4().hex)
            created = True
            table.append(data)
            by_key[key] = len(table) - 1
        else:
            by_key[key] = index
            data = table[index]
            keep_id = data.get(settings.id_field)
            data.update(record)
            if keep_id not in (None, ""):
                data[settings.id_field] = keep_id
            created = False
        if settings.modstamp_field is not None:
            data[settings.modstamp_field] = stamp
        return WriteResult.success(key, remote_id=str(data[settings.id_field]), created=created)

    def _stored_index(
        self, key: str, remote_id: Any, table: list[dict[str, Any]], by_key: dict[str, int]
    ) -> int | None:
        """The stored row a record updates: the one holding its key, else its remote id."""
        index = by_key.get(key)
        if index is None and remote_id not in (None, ""):
            # the engine knows this record's id here: update it rather than add a row
            id_field = self.file_settings.id_field
            index = next((i for i, row in enumerate(table)
                          if str(row.get(id_field)) == str(remote_id)), None)
        return index

    def _validate(
        self, record: Mapping[str, Any], key_field: str, stored: Mapping[str, Any]
    ) -> ErrorFacts | None:
        """What is wrong with writing ``record`` over the ``stored`` row ({} for a new one).

        The key must be in the record; a required field may come from the stored row, since
        fields not given are kept.
        """
        merged = {**stored, **record}
        missing = [key_field] if record.get(key_field) in (None, "") else []
        missing += [
            name
            for name in dict.fromkeys(self.file_settings.required_fields)
            if name != key_field and merged.get(name) in (None, "")
        ]
        if missing:
            return ErrorFacts(
                code="REQUIRED_FIELD_MISSING",
                message=f"missing {', '.join(missing)}",
                fields=tuple(missing),
            )
        for name, value in record.items():
            if not _storable(value, self.file_settings.format):
                return ErrorFacts(
                    code="INVALID_VALUE",
                    message=f"{name} holds a {type(value).__name__}, which "
                    f"{self.file_settings.format} cannot store",
                    fields=(name,),
                )
        return None

    # --- file formats --------------------------------------------------------------------

    def _load(self, path: Path, start: int = 0) -> tuple[list[str], list[_Row]]:
        """Parse the file from byte ``start``; return the CSV header (or []) and the rows.

        A last line without its newline is left out: another process may still be writing it.
        """
        raw = path.read_bytes()
        encoding = self.file_settings.encoding
        if self.file_settings.format == "jsonl":
            return [], list(_jsonl_rows(raw, start, encoding, path.name))
        return _csv_rows(raw, start, encoding)

    def _store(self, path: Path, header: list[str], table: list[dict[str, Any]]) -> None:
        """Write ``table`` to a temporary file beside ``path`` and rename it into place."""
        encoding = self.file_settings.encoding
        if self.file_settings.format == "jsonl":
            text = "".join(
                json.dumps(row, ensure_ascii=False, default=_json_default) + "\n" for row in table
            )
        else:
            columns = list(header)
            for row in table:
                columns.extend(name for name in row if name not in columns)
            buffer = io.StringIO()
            writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
            writer.writeheader()
            for row in table:
                writer.writerow({name: _csv_value(row.get(name)) for name in columns})
            text = buffer.getvalue()
        temporary = ""
        try:
            with tempfile.NamedTemporaryFile(
                "w", encoding=encoding, dir=path.parent, prefix=f".{path.name}.", delete=False
            ) as handle:
                temporary = handle.name
                handle.write(text)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, path)
        except BaseException:
            if temporary:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(temporary)
            raise


# --- helpers -------------------------------------------------------------------------------


@contextlib.contextmanager
def _exclusive_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``<path>.lock`` so two writers never interleave."""
    lock_path = path.with_name(f".{path.name}.lock")
    with open(lock_path, "a+b") as lock_file:
        fcntl.flock(lock_file.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock_file.fileno(), fcntl.LOCK_UN)


def _complete_lines(raw: bytes, start: int) -> Iterator[tuple[bytes, int]]:
    """Yield each complete line from ``start`` with the offset just after it."""
    offset = start
    while True:
        end = raw.find(b"\n", offset)
        if end < 0:
            return
        yield raw[offset : end + 1], end + 1
        offset = end + 1


def _jsonl_rows(raw: bytes, start: int, encoding: str, name: str) -> Iterator[_Row]:
    line_number = raw.count(b"\n", 0, start)
    for line, end in _complete_lines(raw, start):
        line_number += 1
        text = line.decode(encoding).strip()
        if not text:
            continue
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise FatalConnectorError(
                f"{name} line {line_number} is not valid JSON ({error.msg}): fix or remove it"
            ) from error
        if not isinstance(data, dict):
            raise FatalConnectorError(
                f"{name} line {line_number} is not a JSON object: each line must be one record"
            )
        yield _Row(data=data, line=line_number, end_offset=end)


def _csv_rows(raw: bytes, start: int, encoding: str) -> tuple[list[str], list[_Row]]:
    lines = _complete_lines(raw, 0)
    header_line = next(lines, None)
    if header_line is None:
        return [], []
    header = next(csv.reader([header_line[0].decode(encoding)]))
    body_start = max(start, header_line[1])
    consumed = {"offset": body_start, "line": raw.count(b"\n", 0, body_start)}

    def tracked() -> Iterator[str]:
        # csv.reader pulls exactly the lines of the record it is building, so the offset
        # after each yielded row is the offset of the last line pulled.
        for line, end in _complete_lines(raw, body_start):
            consumed["offset"] = end
            consumed["line"] += 1
            yield line.decode(encoding)

    rows: list[_Row] = []
    for values in csv.reader(tracked()):
        if not values:
            continue
        data = {name: values[i] if i < len(values) else "" for i, name in enumerate(header)}
        rows.append(_Row(data=data, line=consumed["line"], end_offset=consumed["offset"]))
    return header, rows


def _position_token(path: Path, offset: int) -> str:
    """Return ``<offset>:<fingerprint of the bytes just before it>``."""
    with open(path, "rb") as handle:
        begin = max(0, offset - _FINGERPRINT_BYTES)
        handle.seek(begin)
        tail = handle.read(offset - begin)
    return f"{offset}:{hashlib.sha256(tail).hexdigest()[:16]}"


def _resume_offset(path: Path, position: str | None) -> int:
    """Return where to resume reading, or 0 when the file no longer matches the token."""
    if not position:
        return 0
    offset_text, _, fingerprint = position.partition(":")
    try:
        offset = int(offset_text)
    except ValueError:
        return 0
    if offset > path.stat().st_size:
        return 0
    return offset if _position_token(path, offset) == f"{offset}:{fingerprint}" else 0


def _select(data: Mapping[str, Any], fields: Sequence[str]) -> dict[str, Any]:
    if not fields:
        return dict(data)
    return {name: data.get(name) for name in fields}


def _parse_datetime(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.fromtimestamp(value / 1000 if value > 1e11 else value, tz=UTC)
    if isinstance(value, str) and value.strip():
        text = value.strip()
        if text.isdigit():
            return _parse_datetime(int(text))
        try:
            parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            return None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return None


def _infer_type(values: Sequence[Any], *, is_modstamp: bool) -> str:
    if is_modstamp:
        return "datetime"
    if not values:
        return "string"

    def kind(value: Any) -> str:
        if isinstance(value, bool) or (
            isinstance(value, str) and value.lower() in ("true", "false")
        ):
            return "boolean"
        if isinstance(value, int) or (isinstance(value, str) and re.fullmatch(r"-?\d+", value)):
            return "integer"
        if isinstance(value, float) or (
            isinstance(value, str) and re.fullmatch(r"-?\d+\.\d*", value)
        ):
            return "number"
        if isinstance(value, str) and re.fullmatch(r"\d{4}-\d{2}-\d{2}T.*", value):
            return "datetime" if _parse_datetime(value) else "string"
        if isinstance(value, str) and re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
            return "date"
        if isinstance(value, dict | list):
            return "object"
        return "string"

    kinds = {kind(value) for value in values}
    if kinds == {"integer", "number"}:
        return "number"
    return kinds.pop() if len(kinds) == 1 else "string"


def _storable(value: Any, file_format: str) -> bool:
    if value is None or isinstance(value, str | int | float | bool | datetime):
        return True
    if file_format == "jsonl" and isinstance(value, dict | list):
        try:
            json.dumps(value, default=_json_default)
        except (TypeError, ValueError):
            return False
        return True
    return False


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _csv_value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)
