"""Analytics events shared by both backends: validation of a batch and rollup buckets.

A batch is ``{"events": [{"name", "at"?, "session_id"?, "properties"?}, ...]}`` with 1..500
events; ``name`` matches ``[a-z][a-z0-9_.]{0,63}``; ``at`` is an ISO timestamp (default: when
received) no more than 7 days old nor 5 minutes ahead; ``session_id`` a string of at most 100
characters; ``properties`` an object of at most 4 KiB.
Rollups count events per (user, name, hour); summaries add up the hours in ``[from, to)``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from banyan.backends.common.clock import iso, parse_iso
from banyan.backends.common.errors import ValidationError

MAX_EVENTS = 500
MAX_PROPERTIES_BYTES = 4096
MAX_SESSION_ID = 100
MAX_AGE_MS = 7 * 24 * 3600 * 1000
MAX_SKEW_MS = 5 * 60 * 1000
HOUR_MS = 3600 * 1000
NAME = re.compile(r"[a-z][a-z0-9_.]{0,63}")


@dataclass(frozen=True, slots=True)
class Event:
    name: str
    at_ms: int
    session_id: str | None
    properties: dict[str, Any]


def parse_batch(body: Any, now_ms: int) -> list[Event]:
    if not isinstance(body, dict):
        raise ValidationError("body: must be a JSON object")
    unknown = sorted(set(body) - {"events"})
    if unknown:
        raise ValidationError(f"{unknown[0]}: is not a known field")
    raw = body.get("events")
    if raw is None:
        raise ValidationError("events: is required")
    if not isinstance(raw, list):
        raise ValidationError("events: must be a list")
    if not 1 <= len(raw) <= MAX_EVENTS:
        raise ValidationError(f"events: must have between 1 and {MAX_EVENTS} items")
    return [_event(item, f"events[{i}]", now_ms) for i, item in enumerate(raw)]


def _event(item: Any, path: str, now_ms: int) -> Event:
    if not isinstance(item, dict):
        raise ValidationError(f"{path}: must be an object")
    unknown = sorted(set(item) - {"name", "at", "session_id", "properties"})
    if unknown:
        raise ValidationError(f"{path}.{unknown[0]}: is not a known field")
    name = item.get("name")
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise ValidationError(f"{path}.name: is invalid")
    at_ms = now_ms
    if "at" in item:
        if not isinstance(item["at"], str):
            raise ValidationError(f"{path}.at: must be a string")
        try:
            at_ms = parse_iso(item["at"])
        except ValueError:
            raise ValidationError(f"{path}.at: is invalid") from None
        if not now_ms - MAX_AGE_MS <= at_ms <= now_ms + MAX_SKEW_MS:
            raise ValidationError(f"{path}.at: must be within the last 7 days")
    session_id = item.get("session_id")
    if session_id is not None and not isinstance(session_id, str):
        raise ValidationError(f"{path}.session_id: must be a string")
    if session_id is not None and len(session_id) > MAX_SESSION_ID:
        raise ValidationError(f"{path}.session_id: must be at most {MAX_SESSION_ID} characters")
    properties = item.get("properties", {})
    if not isinstance(properties, dict):
        raise ValidationError(f"{path}.properties: must be an object")
    if len(json.dumps(properties, separators=(",", ":"))) > MAX_PROPERTIES_BYTES:
        raise ValidationError(f"{path}.properties: must be at most {MAX_PROPERTIES_BYTES} bytes")
    return Event(name, at_ms, session_id, properties)


def hour_of(at_ms: int) -> int:
    return at_ms - at_ms % HOUR_MS


def parse_range(query: dict[str, str] | Any, now_ms: int) -> tuple[int, int]:
    """``from``/``to`` of a summary (ISO; default the last 24 hours), as hour-aligned bounds."""
    try:
        to_ms = parse_iso(query["to"]) if query.get("to") else now_ms
    except ValueError:
        raise ValidationError("to: is invalid") from None
    try:
        from_ms = parse_iso(query["from"]) if query.get("from") else to_ms - 24 * HOUR_MS
    except ValueError:
        raise ValidationError("from: is invalid") from None
    if from_ms >= to_ms:
        raise ValidationError("from: must be before to")
    return hour_of(from_ms), hour_of(to_ms - 1) + HOUR_MS


def summary_body(from_ms: int, to_ms: int, rows: list[tuple[str, int, int]]) -> dict[str, Any]:
    """Render rollup rows ``(name, hour_ms, count)`` as the summary answer."""
    by_name: dict[str, int] = {}
    by_hour: dict[int, int] = {}
    for name, hour, count in rows:
        by_name[name] = by_name.get(name, 0) + count
        by_hour[hour] = by_hour.get(hour, 0) + count
    return {
        "from": iso(from_ms),
        "to": iso(to_ms),
        "total": sum(by_name.values()),
        "by_name": [{"name": n, "count": by_name[n]} for n in sorted(by_name)],
        "by_hour": [{"hour": iso(h), "count": by_hour[h]} for h in sorted(by_hour)],
    }
