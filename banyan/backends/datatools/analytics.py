"""Analytics in ``banyan data backfill`` and ``verify``: events copied as data, counts compared.

Each store folds its raw events into ``analytics_rollups`` with its own rollup job, at its own
moments, and prunes counted events later: two stores holding the same events can hold different
rollup rows and ``rolled`` flags at any instant, and neither is wrong. What the API answers (the
summary) is the rollups plus the events not rolled up yet, a sum neither job changes (a rollup pass
moves events into a rollup row in one transaction; a prune deletes only counted events).

- **verify** compares that sum: :func:`counts` yields ``(user_id, name, hour_ms, count)`` in key
  order (text in byte order on both databases, as the row scans sort), one row at a time from the
  database. ``analytics_rollups`` rows and ``analytics_events.rolled`` are left out of the row
  comparison (:data:`PER_STORE`).
- **backfill** copies events without ``rolled``: an event new to the target arrives unrolled
  (:data:`FRESH`) and the target's own job counts it, and an event the target holds keeps its
  flag. Rollup rows are never copied: a copy read at another moment than the events (each store's
  job runs between the two reads) counted events twice or not at all. Only hours older than
  the retention (:data:`~banyan.backends.common.analytics_tables.RETENTION_MS`), whose events a
  store may have pruned, are known by their rollup rows alone; there :func:`raise_pruned_hours`
  adds to the target's rollup row what the source counts more. No event can arrive in those hours
  (a batch's events are at most ``MAX_AGE_MS`` old, a day less than the retention), so a write
  mirrored meanwhile is never counted twice.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

from sqlalchemy import Table, func, select, union_all
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from banyan.backends.common.analytics_tables import RETENTION_MS, add_to_rollups
from banyan.backends.datatools.stores import TablePair, key_columns

ROLLUPS = "analytics_rollups"
EVENTS = "analytics_events"
COUNTS_LABEL = f"{ROLLUPS} (hourly counts)"
PRUNED_LABEL = f"{ROLLUPS} (pruned hours)"
KEY = ("user_id", "name", "hour_ms")
# Columns a store keeps for its own bookkeeping, never compared nor copied (table -> column -> why).
PER_STORE: dict[str, dict[str, str]] = {
    EVENTS: {"rolled": "whether this store's rollup job has counted the event yet"},
}
# What those columns hold in a row the backfill inserts (table -> column -> value).
FRESH: dict[str, dict[str, Any]] = {EVENTS: {"rolled": False}}

Count = tuple[str, str, int, int]


def has_counts(tables: dict[str, Table]) -> bool:
    return ROLLUPS in tables and EVENTS in tables


def data_columns(pair: TablePair) -> TablePair:
    """``pair`` without the columns that are a store's own bookkeeping (:data:`PER_STORE`)."""
    own = PER_STORE.get(pair.source.name, {})
    return replace(pair, columns=tuple(c for c in pair.columns if c not in own))


async def counts(
    conn: AsyncConnection, rollups: Table, events: Table, *, before: int | None = None
) -> AsyncIterator[Count]:
    """``(user_id, name, hour_ms, count)``: the rollups plus the unrolled events, per hour (only
    hours before ``before`` when given)."""
    r, e = rollups, events
    rolled = select(r.c.user_id, r.c.name, r.c.hour_ms, r.c.count.label("n"))
    fresh = (
        select(e.c.user_id, e.c.name, e.c.hour_ms, func.count().label("n"))
        .where(e.c.rolled.is_(False))
        .group_by(e.c.user_id, e.c.name, e.c.hour_ms)
    )
    if before is not None:
        rolled = rolled.where(r.c.hour_ms < before)
        fresh = fresh.where(e.c.hour_ms < before)
    both = union_all(rolled, fresh).subquery("both")
    order = key_columns(both, KEY, conn.dialect.name)
    query = (
        select(both.c.user_id, both.c.name, both.c.hour_ms, func.sum(both.c.n).label("count"))
        .group_by(both.c.user_id, both.c.name, both.c.hour_ms)
        .order_by(*order)
    )
    async for row in await conn.stream(query):
        yield (row[0], row[1], int(row[2]), int(row[3]))


async def _shortfalls(
    source: AsyncIterator[Count], target: AsyncIterator[Count]
) -> AsyncIterator[Count]:
    """Walk both key-ordered counts; yield ``(key..., missing)`` where the source counts more."""
    theirs, ours = await anext(source, None), await anext(target, None)
    while theirs is not None:
        if ours is None or theirs[:3] < ours[:3]:
            yield theirs
            theirs = await anext(source, None)
        elif ours[:3] < theirs[:3]:
            ours = await anext(target, None)
        else:
            if theirs[3] > ours[3]:
                yield (*theirs[:3], theirs[3] - ours[3])
            theirs, ours = await anext(source, None), await anext(target, None)


async def raise_pruned_hours(
    source: AsyncEngine,
    target: AsyncEngine,
    tables: tuple[dict[str, Table], dict[str, Table]],
    now_ms: int,
    *,
    batch: int,
) -> tuple[int, int]:
    """Where the source counts more than the target in an hour older than the retention, add the
    difference to the target's rollup row. Returns ``(hours read, hours raised)``."""
    left, right = tables
    before = now_ms - RETENTION_MS
    read = 0
    short: list[Count] = []  # written once both reads are closed (a SQLite file has one writer)
    async with source.connect() as sconn, target.connect() as tconn:
        theirs = counts(sconn, left[ROLLUPS], left[EVENTS], before=before)
        ours = counts(tconn, right[ROLLUPS], right[EVENTS], before=before)

        async def counted(rows: AsyncIterator[Count]) -> AsyncIterator[Count]:
            nonlocal read
            async for row in rows:
                read += 1
                yield row

        short = [row async for row in _shortfalls(counted(theirs), ours)]
    for start in range(0, len(short), batch):
        upsert = add_to_rollups(
            right[ROLLUPS], short[start : start + batch], target.dialect.name, now_ms
        )
        async with target.begin() as conn:
            await conn.execute(upsert)
    return read, len(short)
