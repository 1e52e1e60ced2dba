"""What every legacy handler reaches through the request: the store, settings, the live notifier."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from aiohttp import web

from banyan.backends.legacy.db import Database

if TYPE_CHECKING:
    from banyan.backends.legacy.live import LiveHub


@dataclass
class LegacyState:
    db: Database
    session_ttl_ms: int
    gc_interval: float
    live: LiveHub | None = None
    extras: dict[str, object] = field(default_factory=dict)


STATE: web.AppKey[LegacyState] = web.AppKey("legacy_state")


def state(request: web.Request) -> LegacyState:
    return request.app[STATE]


def changed(request: web.Request, user_id: str, *tables: str) -> None:
    """Tell live subscriptions of ``user_id`` that these tables changed (after a commit)."""
    hub = request.app[STATE].live
    if hub is not None:
        hub.changed(user_id, set(tables))
