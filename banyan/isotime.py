"""API timestamps (``2026-11-23T07:00:00.123Z``) read as epoch milliseconds, exactly."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def iso_ms(value: object) -> int | None:
    """Epoch milliseconds of an ISO 8601 timestamp (``Z``, an offset, or none: UTC), exactly;
    None when ``value`` is not one."""
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return (parsed - _EPOCH) // timedelta(milliseconds=1)
