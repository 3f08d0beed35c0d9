"""The transform vocabulary as small pure functions.

Every function here takes a value (and, for the few that combine fields, a record) and returns
the transformed value. Bad input never raises anything but
:class:`~refsync.errors.RecordError`, so one odd record is quarantined instead of stopping a
batch. Functions that take an argument are factories: they check the argument once and return a
closure, so the per-record path does no parsing.

Conventions shared by all transforms:

- *blank* means ``None``, an empty or whitespace-only string, or an empty list or dict;
  text transforms leave blanks and non-text values untouched;
- numbers are returned as :class:`~decimal.Decimal` (``to_decimal``) or ``int`` when read, and
  as ``float`` / ``int`` when written, so the payload serialises as JSON numbers;
- datetimes are read into timezone-aware UTC ``datetime`` objects; numbers and digit strings
  are epoch **milliseconds** (what HubSpot uses).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, date, datetime, time
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import urlsplit

from refsync.errors import RecordError

__all__ = [
    "coalesce",
    "date_reader",
    "date_writer",
    "datetime_reader",
    "datetime_writer",
    "decimal_writer",
    "default",
    "domain_from_email",
    "domain_from_url",
    "email",
    "is_blank",
    "join",
    "lower",
    "phone",
    "regex_replace",
    "split_name",
    "strip",
    "template",
    "title",
    "to_bool",
    "to_decimal",
    "to_int",
    "truncate",
    "upper",
]

_MAX_EXPONENT = 30
_THOUSANDS = re.compile(r"^[+-]?\d{1,3}(,\d{3})+(\.\d+)?$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s.]+$")
_DOMAIN = re.compile(
    r"^(?=.{1,253}$)(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z][a-z0-9-]{1,62}$"
)
_E164 = re.compile(r"^\+[1-9]\d{7,14}$")
_SIMPLE_URL = re.compile(r"^(?:https?://)?([a-z0-9.-]+)(?::\d{1,5})?(?:[/?#].*)?$", re.DOTALL)
_PHONE_EXTENSION = re.compile(r"\s*(?:ext\.?|extension|x|#)\s*\d{1,6}\s*$", re.IGNORECASE)
_PHONE_PUNCTUATION = str.maketrans("", "", " \t\n\r\f\v\u00a0\u2007\u202f-.()/")
_TRUE = frozenset({"true", "t", "yes", "y", "1", "on", "checked"})
_FALSE = frozenset({"false", "f", "no", "n", "0", "off", "unchecked"})


def _error(code: str, message: str, value: Any) -> RecordError:
    return RecordError(message, code=code, detail=f"value={value!r}"[:500])


def is_blank(value: Any) -> bool:
    """Whether ``value`` carries no information (None, whitespace-only text, empty list/dict)."""
    if value is None:
        return True
    if isinstance(value, str):
        return not value.strip()
    if isinstance(value, (list, dict, tuple)):
        return not value
    return False


# --- text -----------------------------------------------------------------------------------


def strip(value: Any) -> Any:
    """Remove leading and trailing whitespace from text."""
    return value.strip() if isinstance(value, str) else value


def lower(value: Any) -> Any:
    """Lower-case text."""
    return value.lower() if isinstance(value, str) else value


def upper(value: Any) -> Any:
    """Upper-case text."""
    return value.upper() if isinstance(value, str) else value


def title(value: Any) -> Any:
    """Capitalise each word (after spaces and hyphens): ``"jean-luc PICARD"`` → "Jean-Luc Picard".

    Unlike ``str.title`` it leaves the letter after an apostrophe alone (``"they're"``).
    """
    if not isinstance(value, str):
        return value
    chars = list(value.lower())
    start = True
    for index, char in enumerate(chars):
        if start and char.isalpha():
            chars[index] = char.upper()
        start = char.isspace() or char == "-"
    return "".join(chars)


def truncate(length: int) -> Callable[[Any], Any]:
    """Cut text to at most ``length`` characters (remote text fields have a maximum length)."""

    def apply(value: Any) -> Any:
        if isinstance(value, str) and len(value) > length:
            return value[:length]
        return value

    return apply


def default(fallback: Any) -> Callable[[Any], Any]:
    """Use ``fallback`` when the value is blank."""

    def apply(value: Any) -> Any:
        return fallback if is_blank(value) else value

    return apply


def regex_replace(pattern: re.Pattern[str], replacement: str) -> Callable[[Any], Any]:
    """Replace every match of a precompiled ``pattern`` in text with ``replacement``."""

    def apply(value: Any) -> Any:
        return pattern.sub(replacement, value) if isinstance(value, str) else value

    return apply


# --- names and multi-field ------------------------------------------------------------------


def split_name(part: str) -> Callable[[Any], Any]:
    """Take the ``"first"`` or ``"last"`` part of a full name.

    The last word is the last name and everything before it the first name; ``"Doe, Jane"``
    (comma form) is understood too. A single word is a last name (as CRMs that require a last
    name expect), so its first name is ``None``.
    """
    want_first = part == "first"

    def apply(value: Any) -> Any:
        if is_blank(value):
            return None
        if not isinstance(value, str):
            raise _error("invalid_name", "a name must be text", value)
        if "," in value:
            last, _, first = value.partition(",")
        else:
            words = value.split()
            first, last = " ".join(words[:-1]), words[-1]
        chosen = (first if want_first else last).strip()
        return chosen or None

    return apply


def join(
    fields: Sequence[str], separator: str = " "
) -> Callable[[Any, Callable[[str], Any]], Any]:
    """Join the non-blank values of canonical ``fields`` (read via ``get``) with ``separator``."""
    names = tuple(fields)

    def apply(value: Any, get: Callable[[str], Any]) -> Any:
        parts = [str(item).strip() for item in (get(name) for name in names) if not is_blank(item)]
        return separator.join(parts) if parts else None

    return apply


_PLACEHOLDER = re.compile(r"\{\{|\}\}|\{([^{}]*)\}|[{}]")


def parse_template(text: str) -> list[tuple[str, str | None]]:
    """Split a template into ``(literal, field_name | None)`` parts.

    ``{name}`` is a field, ``{{`` and ``}}`` are literal braces.

    Raises:
        ValueError: on an unmatched brace or an empty ``{}``.
    """
    parts: list[tuple[str, str | None]] = []
    literal: list[str] = []
    position = 0
    for match in _PLACEHOLDER.finditer(text):
        literal.append(text[position:match.start()])
        position = match.end()
        token = match.group(0)
        if token in ("{{", "}}"):
            literal.append(token[0])
        elif token in ("{", "}"):
            raise ValueError(f"unmatched '{token}' at position {match.start() + 1}")
        else:
            name = (match.group(1) or "").strip()
            if not name:
                raise ValueError("empty placeholder '{}'")
            parts.append(("".join(literal), name))
            literal = []
    literal.append(text[position:])
    if literal:
        parts.append(("".join(literal), None))
    return parts


def template(parts: Sequence[tuple[str, str | None]]) -> Callable[[Any, Callable[[str], Any]], Any]:
    """Fill ``{field}`` placeholders (from :func:`parse_template`) with canonical values.

    Blank fields become empty text; a result that is blank after stripping is ``None``.
    """
    frozen = tuple(parts)

    def apply(value: Any, get: Callable[[str], Any]) -> Any:
        pieces: list[str] = []
        for literal, name in frozen:
            pieces.append(literal)
            if name is not None:
                item = get(name)
                if not is_blank(item):
                    pieces.append(str(item))
        text = "".join(pieces).strip()
        return text or None

    return apply


def coalesce(
    readers: Sequence[Callable[[Mapping[str, Any]], Any]],
) -> Callable[[Any, Mapping[str, Any]], Any]:
    """When the value is blank, take the first non-blank of other remote fields (``readers``)."""
    frozen = tuple(readers)

    def apply(value: Any, record: Mapping[str, Any]) -> Any:
        if not is_blank(value):
            return value
        for read in frozen:
            candidate = read(record)
            if not is_blank(candidate):
                return candidate
        return value

    return apply


# --- numbers and booleans -------------------------------------------------------------------


def to_decimal(value: Any) -> Any:
    """Parse a number into a Decimal: ``"1,234.50"`` → ``Decimal("1234.50")``; blank → None."""
    if is_blank(value):
        return None
    if isinstance(value, bool):
        raise _error("invalid_number", "expected a number, got a boolean", value)
    if isinstance(value, Decimal):
        number = value
    elif isinstance(value, int):
        number = Decimal(value)
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise _error("invalid_number", "expected a finite number", value)
        number = Decimal(repr(value))
    elif isinstance(value, str):
        text = value.strip()
        if _THOUSANDS.match(text):
            text = text.replace(",", "")
        try:
            number = Decimal(text)
        except InvalidOperation:
            message = f"expected a number, got {value[:60]!r}"
            raise _error("invalid_number", message, value) from None
    else:
        raise _error("invalid_number", f"expected a number, got {type(value).__name__}", value)
    if not number.is_finite() or not -_MAX_EXPONENT <= number.adjusted() <= _MAX_EXPONENT:
        raise _error("invalid_number", "number is not finite or out of range", value)
    return number


def decimal_writer(value: Any) -> Any:
    """Write a decimal as a float (a JSON number); accepts anything :func:`to_decimal` reads."""
    number = to_decimal(value)
    return None if number is None else float(number)


def to_int(value: Any) -> Any:
    """Parse a whole number; ``"12.0"`` is 12, ``"12.5"`` is an error (never silently rounded)."""
    number = to_decimal(value)
    if number is None:
        return None
    if number != number.to_integral_value():
        raise _error("invalid_integer", f"expected a whole number, got {number}", value)
    return int(number)


def to_bool(value: Any) -> Any:
    """Parse a yes/no value: true/false, yes/no, y/n, 1/0, on/off, checked/unchecked."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        text = value.strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
    message = f"expected yes/no or true/false, got {str(value)[:60]!r}"
    raise _error("invalid_boolean", message, value)


