"""A mapping compiled once into plain closures: remote record ⇄ canonical values.

:func:`compile_mapping` turns a validated :class:`~refsync.mapping.spec.MappingSpec` into a
:class:`CompiledMapping`. All parsing happens here; per record only precomputed closures run
(no pydantic, no dictionary-of-options lookups), so a mapping translates tens of thousands of
records a second.

Reading (``to_canonical``) a field runs, in order: the remote value at its (dotted) path → each
transform's read function → the canonical type conversion (``amount`` as a decimal,
``submitted_at``/``closed_at`` as datetimes, text fields as text) unless a transform already
converts → the value map → the field default when blank → for ``status``, the lifecycle status.
The values a mapping gives are read as values of their type when it compiles: a field default
and the canonical values of a value map as the field's (``big: 1000000`` on ``amount`` maps to
a Decimal), a ``{default: V}`` step after a converting step as the type that step reads.
Writing (``to_remote``) runs the same in reverse: default → value map → type formatting →
each transform's write function, last transform first.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from pydantic import BaseModel

from refsync.domain import Referral, ReferralStatus
from refsync.errors import RecordError
from refsync.mapping import transforms as t
from refsync.mapping.checks import split_value_map
from refsync.mapping.hashing import hash_normaliser, hash_values
from refsync.mapping.paths import path_getter, path_setter, split_path
from refsync.mapping.rules import Direction, Rule
from refsync.mapping.spec import FieldSpec, MappingSpec
from refsync.mapping.typed import CANONICAL_KINDS, field_kind, step_default, typed_value
from refsync.mapping.valuemap import ValueMap
from refsync.mapping.vocabulary import Step, build_step
from refsync.yamlsource import SourceMap

__all__ = ["CompiledField", "CompiledMapping", "MappedRecord", "compile_mapping", "layout_hash"]

_MISSING: Any = object()
_CANONICAL_UUID = re.compile(
    r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.IGNORECASE
)
_STATUS_VALUES = [status.value for status in ReferralStatus]
_STATUS_BY_TEXT = {status.value: status for status in ReferralStatus}


@dataclass(slots=True)
class MappedRecord:
    """The result of mapping one record.

    Attributes:
        values: reading: canonical field → value (``custom.<name>`` keys for extras, ``id`` for
            the refsync id read from the key field, ``None`` when the record has none yet);
            writing: the remote payload (nested dicts for dotted paths).
        errors: one :class:`~refsync.errors.RecordError` per field that could not be mapped; its
            ``field`` is the canonical field. Fields in error are absent from ``values``.
    """

    values: dict[str, Any]
    errors: list[RecordError] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Whether every field mapped."""
        return not self.errors

    def referral_fields(self) -> dict[str, Any]:
        """``values`` shaped for :class:`~refsync.domain.Referral`: ``custom.x`` keys nested under
        ``custom``. Use with ``Referral.model_validate`` or ``referral.model_copy(update=...)``."""
        shaped: dict[str, Any] = {}
        custom: dict[str, Any] = {}
        for name, value in self.values.items():
            if name.startswith("custom."):
                custom[name[7:]] = value
            else:
                shaped[name] = value
        if custom:
            shaped["custom"] = custom
        return shaped


@dataclass(frozen=True, slots=True)
class CompiledField:
    """One compiled field mapping.

    Attributes:
        canonical: the canonical field (``email``, ``custom.lead_source``).
        remote: the remote field or dotted path.
        rule: its authority rule (see :func:`refsync.mapping.decide`).
        direction: which way it flows.
        kind: the type of its canonical value (``text``, ``decimal``, ``datetime``, ...), or None.
        read: remote record → canonical value; raises RecordError.
        write: (canonical value, canonical field getter) → remote value; raises RecordError.
        field_spec: the validated spec it was compiled from.
    """

    canonical: str
    remote: str
    rule: Rule
    direction: Direction
    kind: str | None
    read: Callable[[Mapping[str, Any]], Any]
    write: Callable[[Any, Callable[[str], Any]], Any]
    field_spec: FieldSpec | None = None

    @property
    def reads(self) -> bool:
        """Whether the field is read from the remote (direction ``in`` or ``both``)."""
        return self.direction is not Direction.OUT

    @property
    def writes(self) -> bool:
        """Whether the field is written to the remote (direction ``out`` or ``both``)."""
        return self.direction is not Direction.IN


