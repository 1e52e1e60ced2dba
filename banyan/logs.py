"""Structured logging: structlog configured to write one JSON object per line, credentials redacted.

Every Banyan process calls :func:`configure` once; modules take a logger with :func:`get_logger`.
Fields that matter across the system are ``request_id``, ``feature`` and ``backend``.

One frequent event (the proxy's access line) has a fast path, :class:`HotEvent`: the same JSON
line with the same keys, order and redaction, rendered without structlog's per-call machinery, and
written with the other lines of its event-loop turn in one write (:mod:`banyan.log_lines`). Every
other line is written at once, after whatever the turn had waiting, so lines keep their order.

Records of the standard ``logging`` module (aiohttp's own: a malformed request's traceback quotes
the request's bytes) are rendered as the same JSON lines. Every line, ours and theirs, passes
:func:`redact_event` first: credentials never reach a log, wherever they appear — fields named
like a secret (``authorization``, ``cookie``, ``password``, ``token``, ...), header lines quoted in
text (``Authorization: ...``, ``Cookie: ...``, ``Set-Cookie: ...``, API key headers), bearer and
basic credentials, JWT-shaped strings, secret-named query parameters (``?token=``,
``&password=``, ``api_key=``) and secret-named JSON fields quoted in text.
"""

from __future__ import annotations

import datetime
import json
import logging
import math
import os
import re
import time
from collections.abc import Callable, MutableMapping
from json.encoder import c_make_encoder, encode_basestring_ascii  # type: ignore[attr-defined]
from typing import Any

import structlog

from banyan.log_lines import lines as _lines

_configured = False
REDACTED = "[REDACTED]"
SECRET_FIELDS = frozenset(
    {
        "authorization",
        "proxy-authorization",
        "proxy_authorization",
        "cookie",
        "set-cookie",
        "set_cookie",
        "x-api-key",
        "api_key",
        "apikey",
        "password",
        "token",
        "access_token",
        "refresh_token",
        "secret",
        "jwt",
    }
)
_SECRET_WORD = r"(?:token|password|passwd|secret|api[_-]?key|apikey|jwt|auth|signature)"
_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # a header line quoted in text: "Authorization: Bearer x", b'Cookie: a=b'
    (
        re.compile(
            r"(?i)((?:proxy-)?authorization|set-cookie|cookie|x-api-key|api-key)"
            r"(\s*[:=]\s*)[^\r\n'\"\\]+"
        ),
        r"\1\2" + REDACTED,
    ),
    (re.compile(r"(?i)(bearer|basic)\s+[A-Za-z0-9._~+/=-]+"), r"\1 " + REDACTED),
    (re.compile(r"eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*"), REDACTED),
    # secret-named query parameters: ?token=..., &password=..., api_key=...
    (
        re.compile(r"(?i)([?&;][\w.-]*" + _SECRET_WORD + r"[\w.-]*=)[^&\s'\"#\\]*"),
        r"\1" + REDACTED,
    ),
    # secret-named JSON fields quoted in text: "password": "..."
    (
        re.compile(r"(?i)(\"[\w.-]*" + _SECRET_WORD + r"[\w.-]*\"\s*:\s*\")[^\"]*"),
        r"\1" + REDACTED,
    ),
)
# Cheap test before the patterns: text without any of these cannot hold what they match.
_HINT = re.compile(r"(?i)auth|cookie|key|bearer|basic|eyJ|token|pass|secret|jwt|sig")
# Fields only our own code fills, with values that cannot quote a request: not scanned.
_OWN_FIELDS = frozenset({"timestamp", "level", "request_id", "duration_ms", "status"})
_seen: dict[str, str] = {}  # short texts already redacted (feature names, paths, events...)


def redact_text(text: str) -> str:
    """``text`` with every credential it quotes replaced by ``[REDACTED]``."""
    known = _seen.get(text)
    if known is not None:
        return known
    redacted = text
    if _HINT.search(text):
        for pattern, replacement in _PATTERNS:
            redacted = pattern.sub(replacement, redacted)
    if len(text) <= 256:
        if len(_seen) >= 4096:
            _seen.clear()
        _seen[text] = redacted
    return redacted


def _redact_value(key: str, value: Any, depth: int = 0) -> Any:
    if key in _OWN_FIELDS:
        return value
    if key.lower() in SECRET_FIELDS:
        return REDACTED
    if isinstance(value, str):
        return redact_text(value)
    if depth < 3 and isinstance(value, dict):
        return {k: _redact_value(str(k), v, depth + 1) for k, v in value.items()}
    if depth < 3 and isinstance(value, list | tuple):
        return [_redact_value("", v, depth + 1) for v in value]
    return value


def redact_event(
    _logger: Any, _method: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: every field of the event with credentials redacted."""
    for key, value in event.items():
        if key.startswith("_"):
            continue
        event[key] = _redact_value(key, value)
    return event


def _component(
    _logger: Any, _method: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    record = event.get("_record")
    if record is not None:
        event.setdefault("component", record.name)
    return event


def flush() -> None:
    """Write the log lines still waiting for the end of their event-loop turn (for a process
    about to leave with ``os._exit``)."""
    _lines.flush()


class _StderrLogger:
    """Writes each rendered line to whatever ``sys.stderr`` is at that moment."""

    def msg(self, message: str) -> None:
        _lines.now(message)

    log = debug = info = warning = warn = error = critical = exception = fatal = msg


def _stderr_logger_factory(*_args: Any) -> _StderrLogger:
    return _StderrLogger()


class _StderrHandler(logging.Handler):
    """A ``logging`` handler writing to whatever ``sys.stderr`` is at that moment."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            _lines.now(self.format(record))
        except Exception:
            self.handleError(record)


def _stdlib_handler(numeric: int) -> logging.Handler:
    handler = _StderrHandler(level=numeric)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[
                _component,
                structlog.stdlib.add_log_level,
                structlog.processors.TimeStamper(fmt="iso", utc=True),
                structlog.processors.format_exc_info,
                redact_event,
            ],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.JSONRenderer(),
            ],
        )
    )
    return handler


