"""Structured logging: structlog configured to write one JSON object per line.

Every Banyan process calls :func:`configure` once; modules take a logger with :func:`get_logger`.
Fields that matter across the system are ``request_id``, ``feature`` and ``backend``.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

import structlog

_configured = False


class _StderrLogger:
    """Writes each rendered line to whatever ``sys.stderr`` is at that moment."""

    def msg(self, message: str) -> None:
        stream = sys.stderr
        stream.write(message + "\n")
        stream.flush()

    log = debug = info = warning = warn = error = critical = exception = fatal = msg


def _stderr_logger_factory(*_args: Any) -> _StderrLogger:
    return _StderrLogger()


def configure(level: str | None = None) -> None:
    """Configure structlog for JSON lines on stderr (idempotent)."""
    global _configured
    if _configured:
        return
    name = (level or os.environ.get("BANYAN_LOG_LEVEL", "info")).upper()
    numeric = logging.getLevelName(name)
    if not isinstance(numeric, int):
        numeric = logging.INFO
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=_stderr_logger_factory,
        cache_logger_on_first_use=True,
    )
    _configured = True


def get_logger(name: str, **bound: Any) -> Any:
    """A lazy structlog logger bound to ``component=name`` and any extra fields.

    Lazy, so a module-level logger created at import time still follows :func:`configure`."""
    return structlog.get_logger(component=name, **bound)
