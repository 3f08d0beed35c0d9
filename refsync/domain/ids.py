"""Referral ids: how refsync makes them and how it shows them to people."""

from __future__ import annotations

import os
import re
import time
import uuid

__all__ = ["SHORT_ID_LENGTH", "is_id_fragment", "new_referral_id", "short_referral_id"]

SHORT_ID_LENGTH = 12
"""Hex digits of a referral id shown in tables, logs and reasons (the random tail)."""

_MASK_48 = (1 << 48) - 1
_CLEAR_VERSION_AND_VARIANT = ~(0xF << 76 | 0x3 << 62) & ((1 << 128) - 1)
_VERSION_7_AND_VARIANT = 0x7 << 76 | 0x2 << 62
_FRAGMENT = re.compile(r"[0-9a-f-]{4,36}")


def new_referral_id() -> str:
    """A new refsync id: a UUID that starts with its creation time (the RFC 9562 version 7 layout).

    48 bits of Unix time in milliseconds, then 74 random bits. Ids made one after the other
    sort together, so the state store's indexes on referral ids (referrals, links, outbox rows,
    events) grow at their end instead of at random places: a backfill rewrites far fewer
    database pages per commit, and the pages it works on stay in memory however large the
    store grows. The id is as unique as a random (version 4) UUID and reads the same to every
    system it is written to.
    """
    stamp = time.time_ns() // 1_000_000 & _MASK_48
    value = stamp << 80 | int.from_bytes(os.urandom(10), "big")
    value = value & _CLEAR_VERSION_AND_VARIANT | _VERSION_7_AND_VARIANT
    return str(uuid.UUID(int=value))


def short_referral_id(referral_id: str) -> str:
    """The part of a referral id people read: its last 12 hex digits.

    Referral ids start with their creation time, so the referrals of one backfill share their
    first digits; the last 12 are random (48 bits) and tell them apart. ``refsync referrals
    show`` accepts this tail, a unique prefix or the whole id.
    """
    return referral_id[-SHORT_ID_LENGTH:]


def is_id_fragment(text: str) -> bool:
    """Whether ``text`` can be part of a referral id (4 to 36 lowercase hex digits and dashes)."""
    return _FRAGMENT.fullmatch(text) is not None