class CompiledMapping:
    """A mapping ready to translate records. Build it with :func:`compile_mapping` or
    :func:`refsync.mapping.load_mapping`.

    Attributes:
        name: where the mapping came from (file path or ``builtin:<name>``).
        system: the remote system (``salesforce``).
        object: the remote object or stream (``Lead``).
        key_field: the remote field (path) holding the refsync id.
        fields: every field mapping, in file order.
        source: positions in the mapping file, for problems about it.
        spec: the validated spec it was compiled from.
    """

    def __init__(
        self,
        spec: MappingSpec,
        fields: Iterable[CompiledField],
        *,
        name: str,
        source: SourceMap | None,
        extra_remote_reads: Iterable[str] = (),
        write_needs_getter: bool = False,
    ) -> None:
        self.spec = spec
        self.name = name
        self.system = spec.system
        self.object = spec.object
        self.key_field = spec.key_field
        self.source = source
        self.fields: tuple[CompiledField, ...] = tuple(fields)
        self.rules: dict[str, Rule] = {f.canonical: f.rule for f in self.fields}
        self.directions: dict[str, Direction] = {f.canonical: f.direction for f in self.fields}
        self._readers = tuple((f.canonical, f.read) for f in self.fields if f.reads)
        self._read_key = path_getter(spec.key_field)
        self._set_key = path_setter(spec.key_field)
        self._writers = tuple(
            (
                f.canonical,
                f.canonical.startswith("custom."),
                f.canonical[7:],
                None if f.write is _write_as_is else f.write,
                f.remote if len(split_path(f.remote)) == 1 else None,
                path_setter(f.remote),
            )
            for f in self.fields
            if f.writes
        )
        """Per written field: canonical name, whether and under which key it is a custom
        field, its writer (None: written as it is), its remote field when that is not a
        dotted path (set directly), and the setter of its remote path."""
        self._write_needs_getter = write_needs_getter
        written_from = {"id", "custom"} | {split_path(f.canonical)[0] for f in self.fields
                                           if f.writes}
        self.written_from: tuple[str, ...] | None = \
            None if write_needs_getter else tuple(sorted(written_from))
        """The hub fields :meth:`to_remote` reads (``custom`` for the ``custom.<name>`` ones),
        ``id`` included; None when a transform reads fields of its own (``join``, ``template``),
        so that any field may be read."""
        self.written_layout = _layout([(spec.key_field, "text")] + [
            (f.remote, f.kind or "") for f in self.fields if f.writes])
        """``(remote path, kind)`` of each field :meth:`content_hash` covers, in its order."""
        self._hashed = _hashed_fields(self.written_layout)
        self.read_only_layout = _layout([(f.remote, f.kind or "") for f in self.fields
                                         if f.reads and not f.writes])
        """``(remote path, kind)`` of each field :meth:`read_only_hash` covers, in its order."""
        self._read_only_hashed = _hashed_fields(self.read_only_layout)
        top_level = {split_path(spec.key_field)[0]}
        top_level.update(split_path(f.remote)[0] for f in self.fields)
        top_level.update(split_path(path)[0] for path in extra_remote_reads)
        self.remote_fields: tuple[str, ...] = tuple(sorted(top_level))
        """Top-level remote fields to request when reading (every mapped field, in or out, so
        that written values can be hashed on the way back)."""

    def __repr__(self) -> str:
        size = len(self.fields)
        return f"CompiledMapping({self.name!r}, {self.system}/{self.object}, {size} fields)"

    def field(self, canonical: str) -> CompiledField:
        """The compiled mapping of one canonical field.

        Raises:
            KeyError: the mapping does not map it.
        """
        for item in self.fields:
            if item.canonical == canonical:
                return item
        raise KeyError(canonical)

    def to_canonical(self, record: Mapping[str, Any], *, strict: bool = False) -> MappedRecord:
        """Map a remote record (as a connector returns it) to canonical values.

        Only fields flowing ``in`` or ``both`` are read. A field that cannot be mapped becomes a
        RecordError in the result (the other fields still map) unless ``strict``.

        Raises:
            RecordError: with ``strict``, the first field that could not be mapped.
        """
        values: dict[str, Any] = {"id": None}
        errors: list[RecordError] = []
        key = self._read_key(record)
        if key.__class__ is str and _CANONICAL_UUID.match(key):
            values["id"] = key.lower()
        elif not t.is_blank(key):
            try:
                values["id"] = str(uuid.UUID(str(key).strip()))
            except ValueError:
                errors.append(RecordError(
                    f"{self.key_field} holds {str(key)[:60]!r}, which is not a refsync id (UUID)",
                    code="invalid_refsync_id", field="id", detail=f"value={key!r}"))
        for name, read in self._readers:
            try:
                values[name] = read(record)
            except RecordError as exc:
                exc.field = name
                errors.append(exc)
            except Exception as exc:  # one odd record must never stop the batch
                errors.append(_unexpected(name, exc))
        if strict and errors:
            raise errors[0]
        return MappedRecord(values, errors)

    def to_remote_result(self, record: Referral | Mapping[str, Any]) -> MappedRecord:
        """Like :meth:`to_remote`, but every field error is returned instead of raised."""
        # exact dicts (state store rows) are answered before the slower abstract-class checks
        if record.__class__ is dict or not isinstance(record, BaseModel):
            flat: Mapping[str, Any] = record
        else:
            flat = record.__dict__
        custom = flat.get("custom")
        if custom.__class__ is not dict and not isinstance(custom, Mapping):
            custom = {}
        get = _getter(flat, custom) if self._write_needs_getter else _no_getter
        payload: dict[str, Any] = {}
        errors: list[RecordError] = []
        refsync_id = flat.get("id")
        if t.is_blank(refsync_id):
            errors.append(RecordError("the record has no refsync id to write as the key",
                                      code="missing_refsync_id", field="id"))
        else:
            key_text = str(refsync_id)
            if _CANONICAL_UUID.match(key_text):
                self._set_key(payload, key_text.lower())
            else:
                errors.append(RecordError(
                    f"the refsync id {key_text[:60]!r} is not a UUID",
                    code="invalid_refsync_id", field="id", detail=f"value={refsync_id!r}"))
        for name, is_custom, custom_key, write, remote_key, put in self._writers:
            value = flat.get(name, _MISSING)
            if value is _MISSING:
                value = custom.get(custom_key) if is_custom else None
            try:
                if write is not None:
                    value = write(value, get)
                if remote_key is not None:
                    payload[remote_key] = value
                else:
                    put(payload, value)
            except RecordError as exc:
                exc.field = name
                errors.append(exc)
            except Exception as exc:  # one odd record must never stop the batch
                errors.append(_unexpected(name, exc))
        return MappedRecord(payload, errors)

    def to_remote(self, record: Referral | Mapping[str, Any]) -> dict[str, Any]:
        """Map a Referral (or a canonical dict, flat ``custom.x`` keys or nested ``custom``) to the
        remote payload: the key field plus every field flowing ``out`` or ``both``.

        Raises:
            RecordError: the first field that could not be mapped (e.g. a status with no remote
                value in the value map).
        """
        result = self.to_remote_result(record)
        if result.errors:
            raise result.errors[0]
        return result.values

    def content_hash(self, remote_record: Mapping[str, Any]) -> str:
        """Hash of the remote fields this mapping writes (key field included).

        Store ``content_hash(to_remote(referral))`` when writing; a record read back later whose
        ``content_hash`` is the same is our own write echoing back. Values are normalised first
        (blank/None, number and date formats; see :mod:`refsync.mapping.hashing`), so the way a
        system echoes a value does not change the hash.
        """
        return hash_values(remote_record, self._hashed)

    def read_only_hash(self, remote_record: Mapping[str, Any]) -> str:
        """Hash of the remote fields this mapping only reads (``direction: in``).

        :meth:`content_hash` cannot see a change to these fields (refsync never writes them,
        so a record read back holds whatever the remote put there); a record is unchanged only
        when both hashes are.
        """
        return hash_values(remote_record, self._read_only_hashed)


