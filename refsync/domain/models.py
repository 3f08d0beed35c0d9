"""Canonical Referral and Partner models shared by every system refsync talks to."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from refsync.domain.lifecycle import ReferralStatus

__all__ = ["CANONICAL_FIELDS", "FieldProvenance", "Partner", "Referral"]


class FieldProvenance(BaseModel):
    """Which system last set a canonical field's value, and when."""

    model_config = ConfigDict(frozen=True)

    system: str
    at: datetime


class Referral(BaseModel):
    """A partner's referral of a prospect: the hub's canonical record.

    ``custom`` holds extra mapped fields (``custom.<name>`` in mappings); ``provenance`` maps a
    canonical field name to the system and time that last set it.
    """

    model_config = ConfigDict(validate_assignment=False)

    id: uuid.UUID = Field(default_factory=uuid.uuid4)
    partner_id: str | None = None
    email: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    company: str | None = None
    domain: str | None = None
    phone: str | None = None
    title: str | None = None
    country: str | None = None
    status: ReferralStatus = ReferralStatus.SUBMITTED
    status_reason: str | None = None
    amount: Decimal | None = None
    currency: str | None = None
    submitted_at: datetime | None = None
    closed_at: datetime | None = None
    source_system: str | None = None
    notes: str | None = None
    custom: dict[str, Any] = Field(default_factory=dict)
    provenance: dict[str, FieldProvenance] = Field(default_factory=dict)
    version: int = 1


class Partner(BaseModel):
    """A partner who submits referrals and is told how they progress."""

    id: str
    name: str | None = None
    email: str | None = None
    company: str | None = None
    tier: str | None = None
    status: str | None = None
    notify_on: list[ReferralStatus] = Field(default_factory=list)


CANONICAL_FIELDS: frozenset[str] = frozenset(
    name
    for name in Referral.model_fields
    if name not in {"id", "custom", "provenance", "version"}
) | {"id"}
"""Names a mapping may use for a canonical field (plus ``custom.<name>``)."""
