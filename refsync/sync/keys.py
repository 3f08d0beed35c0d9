"""Normalised match keys: how two records of the same prospect are recognised as one.

Each function returns ``None`` when the input gives no usable key, so that blanks never match.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from typing import Any

__all__ = [
    "FREE_EMAIL_DOMAINS",
    "company_key",
    "domain_key",
    "email_domain_key",
    "email_key",
    "match_keys",
    "phone_key",
]

FREE_EMAIL_DOMAINS = frozenset({
    "gmail.com", "googlemail.com", "yahoo.com", "yahoo.co.uk", "hotmail.com", "outlook.com",
    "live.com", "msn.com", "icloud.com", "me.com", "aol.com", "proton.me", "protonmail.com",
    "gmx.de", "gmx.net", "web.de", "mail.ru", "yandex.ru", "qq.com", "163.com",
})
"""Mailbox providers whose domain says nothing about the prospect's company."""

_LEGAL_SUFFIXES = re.compile(
    r"\b(inc|incorporated|corp|corporation|co|company|llc|ltd|limited|plc|gmbh|ag|sa|sas|sarl|"
    r"bv|nv|oy|ab|as|spa|srl|pty|kk)\b\.?",
)

_SCHEME = re.compile(r"^[a-z][a-z0-9+.-]*://")
_NOT_DIGIT = re.compile(r"\D")
_PUNCTUATION = re.compile(r"[^a-z0-9 ]+")
_SPACES = re.compile(r"\s+")


def email_key(value: Any) -> str | None:
    """``  Alice@Acme.COM `` → ``alice@acme.com``."""
    if not isinstance(value, str):
        return None
    text = value.strip().lower()
    return text if "@" in text and not text.startswith("@") and not text.endswith("@") else None


def email_domain_key(value: Any, *, ignore_free: bool = True) -> str | None:
    """The company domain of an email address; ``None`` for free mailbox providers."""
    return _company_domain(email_key(value), ignore_free=ignore_free)


def _company_domain(email: str | None, *, ignore_free: bool) -> str | None:
    """The domain of a normalised email (see :func:`email_domain_key`)."""
    if email is None:
        return None
    domain = email.rsplit("@", 1)[1]
    return None if ignore_free and domain in FREE_EMAIL_DOMAINS else domain


def domain_key(value: Any) -> str | None:
    """``https://www.Acme.com/about`` → ``acme.com``."""
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip().lower()
    text = _SCHEME.sub("", text)
    text = text.split("/", 1)[0].split("?", 1)[0].split("@")[-1].split(":", 1)[0]
    text = text.removeprefix("www.")
    return text if "." in text else None


def phone_key(value: Any) -> str | None:
    """Digits of a phone number with a leading ``+`` (``+1 (415) 555-0100`` → ``+14155550100``).

    Numbers with fewer than 7 digits are not keys.
    """
    if not isinstance(value, (str, int)):
        return None
    digits = _NOT_DIGIT.sub("", str(value))
    if str(value).strip().startswith("00"):
        digits = digits[2:]
    return f"+{digits}" if len(digits) >= 7 else None


def company_key(value: Any) -> str | None:
    """``ACME, Inc.`` and ``Acme Inc`` → ``acme``: case, accents, punctuation, legal form go."""
    if not isinstance(value, str):
        return None
    if value.isascii():  # decomposing and dropping non-ASCII would leave it as it is
        text = value.lower()
    else:
        text = unicodedata.normalize("NFKD", value).encode("ascii", "ignore").decode().lower()
    text = _PUNCTUATION.sub(" ", text)
    text = _LEGAL_SUFFIXES.sub(" ", text)
    text = _SPACES.sub(" ", text).strip()
    return text or None


def match_keys(values: Mapping[str, Any], *, ignore_free: bool = True) -> dict[str, str | None]:
    """Every match key of a canonical record, by match-rule name."""
    website = values.get("domain")
    email = email_key(values.get("email"))
    return {
        "email": email,
        "email_domain": _company_domain(email, ignore_free=ignore_free),
        "website_domain": domain_key(website) if website else None,
        "phone": phone_key(values.get("phone")),
        "company_name": company_key(values.get("company")),
    }