def layout_hash(layout: Iterable[Sequence[str]]) -> Callable[[Mapping[str, Any]], str]:
    """The hash :meth:`CompiledMapping.content_hash` (or :meth:`~CompiledMapping.read_only_hash`)
    makes for a mapping whose ``written_layout`` (``read_only_layout``) is ``layout``: what a
    record holds in the fields an earlier version of a mapping wrote (or only read)."""
    fields = _hashed_fields(layout)
    return lambda record: hash_values(record, fields)


def _layout(fields: list[tuple[str, str]]) -> tuple[tuple[str, str], ...]:
    """``(remote path, kind)`` pairs in the order the hashes take them: by path."""
    return tuple(sorted(fields, key=lambda item: item[0]))


def _hashed_fields(
    layout: Iterable[Sequence[str]],
) -> tuple[tuple[str, Callable[[Mapping[str, Any]], Any] | None, Callable[[Any], Any]], ...]:
    return tuple((path, _hash_reader(path), hash_normaliser(kind or None))
                 for path, kind in layout)


def _hash_reader(path: str) -> Callable[[Mapping[str, Any]], Any] | None:
    """How :func:`hash_values` reads ``path``: None for a top-level field (read directly)."""
    return None if len(split_path(path)) == 1 else path_getter(path)


def _unexpected(name: str, exc: Exception) -> RecordError:
    return RecordError(f"could not map {name}: {type(exc).__name__}", code="transform_failed",
                       field=name, detail=repr(exc)[:500])


