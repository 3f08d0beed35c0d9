"""SQLModel tables of the state store (DESIGN section 4).

Only :mod:`refsync.state` reads or writes these tables; everything else goes through
:class:`refsync.state.store.StateStore`.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import JSON, Column, DateTime, Dialect, Index, Numeric, UniqueConstraint
from sqlalchemy.types import TypeDecorator
from sqlmodel import Field, SQLModel

__all__ = [
    "CursorRow",
    "EventRow",
    "LeaseRow",
    "LinkRow",
    "MappingLayoutRow",
    "OutboxRow",
    "PartnerRow",
    "QuarantineRow",
    "ReferralRow",
    "RunRow",
    "UTCDateTime",
    "utcnow",
]


def utcnow() -> datetime:
    """The current time in UTC (timezone-aware)."""
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Stores aware datetimes as UTC and always returns them aware, on SQLite as on PostgreSQL."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)

    def bind_processor(self, dialect: Dialect) -> Callable[[Any], Any] | None:
        """On SQLite, one function that converts and formats (the hot path of every write).

        It stores exactly what :meth:`process_bind_param` followed by SQLite's ``DATETIME``
        formatting stores (``YYYY-MM-DD HH:MM:SS.ffffff``, UTC, no offset) without the two
        layers of calls; anything but a ``datetime`` goes the general way.
        """
        general = super().bind_processor(dialect)
        if dialect.name != "sqlite" or general is None:
            return general

        # rows written together often share one timestamp object: remember the last one (as
        # one tuple, replaced whole, so that threads sharing the engine never mix two entries)
        last: list[tuple[Any, Any]] = [(None, None)]

        def process(value: Any) -> Any:
            if value.__class__ is datetime:
                cached = last[0]
                if cached[0] is value:
                    return cached[1]
                zone = value.tzinfo
                if zone is None:
                    text = value.isoformat(" ", "microseconds")
                elif zone is UTC:
                    text = value.isoformat(" ", "microseconds")[:-6]  # drop "+00:00"
                else:
                    text = value.astimezone(UTC).isoformat(" ", "microseconds")[:-6]
                last[0] = (value, text)
                return text
            return general(value)

        return process

    def result_processor(self, dialect: Dialect, coltype: Any) -> Callable[[Any], Any] | None:
        """On SQLite, parse the stored text and mark it UTC in one step (general otherwise)."""
        general = super().result_processor(dialect, coltype)
        if dialect.name != "sqlite" or general is None:
            return general
        parse = datetime.fromisoformat

        def process(value: Any) -> Any:
            if value.__class__ is str:
                try:
                    parsed = parse(value + "+00:00")  # the stored text is UTC without an offset
                except ValueError:
                    parsed = None
                if parsed is not None and parsed.tzinfo is not None:
                    return parsed
            return general(value)  # anything else: parse, then convert to UTC

        return process


def _json() -> Any:
    return Field(default_factory=dict, sa_column=Column(JSON, nullable=False))


class ReferralRow(SQLModel, table=True):
    """A canonical referral (the hub's record)."""

    __tablename__ = "referral"
    __table_args__ = (
        Index("ix_referral_email_norm", "email_norm"),
        Index("ix_referral_partner_status", "partner_id", "status"),
    )

    id: str = Field(primary_key=True, max_length=36)
    partner_id: str | None = Field(default=None, max_length=200)
    email: str | None = None
    email_norm: str | None = Field(default=None, description="trimmed lower-case email")
    first_name: str | None = None
    last_name: str | None = None
    company: str | None = None
    company_norm: str | None = Field(default=None, index=True, description="for matching")
    phone_norm: str | None = Field(default=None, index=True, description="E.164, for matching")
    domain: str | None = Field(default=None, index=True)
    phone: str | None = None
    title: str | None = None
    country: str | None = None
    status: str = Field(default="submitted", max_length=32)
    status_reason: str | None = None
    amount: Decimal | None = Field(default=None, sa_column=Column(Numeric(18, 2)))
    currency: str | None = Field(default=None, max_length=3)
    submitted_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    closed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    source_system: str | None = None
    notes: str | None = None
    custom: dict[str, Any] = _json()
    provenance: dict[str, Any] = _json()
    version: int = 1
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class PartnerRow(SQLModel, table=True):
    """A partner who submits referrals."""

    __tablename__ = "partner"

    id: str = Field(primary_key=True, max_length=200)
    name: str | None = None
    email: str | None = None
    company: str | None = None
    tier: str | None = None
    status: str | None = None
    notify_on: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class LinkRow(SQLModel, table=True):
    """Where a canonical record lives in a system: (system, object, external id) ↔ its id."""

    __tablename__ = "link"
    __table_args__ = (
        UniqueConstraint("system", "object", "external_id", name="uq_link_remote"),
        Index("ix_link_canonical", "entity", "canonical_id", "system"),
    )

    id: int | None = Field(default=None, primary_key=True)
    system: str = Field(max_length=64)
    object: str = Field(max_length=128)
    external_id: str = Field(max_length=255)
    entity: str = Field(default="referral", max_length=32)
    canonical_id: str = Field(max_length=200)
    last_read_hash: str | None = Field(default=None, max_length=64)
    last_written_hash: str | None = Field(default=None, max_length=64)
    remote_modstamp: datetime | None = Field(default=None, sa_type=UTCDateTime)
    remote_values: dict[str, Any] | None = Field(
        default=None, sa_column=Column(JSON, nullable=True),
        description="the remote's last known values of the fields its mapping only fills when "
                    "blank (set_if_empty), by remote path; None when its mapping has none")
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class CursorRow(SQLModel, table=True):
    """How far one stream of one system has been read; committed with the data it covers."""

    __tablename__ = "cursor"

    system: str = Field(primary_key=True, max_length=64)
    stream: str = Field(primary_key=True, max_length=128)
    value: dict[str, Any] = _json()
    run_id: str | None = Field(default=None, max_length=36)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class EventRow(SQLModel, table=True):
    """One entry of the append-only ledger of what happened to referrals and why."""

    __tablename__ = "event"
    __table_args__ = (Index("ix_event_referral", "referral_id", "id"),)

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    run_id: str | None = Field(default=None, max_length=36, index=True)
    kind: str = Field(max_length=64)
    referral_id: str | None = Field(default=None, max_length=36)
    system: str | None = Field(default=None, max_length=64)
    stream: str | None = Field(default=None, max_length=128)
    payload: dict[str, Any] = _json()


class OutboxRow(SQLModel, table=True):
    """A pending write of one referral to one stream; at most one per referral and stream."""

    __tablename__ = "outbox"
    __table_args__ = (
        UniqueConstraint("system", "stream", "referral_id", name="uq_outbox_target"),
        Index("ix_outbox_due", "system", "stream", "state", "next_attempt_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    referral_id: str = Field(max_length=36)
    system: str = Field(max_length=64)
    stream: str = Field(max_length=128)
    payload: dict[str, Any] = _json()
    payload_hash: str = Field(max_length=64)
    state: str = Field(default="pending", max_length=16)
    attempts: int = 0
    next_attempt_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    last_error: str | None = None
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class QuarantineRow(SQLModel, table=True):
    """A record that could not be read or written, kept with its reason until replayed."""

    __tablename__ = "quarantine"
    __table_args__ = (Index("ix_quarantine_open", "resolved_at", "system"),)

    id: int | None = Field(default=None, primary_key=True)
    run_id: str | None = Field(default=None, max_length=36, index=True)
    system: str = Field(max_length=64)
    stream: str = Field(max_length=128)
    direction: str = Field(max_length=8)
    referral_id: str | None = Field(default=None, max_length=36)
    external_id: str | None = Field(default=None, max_length=255)
    payload: dict[str, Any] = _json()
    error_code: str = Field(max_length=128)
    message: str
    attempts: int = 1
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    resolved_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class RunRow(SQLModel, table=True):
    """One sync cycle: what started it, how it ended, what it counted."""

    __tablename__ = "run"
    __table_args__ = (
        Index("ix_run_started", "started_at"),
        # A scheduled tick runs at most once, whichever daemon fires it first.
        Index("ux_run_job_tick", "job", "scheduled_for", unique=True),
    )

    id: str = Field(primary_key=True, max_length=36)
    job: str = Field(default="sync", max_length=128)
    trigger: str = Field(max_length=32)
    status: str = Field(default="running", max_length=16)
    instance: str = Field(max_length=200)
    started_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    finished_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    counts: dict[str, Any] = _json()
    error: str | None = None
    scheduled_for: datetime | None = Field(default=None, sa_type=UTCDateTime)


class LeaseRow(SQLModel, table=True):
    """Who runs a job until when; ``epoch`` grows on every take-over and fences checkpoints."""

    __tablename__ = "lease"

    name: str = Field(primary_key=True, max_length=128)
    holder: str | None = Field(default=None, max_length=200)
    epoch: int = 0
    expires_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    heartbeat_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class MappingLayoutRow(SQLModel, table=True):
    """The fields a version of a mapping writes and only reads, by the fingerprint link hashes
    carry.

    A link's ``last_written_hash`` names the mapping that wrote the record; with that
    mapping's written fields, a record read back after the mapping was edited can still be
    told to hold what refsync wrote (see ``refsync.sync.link_hashes``).
    """

    __tablename__ = "mapping_layout"

    system: str = Field(primary_key=True, max_length=64)
    object: str = Field(primary_key=True, max_length=128)
    fingerprint: str = Field(primary_key=True, max_length=16)
    written: list[list[str]] = Field(sa_column=Column(JSON, nullable=False))
    """``[remote path, kind]`` of each field written (the key field's kind is ``text``)."""
    read_only: list[list[str]] = Field(sa_column=Column(JSON, nullable=False))
    """``[remote path, kind]`` of each field only read (``direction: in``)."""
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