# --- dates ----------------------------------------------------------------------------------


def _from_epoch_ms(value: Any, original: Any) -> datetime:
    try:
        return datetime.fromtimestamp(int(value) / 1000, tz=UTC)
    except (OverflowError, OSError, ValueError):
        raise _error("invalid_datetime", "epoch milliseconds out of range", original) from None


def datetime_reader(value: Any) -> Any:
    """Parse an ISO 8601 text, epoch milliseconds or a date into an aware UTC datetime.

    Salesforce's ``2024-01-05T10:00:00.000+0000`` and HubSpot's epoch-millisecond strings both
    work; a datetime without a zone is taken as UTC.
    """
    if is_blank(value):
        return None
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, date):
        moment = datetime.combine(value, time(), tzinfo=UTC)
    elif isinstance(value, bool):
        raise _error("invalid_datetime", "expected a date and time, got a boolean", value)
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        if isinstance(value, float) and not math.isfinite(value):
            raise _error("invalid_datetime", "expected a date and time", value)
        moment = _from_epoch_ms(value, value)
    elif isinstance(value, str):
        text = value.strip()
        if text.isdigit() and len(text) != 8:  # eight digits is a basic ISO date (20240105)
            moment = _from_epoch_ms(text, value)
        else:
            try:
                moment = datetime.fromisoformat(text)
            except ValueError:
                raise _error(
                    "invalid_datetime", f"expected an ISO 8601 date-time, got {value[:60]!r}", value
                ) from None
    else:
        raise _error("invalid_datetime", f"expected a date and time, got {type(value).__name__}",
                     value)
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        raise _error("invalid_datetime", "date-time out of range", value) from None