def _no_getter(name: str) -> Any:
    return None


def _getter(flat: Mapping[str, Any], custom: Mapping[str, Any]) -> Callable[[str], Any]:
    def get(name: str) -> Any:
        value = flat.get(name, _MISSING)
        if value is _MISSING:
            return custom.get(name[7:]) if name.startswith("custom.") else None
        return value

    return get


# --- compilation ----------------------------------------------------------------------------

_IMPLICIT_READ: dict[str, Callable[[Any], Any]] = {
    "decimal": t.to_decimal,
    "datetime": t.datetime_reader,
}
_IMPLICIT_WRITE: dict[str, Callable[[Any], Any]] = {
    "decimal": t.decimal_writer,
    "datetime": t.datetime_writer("iso"),
}


def _as_text(value: Any) -> Any:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, (bool, int, float, Decimal)):
        return str(value).lower() if isinstance(value, bool) else str(value)
    raise RecordError(f"expected text, got {type(value).__name__}", code="invalid_text",
                      detail=f"value={value!r}"[:500])


def _as_status(value: Any) -> Any:
    if value is None or isinstance(value, ReferralStatus):
        return value
    status = _STATUS_BY_TEXT.get(str(value).strip().lower())
    if status is None:
        raise RecordError(
            f"status {str(value)[:60]!r} is not a referral status; allowed: "
            f"{', '.join(_STATUS_VALUES)}",
            code="invalid_status", detail=f"value={value!r}"[:500])
    return status


def _status_text(value: Any) -> Any:
    status = _as_status(value)
    return None if status is None else status.value


def _canonical_default(name: str, kind: str | None, default: Any, written: str | None) -> Any:
    """A field's ``default:`` as the canonical value it stands for: a status, text, or a value
    of the field's type (``Decimal`` for ``amount``), read as the mapping checks read it.

    Raises:
        ValueError: the default is not a value of the field's type (``load_mapping`` reports
            that as a problem in the file before compiling).
    """
    if default is None:
        return None
    try:
        if name == "status":
            return _as_status(default)
        if kind == "text":
            return _as_text(default)
        return typed_value(kind, default, written)
    except RecordError as exc:
        raise ValueError(f"{name} default: {exc.message}") from None


