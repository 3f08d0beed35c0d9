"""SQLModel tables of the state store (DESIGN section 4).

Only :mod:`refsync.state` reads or writes these tables; everything else goes through
:class:`refsync.state.store.StateStore`.
"""

from __future__ import annotations

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