def datetime_writer(style: str) -> Callable[[Any], Any]:
    """Write a datetime as ISO 8601 UTC (``"iso"``, ``...Z``) or epoch milliseconds."""

    def apply(value: Any) -> Any:
        moment = datetime_reader(value)
        if moment is None:
            return None
        if style == "epoch_ms":
            return round(moment.timestamp() * 1000)
        spec = "milliseconds" if moment.microsecond else "seconds"
        return moment.replace(tzinfo=None).isoformat(timespec=spec) + "Z"

    return apply


def date_reader(value: Any) -> Any:
    """Parse ``YYYY-MM-DD``, an ISO date-time (its UTC date) or epoch milliseconds into a date."""
    if is_blank(value):
        return None
    if isinstance(value, date) and not isinstance(value, datetime):
        return value
    if isinstance(value, str):
        text = value.strip()
        if len(text) == 10 and not text.isdigit():
            try:
                return date.fromisoformat(text)
            except ValueError:
                message = f"expected a date, got {value[:60]!r}"
                raise _error("invalid_date", message, value) from None
    try:
        moment = datetime_reader(value)
    except RecordError as exc:
        raise _error("invalid_date", exc.message.replace("date and time", "date"), value) from None
    return moment.date()


def date_writer(style: str) -> Callable[[Any], Any]:
    """Write a date as ``YYYY-MM-DD`` (``"iso"``) or epoch milliseconds of its UTC midnight."""

    def apply(value: Any) -> Any:
        day = date_reader(value)
        if day is None:
            return None
        if style == "epoch_ms":
            return round(datetime.combine(day, time(), tzinfo=UTC).timestamp() * 1000)
        return day.isoformat()

    return apply


