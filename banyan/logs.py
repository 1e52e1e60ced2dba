"""Structured logging: structlog configured to write one JSON object per line, credentials redacted.

Every Banyan process calls :func:`configure` once; modules take a logger with :func:`get_logger`.
Fields that matter across the system are ``request_id``, ``feature`` and ``backend``.

One frequent event (the proxy's access line) has a fast path, :class:`HotEvent`: the same JSON
line with the same keys, order and redaction, rendered without structlog's per-call machinery, and
written with the other lines of its event-loop turn in one write (:class:`_Lines`). Every other
line is written at once, after whatever the turn had waiting, so lines keep their order.

Records of the standard ``logging`` module (aiohttp's own: a malformed request's traceback quotes
the request's bytes) are rendered as the same JSON lines. Every line, ours and theirs, passes
:func:`redact_event` first: credentials never reach a log, wherever they appear — fields named
like a secret (``authorization``, ``cookie``, ``password``, ``token``, ...), header lines quoted in
text (``Authorization: ...``, ``Cookie: ...``, ``Set-Cookie: ...``, API key headers), bearer and
basic credentials, JWT-shaped strings, secret-named query parameters (``?token=``,
``&password=``, ``api_key=``) and secret-named JSON fields quoted in text.
"""

from __future__ import annotations

import asyncio
import atexit
import datetime
import json
import logging
import os
import re
import sys
import threading
import time
from collections.abc import Callable, MutableMapping
from json.encoder import c_make_encoder, encode_basestring_ascii  # type: ignore[attr-defined]
from typing import Any

import structlog

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


class _Lines:
    """The process's log lines on their way to whatever ``sys.stderr`` is when they are written.

    :meth:`now` writes a line at once (after any waiting ones, so the order holds); :meth:`soon`
    keeps a hot line until the end of the event-loop turn (``call_soon``) and writes all the
    turn's lines in one system call. Outside a running loop :meth:`soon` writes at once. Waiting
    lines are written at exit too, and whenever a line is written at once."""

    def __init__(self) -> None:
        self._waiting: list[str] = []
        self._loop: asyncio.AbstractEventLoop | None = None  # where a flush is scheduled
        # a logging call from a worker thread flushes too; reentrant for a signal handler's line
        self._lock = threading.RLock()

    def now(self, line: str) -> None:
        with self._lock:
            waiting, self._waiting = self._waiting, []
            self._loop = None
            waiting.append(line + "\n")
            stream = sys.stderr
            stream.write("".join(waiting))
            stream.flush()

    def soon(self, line: str) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.now(line)
            return
        with self._lock:
            self._waiting.append(line + "\n")
            if self._loop is loop:
                return
            self._loop = loop  # a flush scheduled on a loop that since stopped is redone here
        loop.call_soon(self.flush)

    def flush(self) -> None:
        """Write the lines waiting, if any."""
        with self._lock:
            waiting, self._waiting = self._waiting, []
            self._loop = None
            if waiting:
                stream = sys.stderr
                stream.write("".join(waiting))
                stream.flush()


_lines = _Lines()
atexit.register(_lines.flush)


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
    """One frequent ``info`` event of one component, written as structlog would write it when
    :func:`configure` set it up — the same keys in the same order (``component``, the fields,
    ``event``, ``level``, ``timestamp``), the same redaction, the same JSON — at a fraction of
    the cost, and with the other lines of its event-loop turn in one write. When structlog is
    configured otherwise (not yet, or by a test's ``capture_logs``), it goes through structlog.
    Context variables are not merged in: nothing in Banyan binds them."""

    __slots__ = ("_logger", "component", "event")

    def __init__(self, component: str, event: str) -> None:
        self.component = component
        self.event = event
        self._logger = get_logger(component)

    def emit(self, **fields: Any) -> None:
        installed = _installed
        if not installed or structlog.get_config()["processors"] is not installed[0]:
            self._logger.info(self.event, **fields)
            return
        if installed[1] > logging.INFO:
            return
        line: dict[str, Any] = {"component": self.component}
        for key, value in fields.items():
            kind = _KINDS.get(key)
            if kind is None:
                kind = _KINDS[key] = _kind_of(key)
            if kind is _AS_IS:
                line[key] = value
            elif kind is _TEXT and type(value) is str:
                line[key] = redact_text(value)
            else:
                line[key] = _redact_value(key, value)
        line["event"] = self.event
        line["level"] = "info"
        line["timestamp"] = _timestamp()
        _lines.soon(_encode(line))


_AS_IS, _TEXT, _OTHER = "as is", "text", "other"  # how redaction treats a field, by its name
_KINDS: dict[str, str] = {}


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
