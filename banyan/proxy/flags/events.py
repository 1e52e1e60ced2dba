"""Structured log events of the flag file's readers and writers."""

from __future__ import annotations

import contextlib
from typing import Any

from banyan.logs import get_logger


def emit(component: str, level: str, event: str, **fields: Any) -> None:
    """Log one structured event. The logger is bound at use time (a module-level bind would
    freeze structlog's configuration before ``configure()``), and a closed or broken log stream
    never stops flag handling."""
    with contextlib.suppress(OSError, ValueError):
        getattr(get_logger(component), level)(event, **fields)