def _typed_steps(
    name: str, spec: FieldSpec, written: Callable[[tuple[str | int, ...]], str | None]
) -> list[Step]:
    """The field's steps, each ``{default: V}`` that follows a converting step built with V as
    a value of the type that step reads (``[to_decimal, {default: 0}]``: ``Decimal("0")``),
    read as the mapping checks read it (:func:`~refsync.mapping.typed.step_default`).

    Raises:
        ValueError: such a V is not a value of that type (``load_mapping`` reports that as a
            problem in the file before compiling).
    """
    steps = [build_step(step) for step in spec.transform]
    for index, step_spec in enumerate(spec.transform):
        found = step_default(name, steps, index, mapped=spec.values is not None,
                             direction=spec.direction.value)
        if found is None or not found.converted or not isinstance(step_spec, dict):
            continue
        value = step_spec["default"]
        try:
            typed = typed_value(found.kind, value, written(("transform", index, "default")))
        except RecordError as exc:
            raise ValueError(f"{name} {{default: {value!r}}} {found.where}: {exc.message}") \
                from None
        steps[index] = build_step({"default": typed})
    return steps


def _typed_value_map(
    name: str, spec: FieldSpec, kind: str | None,
    written: Callable[[tuple[str | int, ...]], str | None],
) -> ValueMap | None:
    """The field's value map, its canonical values read as values of the field's ``kind``.

    Raises:
        ValueError: a canonical value is not of that kind, or the map is ambiguous when writing
            (``load_mapping`` reports both as problems in the file before compiling).
    """
    if spec.values is None:
        return None
    texts = {key: text for key in spec.values
             if (text := written(("values", key))) is not None}
    try:
        pairs, choice = split_value_map(spec.values, kind, texts)
    except RecordError as exc:
        raise ValueError(f"{name} value map: {exc.message}") from None
    return ValueMap(pairs, choice, field=name)


def compile_field(
    name: str, spec: FieldSpec, *, source: SourceMap | None = None
) -> tuple[CompiledField, list[Step]]:
    """Compile one field mapping (already validated) into its read and write closures.

    ``source`` gives the text of values YAML read as something else (``1200.50`` as the float
    1200.5): a typed value is read as written
    (:func:`~refsync.mapping.typed.typed_value`).
    """

    def written(path: tuple[str | int, ...]) -> str | None:
        return None if source is None else source.retyped.get(("fields", name, *path))

    steps = _typed_steps(name, spec, written)
    explicit_kind = next((s.kind for s in reversed(steps) if s.kind), None)
    canonical_kind = CANONICAL_KINDS.get(name)
    kind = field_kind(name, steps)
    read_steps = tuple((s.read, s.read_uses_record) for s in steps if s.read is not None)
    write_steps = tuple((s.write, s.write_uses_record)
                        for s in reversed(steps) if s.write is not None)
    implicit_read: Callable[[Any], Any] | None = None
    implicit_write: Callable[[Any], Any] | None = None
    if explicit_kind is None and canonical_kind is not None:
        implicit_read = _IMPLICIT_READ.get(canonical_kind)
        implicit_write = _IMPLICIT_WRITE.get(canonical_kind)
        if canonical_kind == "text":
            implicit_read = _as_text
    value_map = _typed_value_map(name, spec, kind, written)
    if value_map is not None:
        implicit_read = implicit_write = None  # the map decides the values
    is_status = name == "status"
    default = _canonical_default(name, kind, spec.default, written(("default",)))
    read_remote = path_getter(spec.remote)
    map_in = value_map.to_canonical if value_map is not None else None
    map_out = value_map.to_remote if value_map is not None else None

    def read_general(record: Mapping[str, Any]) -> Any:
        value = read_remote(record)
        for fn, uses_record in read_steps:
            value = fn(value, record) if uses_record else fn(value)
        if implicit_read is not None:
            value = implicit_read(value)
        if map_in is not None:
            value = map_in(value)
        if default is not None and t.is_blank(value):
            value = default
        if is_status:
            value = _as_status(value)
        return value

    read: Callable[[Mapping[str, Any]], Any] = read_general
    if not any(uses_record for _, uses_record in read_steps):
        chain = [fn for fn, _ in read_steps]
        chain += [fn for fn in (implicit_read, map_in) if fn is not None]
        if default is not None:
            chain.append(t.default(default))
        if is_status:
            chain.append(_as_status)
        read = _chained(read_remote, chain)

    def write_general(value: Any, get: Callable[[str], Any]) -> Any:
        if default is not None and t.is_blank(value):
            value = default
        if is_status:
            value = _status_text(value)
        if map_out is not None:
            value = map_out(value)
        elif implicit_write is not None:
            value = implicit_write(value)
        for fn, uses_record in write_steps:
            value = fn(value, get) if uses_record else fn(value)
        return value

    write: Callable[[Any, Callable[[str], Any]], Any] = write_general
    if not any(uses_record for _, uses_record in write_steps):
        # the same steps in the same order, as a chain of one-argument functions
        write_chain = [t.default(default)] if default is not None else []
        if is_status:
            write_chain.append(_status_text)
        convert = map_out if map_out is not None else implicit_write
        if convert is not None:
            write_chain.append(convert)
        write_chain += [fn for fn, _ in write_steps]
        write = _chained_writer(write_chain)

    compiled = CompiledField(name, spec.remote, spec.rule, spec.direction, kind,
                             _fast_read(read_remote, read, spec, steps, name),
                             write, spec)
    return compiled, steps


