"""Logging, configured in one place: structlog, JSON lines or console, with secret redaction.

Every log line passes through :class:`Redactor` before it is rendered, so a secret value that
refsync knows about (from the configuration, or registered at run time such as an OAuth access
token) never reaches a log, even inside an exception's text. Fields whose names look like
credentials (``token``, ``password``, ``authorization``...) are masked whatever their value.
Standard-library loggers (uvicorn, urllib3) are routed through the same processors.
"""

from __future__ import annotations

import logging
import re
import sys
import threading
from collections.abc import Iterable, MutableMapping
from typing import Any, Literal, TextIO

import structlog

__all__ = ["REDACTED", "Redactor", "configure_logging", "get_logger", "redactor", "register_secret"]

REDACTED = "***"

_SENSITIVE_KEY = re.compile(
    r"(pass(word)?|secret|token|authorization|api[_-]?key|session[_-]?id|private[_-]?key|cookie)",
    re.I,
)
_TOKEN_PATTERNS = [
    re.compile(r"(?i)(bearer|basic)\s+[A-Za-z0-9._~+/=\-]{8,}"),
    re.compile(r"\bpat-[a-z0-9]{2,}-[A-Za-z0-9\-]{8,}\b"),
    re.compile(r"(?i)(access_token|refresh_token|client_secret|password)=([^&\s]+)"),
]


class Redactor:
    """A structlog processor that masks secrets in every value of an event, recursively.

    Args:
        secrets: exact values to mask wherever they appear (substrings included).
    """

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._lock = threading.Lock()
        self._secrets: set[str] = set()
        self._pattern: re.Pattern[str] | None = None
        for value in secrets:
            self.add(value)

    def add(self, secret: str) -> None:
        """Mask ``secret`` from now on. Values shorter than 4 characters are ignored."""
        if not secret or len(secret) < 4:
            return
        with self._lock:
            self._secrets.add(secret)
            alternatives = sorted(self._secrets, key=len, reverse=True)
            self._pattern = re.compile("|".join(re.escape(s) for s in alternatives))

    def clear(self) -> None:
        """Forget every registered secret."""
        with self._lock:
            self._secrets.clear()
            self._pattern = None

    def redact_text(self, text: str) -> str:
        """Mask known secrets and token-like substrings in a string."""
        if self._pattern is not None:
            text = self._pattern.sub(REDACTED, text)
        for pattern in _TOKEN_PATTERNS:
            text = pattern.sub(_mask_match, text)
        return text

    def redact(self, value: Any, key: str | None = None) -> Any:
        """Mask secrets in any JSON-like value; values under sensitive keys are masked whole."""
        if key is not None and _SENSITIVE_KEY.search(key) and value not in (None, "", False):
            return REDACTED
        if isinstance(value, str):
            return self.redact_text(value)
        if isinstance(value, dict):
            return {k: self.redact(v, str(k)) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [self.redact(v) for v in value]
        if isinstance(value, BaseException):
            return self.redact_text(f"{type(value).__name__}: {value}")
        return value

    def __call__(
        self, _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        for key in list(event_dict):
            if key == "event":
                event_dict[key] = self.redact(event_dict[key])
            else:
                event_dict[key] = self.redact(event_dict[key], key)
        return event_dict


def _mask_match(match: re.Match[str]) -> str:
    if match.re.pattern.startswith("(?i)(access_token"):
        return f"{match.group(1)}={REDACTED}"
    if match.lastindex:
        return f"{match.group(1)} {REDACTED}"
    return REDACTED


redactor = Redactor()
"""The process-wide redactor used by :func:`configure_logging`."""


def register_secret(value: str) -> None:
    """Mask ``value`` in every log line from now on (e.g. a freshly issued access token)."""
    redactor.add(value)


def configure_logging(
    *,
    level: str = "info",
    fmt: Literal["auto", "json", "console"] = "auto",
    secrets: Iterable[str] = (),
    stream: TextIO | None = None,
) -> None:
    """Configure structlog and the standard library's logging for the whole process.

    Args:
        level: debug, info, warning or error.
        fmt: ``json`` (one JSON object a line), ``console`` (readable), or ``auto``: console on a
            TTY, JSON otherwise.
        secrets: values to mask in every line (configuration secrets).
        stream: where lines go (standard error by default, keeping standard output for results).
    """
    output = stream or sys.stderr
    for secret in secrets:
        redactor.add(secret)
    use_json = fmt == "json" or (fmt == "auto" and not output.isatty())
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if use_json
        else structlog.dev.ConsoleRenderer(colors=output.isatty())
    )
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        redactor,
    ]
    numeric_level = logging.getLevelNamesMapping()[level.upper()]
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        wrapper_class=structlog.make_filtering_bound_logger(numeric_level),
        logger_factory=structlog.stdlib.LoggerFactory(),
        cache_logger_on_first_use=False,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[structlog.stdlib.ExtraAdder(), *shared],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
    )
    handler = logging.StreamHandler(output)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(numeric_level)
    for noisy in ("urllib3", "uvicorn.access", "alembic"):
        logging.getLogger(noisy).setLevel(max(numeric_level, logging.WARNING))


def get_logger(name: str | None = None, **context: Any) -> Any:
    """A structlog logger, optionally bound to ``context`` (e.g. run_id, system, stream)."""
    logger = structlog.get_logger(name)
    return logger.bind(**context) if context else logger
