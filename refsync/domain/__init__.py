"""The canonical referral and partner models and the status lifecycle (pure, no I/O)."""

from refsync.domain.lifecycle import DEFAULT_TRANSITIONS, Lifecycle, ReferralStatus
from refsync.domain.models import CANONICAL_FIELDS, Partner, Referral

__all__ = [
    "CANONICAL_FIELDS",
    "DEFAULT_TRANSITIONS",
    "Lifecycle",
    "Partner",
    "Referral",
    "ReferralStatus",
]
