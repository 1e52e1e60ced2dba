"""Analytics storage both backends share: table definitions and the statements over them.

Tables (created by :func:`define_tables` on each backend's own ``MetaData``, migration 4, identical
names and columns in both stores so the data tools can copy them):

- ``analytics_events``: one row per accepted event (``hour_ms`` is its hour bucket, ``rolled``
  says the rollup has counted it; rolled rows are kept ``RETENTION_MS`` then deleted);
- ``analytics_rollups``: counts per ``(user_id, name, hour_ms)``;
- ``analytics_batches``: one row per batch ingested with an ``Idempotency-Key`` (its fingerprint
  and size), so a replay answers without storing the events twice.

A summary is ONE statement (:func:`summary_statement`: the rollups plus the unrolled events of the
range, ``UNION ALL``), so it reads one snapshot and is exact while the rollup runs. The rollup
(:func:`rollup_pass`) flips ``rolled`` with ``UPDATE ... RETURNING`` — only the rows this pass
flipped are counted, so two concurrent passes never count an event twice — and adds the counts
with an upsert, in the caller's transaction.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    delete,
    func,
    select,
    union_all,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql import Executable

from banyan.backends.common import ids
from banyan.backends.common.analytics import MAX_AGE_MS, Event, hour_of

RETENTION_MS = MAX_AGE_MS + 24 * 3600 * 1000  # a day past the oldest event a batch may carry
ROLLUP_BATCH = 5000

Execute = Callable[[Executable], Awaitable[Any]]


@dataclass(frozen=True, slots=True)
class AnalyticsTables:
    events: Table
    rollups: Table
    batches: Table


def define_tables(metadata: MetaData) -> AnalyticsTables:
    events = Table(
        "analytics_events",
        metadata,
        Column("id", String(36), primary_key=True),
        Column("user_id", String(36), nullable=False),
        Column("batch_id", String(36), nullable=False),
        Column("name", String(64), nullable=False),
        Column("at_ms", BigInteger, nullable=False),
        Column("hour_ms", BigInteger, nullable=False),
        Column("session_id", String(100)),
        Column("properties", Text, nullable=False),
        Column("received_ms", BigInteger, nullable=False),
        Column("rolled", Boolean, nullable=False, default=False),
        Index("ix_analytics_events_user_hour", "user_id", "rolled", "hour_ms"),
        Index("ix_analytics_events_rolled", "rolled", "at_ms"),
    )
    rollups = Table(
        "analytics_rollups",
        metadata,
        Column("user_id", String(36), primary_key=True),
        Column("name", String(64), primary_key=True),
        Column("hour_ms", BigInteger, primary_key=True),
        Column("count", Integer, nullable=False),
        Column("updated_ms", BigInteger, nullable=False),
        Index("ix_analytics_rollups_user_hour", "user_id", "hour_ms"),
    )
    batches = Table(
        "analytics_batches",
        metadata,
        Column("id", String(36), primary_key=True),
        Column("user_id", String(36), nullable=False),
        Column("size", Integer, nullable=False),
        Column("idem_hash", String(64), nullable=False),
        Column("created_ms", BigInteger, nullable=False, index=True),
    )
    return AnalyticsTables(events, rollups, batches)


def batch_id(user_id: str, key: str | None) -> str:
    """The batch's id: ``uuid5(NS, "event-batch:<user>:<key>")`` with a key, random without."""
    return ids.new_id("event-batch", user_id, key)


def event_rows(user_id: str, batch: str, events: list[Event], now_ms: int) -> list[dict[str, Any]]:
    """A batch's rows; event ids derive from the batch id and position (same in both stores)."""
    namespace = uuid.UUID(batch)
    return [
        {
            "id": str(uuid.uuid5(namespace, str(index))),
            "user_id": user_id,
            "batch_id": batch,
            "name": event.name,
            "at_ms": event.at_ms,
            "hour_ms": hour_of(event.at_ms),
            "session_id": event.session_id,
            "properties": json.dumps(event.properties, sort_keys=True, separators=(",", ":")),
            "received_ms": now_ms,
            "rolled": False,
        }
        for index, event in enumerate(events)
    ]


def summary_statement(t: AnalyticsTables, user_id: str, from_ms: int, to_ms: int) -> Executable:
    """Rows ``(name, hour_ms, count)``: rollups plus not-yet-rolled events of ``[from, to)``."""
    r, e = t.rollups, t.events
    rolled = select(r.c.name, r.c.hour_ms, r.c.count.label("n")).where(
        r.c.user_id == user_id, r.c.hour_ms >= from_ms, r.c.hour_ms < to_ms
    )
    fresh = (
        select(e.c.name, e.c.hour_ms, func.count().label("n"))
        .where(
            e.c.user_id == user_id,
            e.c.rolled.is_(False),
            e.c.hour_ms >= from_ms,
            e.c.hour_ms < to_ms,
        )
        .group_by(e.c.name, e.c.hour_ms)
    )
    return union_all(rolled, fresh)


def summary_rows(result: Any) -> list[tuple[str, int, int]]:
    return [(str(name), int(hour), int(n)) for name, hour, n in result]


async def rollup_pass(
    execute: Execute, t: AnalyticsTables, dialect: str, now_ms: int, limit: int | None = None
) -> int:
    """Fold up to ``limit`` (default :data:`ROLLUP_BATCH`) unrolled events into the rollups;
    return how many were folded."""
    e, r = t.events, t.rollups
    pending = select(e.c.id).where(e.c.rolled.is_(False)).limit(limit or ROLLUP_BATCH)
    flipped = await execute(
        update(e)
        .where(e.c.id.in_(pending), e.c.rolled.is_(False))
        .values(rolled=True)
        .returning(e.c.user_id, e.c.name, e.c.hour_ms)
    )
    counts: dict[tuple[str, str, int], int] = {}
    for user_id, name, hour in flipped.all():
        counts[(user_id, name, int(hour))] = counts.get((user_id, name, int(hour)), 0) + 1
    if counts:
        rows = [(u, n, h, c) for (u, n, h), c in sorted(counts.items())]
        await execute(add_to_rollups(r, rows, dialect, now_ms))
    return sum(counts.values())


def add_to_rollups(
    rollups: Table, rows: list[tuple[str, str, int, int]], dialect: str, now_ms: int
) -> Executable:
    """One upsert adding each ``(user_id, name, hour_ms, count)`` to its rollup row."""
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    stmt = insert(rollups).values(
        [
            {"user_id": u, "name": n, "hour_ms": h, "count": c, "updated_ms": now_ms}
            for u, n, h, c in rows
        ]
    )
    return stmt.on_conflict_do_update(
        index_elements=[rollups.c.user_id, rollups.c.name, rollups.c.hour_ms],
        set_={"count": rollups.c.count + stmt.excluded.count, "updated_ms": now_ms},
    )


async def prune_pass(execute: Execute, t: AnalyticsTables, now_ms: int) -> int:
    """Delete rolled events and idempotency records older than the retention; return events gone."""
    cutoff = now_ms - RETENTION_MS
    gone = await execute(
        delete(t.events).where(t.events.c.rolled.is_(True), t.events.c.at_ms < cutoff)
    )
    await execute(delete(t.batches).where(t.batches.c.created_ms < cutoff))
    return int(gone.rowcount or 0)