def _write_as_is(value: Any, get: Callable[[str], Any]) -> Any:
    """The writer of a field written unchanged (no default, conversion or transform)."""
    return value


def _chained_writer(
    chain: list[Callable[[Any], Any]],
) -> Callable[[Any, Callable[[str], Any]], Any]:
    """The writer as one straight chain of one-argument functions (no step reads other
    canonical fields, so the getter goes unused)."""
    if not chain:
        return _write_as_is
    if len(chain) == 1:
        (only,) = chain

        def write_one(value: Any, get: Callable[[str], Any]) -> Any:
            return only(value)

        return write_one
    steps = tuple(chain)

    def write_many(value: Any, get: Callable[[str], Any]) -> Any:
        for fn in steps:
            value = fn(value)
        return value

    return write_many


def _chained(
    read_remote: Callable[[Mapping[str, Any]], Any], chain: list[Callable[[Any], Any]]
) -> Callable[[Mapping[str, Any]], Any]:
    """The reader as one straight chain of one-argument functions (the common case)."""
    if len(chain) == 1:
        (only,) = chain

        def read_one(record: Mapping[str, Any]) -> Any:
            return only(read_remote(record))

        return read_one
    if len(chain) == 2:
        first, second = chain

        def read_two(record: Mapping[str, Any]) -> Any:
            return second(first(read_remote(record)))

        return read_two
    steps = tuple(chain)

    def read_many(record: Mapping[str, Any]) -> Any:
        value = read_remote(record)
        for fn in steps:
            value = fn(value)
        return value

    return read_many


def _fast_read(
    read_remote: Callable[[Mapping[str, Any]], Any],
    general: Callable[[Mapping[str, Any]], Any],
    spec: FieldSpec,
    steps: list[Step],
    name: str,
) -> Callable[[Mapping[str, Any]], Any]:
    """A shorter reader for the common plain-text field (no transforms, map or default)."""
    if steps or spec.values is not None or spec.default is not None or \
            CANONICAL_KINDS.get(name) not in ("text", None):
        return general
    if name.startswith("custom."):
        return read_remote

    def read_text(record: Mapping[str, Any]) -> Any:
        value = read_remote(record)
        return value if value is None or value.__class__ is str else _as_text(value)

    return read_text


def compile_mapping(
    spec: MappingSpec, *, name: str = "<mapping>", source: SourceMap | None = None
) -> CompiledMapping:
    """Compile a validated spec. Validate first (``load_mapping`` does both); an invalid spec
    raises ``ValueError``/``KeyError`` here instead of a list of problems."""
    compiled: list[CompiledField] = []
    extra_reads: list[str] = []
    needs_getter = False
    for field_name, field_spec in spec.fields.items():
        item, steps = compile_field(field_name, field_spec, source=source)
        compiled.append(item)
        for step in steps:
            extra_reads.extend(step.remote_fields)
            needs_getter = needs_getter or (step.write_uses_record and item.writes)
    return CompiledMapping(spec, compiled, name=name, source=source,
                           extra_remote_reads=extra_reads, write_needs_getter=needs_getter)
