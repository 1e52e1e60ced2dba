"""Time as the contract renders it: UTC, ISO 8601 with milliseconds and a ``Z`` suffix.

Stores keep integer milliseconds since the epoch; responses show ``2026-11-23T07:00:00.123Z``.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def iso(ms: int | None) -> str | None:
    if ms is None:
        return None
    t = time.gmtime(ms // 1000)  # a third of the cost of a datetime; every response renders many
    return (
        f"{t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d}"
        f"T{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}.{ms % 1000:03d}Z"
    )


def parse_iso(text: str) -> int:
    """Parse an ISO 8601 timestamp (``Z`` or offset) into epoch milliseconds; ValueError if bad."""
    value = text.strip()
    if value.endswith("Z"):
        value = value[:-1] + "+00:00"
    dt = datetime.fromisoformat(value)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return int(dt.timestamp() * 1000)
