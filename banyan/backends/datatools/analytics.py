"""Analytics in ``banyan data verify``: hourly counts compared, not rollup rows.

Each store folds its raw events into ``analytics_rollups`` with its own rollup job, at its own
moments, and prunes counted events later: two stores holding the same events can hold different
rollup rows and ``rolled`` flags at any instant, and neither is wrong. What the API answers (the
summary) is the rollups plus the events not rolled up yet, and that is what verify compares:
:func:`counts` yields ``(user_id, name, hour_ms, count)`` with that sum, in key order (text in
byte order on both databases, as the row scans sort), one row at a time from the database.
``analytics_rollups.updated_ms`` (when this store's job last added to a row) and
``analytics_events.rolled`` are therefore left out of the row comparison (:data:`PER_STORE`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from sqlalchemy import Table, func, select, union_all
from sqlalchemy.ext.asyncio import AsyncConnection

from banyan.backends.datatools.stores import key_columns

ROLLUPS = "analytics_rollups"
EVENTS = "analytics_events"
COUNTS_LABEL = f"{ROLLUPS} (hourly counts)"
KEY = ("user_id", "name", "hour_ms")
# Columns each store keeps for its own bookkeeping, never compared (table -> column -> why).
PER_STORE: dict[str, dict[str, str]] = {
    EVENTS: {"rolled": "whether this store's rollup job has counted the event yet"},
}


def has_counts(tables: dict[str, Table]) -> bool:
    return ROLLUPS in tables and EVENTS in tables


async def counts(
    conn: AsyncConnection, rollups: Table, events: Table
) -> AsyncIterator[tuple[Any, ...]]:
    """``(user_id, name, hour_ms, count)``: the rollups plus the unrolled events, per hour."""
    r, e = rollups, events
    rolled = select(r.c.user_id, r.c.name, r.c.hour_ms, r.c.count.label("n"))
    fresh = (
        select(e.c.user_id, e.c.name, e.c.hour_ms, func.count().label("n"))
        .where(e.c.rolled.is_(False))
        .group_by(e.c.user_id, e.c.name, e.c.hour_ms)
    )
    both = union_all(rolled, fresh).subquery("both")
    order = key_columns(both, KEY, conn.dialect.name)
    query = (
        select(both.c.user_id, both.c.name, both.c.hour_ms, func.sum(both.c.n).label("count"))
        .group_by(both.c.user_id, both.c.name, both.c.hour_ms)
        .order_by(*order)
    )
    async for row in await conn.stream(query):
        yield (row[0], row[1], int(row[2]), int(row[3]))