# --- contact details ------------------------------------------------------------------------


def email(value: Any) -> Any:
    """Normalise an e-mail address (trimmed, lower-case) and check its shape."""
    if is_blank(value):
        return None
    if not isinstance(value, str):
        raise _error("invalid_email", "an e-mail address must be text", value)
    text = value.strip().lower()
    if not _EMAIL.match(text):
        raise _error("invalid_email", f"not an e-mail address: {value[:80]!r}", value)
    return text


def phone(default_country_code: str | None) -> Callable[[Any], Any]:
    """Normalise a phone number to E.164 (``+14155550100``).

    Spaces, dashes, dots, slashes and brackets are ignored, a trailing extension (``x12``,
    ``ext. 12``) is dropped, ``00`` is read as ``+``. A number without a country code gets
    ``default_country_code`` (its single leading trunk ``0`` removed); without one it is an error.
    """
    code = default_country_code

    def apply(value: Any) -> Any:
        if is_blank(value):
            return None
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            raise _error("invalid_phone", "a phone number must be text", value)
        text = str(value).strip()
        if _E164.match(text):
            return text
        if "x" in text or "X" in text or "#" in text:
            text = _PHONE_EXTENSION.sub("", text)
        international = text.startswith("+") or text.startswith("00")
        text = text[1:] if text.startswith("+") else text[2:] if text.startswith("00") else text
        digits = text.translate(_PHONE_PUNCTUATION)
        if not digits.isascii() or not digits.isdigit():
            raise _error("invalid_phone", f"not a phone number: {str(value)[:60]!r}", value)
        if not international:
            if code is None:
                raise _error(
                    "invalid_phone",
                    f"phone number {str(value)[:40]!r} has no country code (+...)",
                    value,
                )
            if code == "1" and len(digits) == 11 and digits.startswith("1"):
                pass
            else:
                digits = code + (digits[1:] if digits.startswith("0") else digits)
        if not 8 <= len(digits) <= 15 or digits.startswith("0"):
            raise _error("invalid_phone", f"not a valid E.164 number: {str(value)[:60]!r}", value)
        return "+" + digits

    return apply


def _checked_domain(domain: str, original: Any) -> str:
    domain = domain.strip().strip(".").lower()
    if domain.startswith("www."):
        domain = domain[4:]
    if not _DOMAIN.match(domain):
        raise _error("invalid_domain", f"no domain found in {str(original)[:80]!r}", original)
    return domain


def domain_from_email(value: Any) -> Any:
    """The domain of an e-mail address (``jane@Acme.com`` → ``acme.com``); a bare domain passes."""
    if is_blank(value):
        return None
    if not isinstance(value, str):
        raise _error("invalid_domain", "an e-mail address must be text", value)
    return _checked_domain(value.rpartition("@")[2], value)


def domain_from_url(value: Any) -> Any:
    """The host of a web address without ``www.``: ``https://www.acme.com/x`` → ``acme.com``."""
    if is_blank(value):
        return None
    if not isinstance(value, str):
        raise _error("invalid_domain", "a web address must be text", value)
    text = value.strip()
    simple = _SIMPLE_URL.match(text.lower())
    if simple:
        return _checked_domain(simple.group(1), value)
    if "://" not in text:
        text = "http://" + text
    try:
        host = urlsplit(text).hostname
    except ValueError:
        host = None
    if not host:
        raise _error("invalid_domain", f"no domain found in {value[:80]!r}", value)
    return _checked_domain(host, value)
