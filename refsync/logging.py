"""Logging, configured in one place: structlog, JSON lines or console, with secret redaction.

Every log line passes through :class:`Redactor` before it is rendered, so a secret value that
refsync knows about (from the configuration, or registered at run time such as an OAuth access
token) never reaches a log, even inside an exception's text. Fields whose names look like
credentials (``token``, ``password``, ``authorization``...) are masked whatever their value, and
so are token-shaped substrings (``Bearer …``, ``"access_token": "…"``, a Salesforce session id,
a PEM private key). Standard-library loggers (uvicorn, urllib3) are routed through the same
processors.

Text that leaves refsync by another way (an error printed by the CLI, stored in the state
database) goes through :func:`redact_text`, the same masking as a log line. Values bound with
:func:`log_context` (such as ``run_id``) are added to every line written inside the block,
whichever logger writes it; values bound with :func:`process_log_context` (the CLI's
``command``) to every line written meanwhile by any thread of the process.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import threading
from collections import OrderedDict
from collections.abc import Iterable, Iterator, MutableMapping
from contextlib import contextmanager
from typing import Any, Literal, TextIO

import structlog

__all__ = [
    "REDACTED",
    "Redactor",
    "configure_logging",
    "get_logger",
    "log_context",
    "process_log_context",
    "redact_text",
    "redactor",
    "register_secret",
    "renders_json",
]

REDACTED = "***"

_SENSITIVE_KEY = re.compile(
    r"(pass(word)?|secret|token|authorization|api[_-]?key|session[_-]?id|private[_-]?key|cookie)",
    re.I,
)
_CREDENTIAL_NAME = (
    r"[\w-]*(?:token|secret|passw(?:or)?d|authorization|api[_-]?key|session[_-]?id"
    r"|private[_-]?key|assertion|cookie)[\w-]*"
)
_TOKEN_PATTERNS: list[tuple[re.Pattern[str], str]] = [
    # Authorization header values
    (re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=\-]{8,}"), rf"\1 {REDACTED}"),
    # HubSpot private-app tokens
    (re.compile(r"\bpat-[a-z0-9]{2,}-[A-Za-z0-9\-]{8,}\b"), REDACTED),
    # Salesforce session ids: the org id, "!", the token
    (re.compile(r"\b00D[A-Za-z0-9]{12,15}![A-Za-z0-9._\-]{8,}"), REDACTED),
    # form and query parameters: access_token=…
    (re.compile(r"(?i)\b(access_token|refresh_token|id_token|client_secret|password|assertion"
                r"|session_?id|api_?key|hapikey)=([^&\s\"']+)"), rf"\1={REDACTED}"),
    # JSON and Python-literal pairs: "access_token": "…", 'client_secret': '…'
    (re.compile(rf"""(?i)((["']){_CREDENTIAL_NAME}\2\s*:\s*(["']))(?:\\.|(?!\3)[^\\])+\3"""),
     rf"\g<1>{REDACTED}\3"),
    # PEM private keys, escaped newlines and truncated text included
    (re.compile(r"-----BEGIN[A-Z ]*PRIVATE KEY-----.*?(?:-----END[A-Z ]*PRIVATE KEY-----|\Z)",
                re.S), REDACTED),
]
ISSUED_SECRETS_KEPT = 256
"""How many secrets registered at run time (renewed access tokens) are remembered; the oldest
are forgotten first, so a daemon renewing tokens for months keeps redaction fast."""


class Redactor:
    """A structlog processor that masks secrets in every value of an event, recursively.

    Args:
        secrets: exact values to mask wherever they appear (substrings included).
    """

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._lock = threading.Lock()
        self._secrets: set[str] = set()
        self._issued: OrderedDict[str, None] = OrderedDict()
        self._pattern: re.Pattern[str] | None = None
        for value in secrets:
            self.add(value)

    def add(self, secret: str, *, issued: bool = False) -> None:
        """Mask ``secret`` from now on. Values shorter than 4 characters are ignored.

        The secret is also masked as it appears escaped inside a ``repr`` or JSON text, and
        each long line of a multi-line secret (a PEM key) on its own.

        Args:
            secret: the value to mask.
            issued: the secret was obtained at run time (an access token); only the latest
                :data:`ISSUED_SECRETS_KEPT` of these are kept.
        """
        if not secret or len(secret) < 4:
            return
        forms = _written_forms(secret)
        with self._lock:
            if issued and secret not in self._secrets:
                self._issued[secret] = None
                self._issued.move_to_end(secret)
                while len(self._issued) > ISSUED_SECRETS_KEPT:
                    self._issued.popitem(last=False)
            elif not forms - self._secrets:
                return
            else:
                self._secrets |= forms
                self._issued.pop(secret, None)
            self._compile()

    def _compile(self) -> None:
        issued = {form for value in self._issued for form in _written_forms(value)}
        alternatives = sorted(self._secrets | issued, key=len, reverse=True)
        self._pattern = (
            re.compile("|".join(re.escape(s) for s in alternatives)) if alternatives else None
        )

    def clear(self) -> None:
        """Forget every registered secret."""
        with self._lock:
            self._secrets.clear()
            self._issued.clear()
            self._pattern = None

    def redact_text(self, text: str) -> str:
        """Mask known secrets and token-like substrings in a string."""
        pattern = self._pattern
        if pattern is not None:
            text = pattern.sub(REDACTED, text)
        for token, replacement in _TOKEN_PATTERNS:
            text = token.sub(replacement, text)
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


_LINE_OF_SECRET = 16


def _written_forms(secret: str) -> set[str]:
    """The ways ``secret`` can show up in text: as is, escaped by ``repr`` or JSON, and (for a
    multi-line secret such as a PEM key) each long line alone, armour lines excepted."""
    forms = {secret, json.dumps(secret)[1:-1], repr(secret)[1:-1]}
    if "\n" in secret:
        forms.update(
            line.strip() for line in secret.splitlines()
            if len(line.strip()) >= _LINE_OF_SECRET and not line.startswith("-----")
        )
    return {form for form in forms if len(form) >= 4}


redactor = Redactor()
"""The process-wide redactor used by :func:`configure_logging`."""


def register_secret(value: str, *, expires: bool = True) -> None:
    """Mask ``value`` in every log line from now on (e.g. a freshly issued access token).

    Connectors call this for every credential they obtain at run time: a Salesforce session
    id, a HubSpot OAuth access token, a key read from a file.

    Args:
        value: the credential.
        expires: ``True`` for a short-lived token (only the latest
            :data:`ISSUED_SECRETS_KEPT` are remembered); ``False`` for a lasting credential
            (a private key, a rotated refresh token), remembered for the life of the process.
    """
    redactor.add(value, issued=expires)


def redact_text(text: str) -> str:
    """Return ``text`` masked the way a log line is: registered secrets and token shapes.

    Use it on anything that leaves refsync other than through a log line: an error printed by
    the CLI, a run's error or a quarantine message stored in the state database.
    """
    return redactor.redact_text(text)


@contextmanager
def log_context(**values: Any) -> Iterator[None]:
    """Add ``values`` to every log line written inside the block, by any refsync logger.

    The values live in context variables (structlog's ``merge_contextvars``), so lines written
    by connectors and libraries carry them too; a value bound explicitly on a logger wins.
    Earlier values of the same names come back when the block ends::

        with log_context(run_id=run_id, job=job):
            ...
    """
    with structlog.contextvars.bound_contextvars(**values):
        yield


_for_process: dict[str, dict[str, Any]] = {"values": {}}
_for_process_lock = threading.Lock()


@contextmanager
def process_log_context(**values: Any) -> Iterator[None]:
    """Add ``values`` to every log line written while the block runs, by any thread.

    Unlike :func:`log_context`, whose values stay with the thread that bound them, these reach
    the lines of threads started before or during the block too (a daemon's scheduler, lease
    and HTTP threads): for what holds for the whole process while the block runs, such as the
    command being run. Values bound with :func:`log_context`, or on a logger, win. Earlier
    values of the same names come back when the block ends (blocks end in the reverse order
    of their start)::

        with process_log_context(command="refsync run"):
            ...
    """
    with _for_process_lock:
        previous = _for_process["values"]
        _for_process["values"] = {**previous, **values}
    try:
        yield
    finally:
        with _for_process_lock:
            _for_process["values"] = previous


def _merge_process_context(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """A structlog processor adding the values of :func:`process_log_context` to a line."""
    for key, value in _for_process["values"].items():
        event_dict.setdefault(key, value)
    return event_dict


_rendering = {"json": False}


def renders_json() -> bool:
    """Whether JSON log lines were asked for by name (``json``, not ``auto``).

    The CLI then writes its own messages for standard error as log events too, so that every
    line a log collector reads there parses as JSON. With ``auto``, those messages stay plain
    text for the person at the terminal.
    """
    return _rendering["json"]


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
    _rendering["json"] = fmt == "json"
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if use_json
        else structlog.dev.ConsoleRenderer(colors=output.isatty())
    )
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        _merge_process_context,
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