def configure(level: str | None = None) -> None:
    """Configure structlog for JSON lines on stderr, and route the ``logging`` module's records
    (aiohttp's, other libraries') through the same rendering and redaction (idempotent)."""
    global _configured
    if _configured:
        return
    name = (level or os.environ.get("BANYAN_LOG_LEVEL", "info")).upper()
    numeric = logging.getLevelName(name)
    if not isinstance(numeric, int):
        numeric = logging.INFO
    processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        redact_event,
        structlog.processors.JSONRenderer(),
    ]
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=_stderr_logger_factory,
        cache_logger_on_first_use=True,
    )
    _installed[:] = [processors, numeric]
    root = logging.getLogger()
    root.addHandler(_stdlib_handler(numeric))
    root.setLevel(max(numeric, logging.WARNING))  # libraries' info chatter stays out
    _configured = True


_installed: list[Any] = []  # the processors configure() gave structlog, and the level


class HotEvent:
    """One frequent ``info`` event of one component with a fixed list of fields, written as
    structlog would write it when :func:`configure` set it up — the same keys in the same order
    (``component``, the fields, ``event``, ``level``, ``timestamp``), the same redaction, the
    same JSON text — at a fraction of the cost, and with the other lines of its event-loop turn
    in one write. When structlog is configured otherwise (not yet, or by a test's
    ``capture_logs``), it goes through structlog. Context variables are not merged in: nothing
    in Banyan binds them."""

    __slots__ = ("_columns", "_head", "_logger", "_tail", "event", "fields")

    def __init__(self, component: str, event: str, fields: tuple[str, ...]) -> None:
        self.event = event
        self.fields = fields
        self._logger = get_logger(component)
        self._head = '{"component": ' + _encode(component)
        # per field: its key as JSON text, how redaction treats it, its name
        self._columns = tuple((f", {_encode(name)}: ", _kind_of(name), name) for name in fields)
        self._tail = ', "event": ' + _encode(event) + ', "level": "info", "timestamp": "'

    def emit(self, *values: Any) -> None:
        """The event with ``values``, one per field, in the order of ``fields``."""
        installed = _installed
        if not installed or structlog.get_config()["processors"] is not installed[0]:
            self._logger.info(self.event, **dict(zip(self.fields, values, strict=True)))
            return
        if installed[1] > logging.INFO:
            return
        parts = [self._head]
        for (key, kind, name), value in zip(self._columns, values, strict=True):
            parts.append(key)
            parts.append(_json_of(kind, name, value))
        parts.append(self._tail)
        parts.append(_timestamp())
        parts.append('"}')
        _lines.soon("".join(parts))


def _json_of(kind: str, name: str, value: Any) -> str:
    """``value`` redacted as :func:`redact_event` would (by its field's ``kind``), as JSON text."""
    if kind is _OTHER:
        return _encode(_redact_value(name, value))
    kind_of_value = type(value)
    if kind_of_value is str:
        return encode_basestring_ascii(value if kind is _AS_IS else redact_text(value))
    if value is None:
        return "null"
    if kind_of_value is int:
        return int.__repr__(value)
    if kind_of_value is float and math.isfinite(value):
        return float.__repr__(value)
    return _encode(value if kind is _AS_IS else _redact_value(name, value))


_AS_IS, _TEXT, _OTHER = "as is", "text", "other"  # how redaction treats a field, by its name


def _kind_of(key: str) -> str:
    if key in _OWN_FIELDS:
        return _AS_IS
    return _OTHER if key.lower() in SECRET_FIELDS else _TEXT


def _encoder() -> Callable[[Any], str]:
    """What structlog's JSONRenderer writes (``json.dumps``, anything unknown as its repr), with
    the C encoder made once rather than per call when the interpreter has it."""
    if c_make_encoder is None:  # pragma: no cover - CPython always has it
        return json.JSONEncoder(default=repr).encode
    # markers, default, string encoder, indent, separators, sort_keys, skipkeys, allow_nan
    chunks = c_make_encoder(
        None, repr, encode_basestring_ascii, None, ": ", ", ", False, False, True
    )

    def encode(value: Any) -> str:
        return "".join(chunks(value, 0))

    return encode


_encode = _encoder()
_second: list[Any] = [None, ""]  # the second last stamped, and its text


def _timestamp() -> str:
    """Now as TimeStamper(fmt="iso", utc=True) writes it (``2026-01-02T03:04:05.678901Z``; no
    fraction on a whole second, as ``isoformat`` does), the date and time formatted once a
    second."""
    seconds, nanos = divmod(time.time_ns(), 1_000_000_000)
    if _second[0] != seconds:
        moment = datetime.datetime.fromtimestamp(seconds, tz=datetime.UTC)
        _second[:] = [seconds, moment.strftime("%Y-%m-%dT%H:%M:%S")]
    micros = nanos // 1000
    return f"{_second[1]}.{micros:06d}Z" if micros else f"{_second[1]}Z"


def get_logger(name: str, **bound: Any) -> Any:
    """A lazy structlog logger bound to ``component=name`` and any extra fields.

    Lazy, so a module-level logger created at import time still follows :func:`configure`."""
    return structlog.get_logger(component=name, **bound)
