"""The mirror queue's table and every query on it (:mod:`banyan.proxy.mirror` decides when).

One row per write to re-apply: the request as the target will receive it (method, path, the
forwarded headers, body, ``Idempotency-Key``), its delivery state (``pending`` or ``dead``,
attempts, when it is next due, the last failure) and the write's stamp time and user. The table
lives in a SQLite file or any SQLAlchemy URL; a queue file from before the later columns gains
them when opened (:func:`create_tables`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Float,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    func,
    inspect,
    select,
    text,
)
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from banyan.proxy.stamping import WriteStamp

metadata = MetaData()
mirror_writes = Table(
    "banyan_mirror_writes",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("feature", String(200), nullable=False),
    Column("target", String(20), nullable=False),
    Column("method", String(10), nullable=False),
    Column("path_qs", Text, nullable=False),
    Column("headers", Text, nullable=False),
    Column("body", LargeBinary, nullable=False),
    Column("idempotency_key", String(200), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_at", Float, nullable=False, index=True),
    Column("status", String(10), nullable=False, index=True),  # pending | dead
    Column("last_error", Text),
    Column("created_at", Float, nullable=False),
    Column("stamp_ms", BigInteger),  # the write's time: every delivery is stamped with it
    Column("user_id", String(64)),  # the user a delivery acts for (its mirror stamp's user)
)
# Columns added after the first release, with their SQL types: added to an older queue file.
LATER_COLUMNS = {"stamp_ms": "BIGINT", "user_id": "VARCHAR(64)"}

FORWARDED_HEADERS = ("authorization", "content-type", "cookie", "accept", "x-request-id")


def _add_later_columns(conn: Connection) -> None:
    have = {c["name"] for c in inspect(conn).get_columns(mirror_writes.name)}
    for name, sql_type in LATER_COLUMNS.items():
        if name not in have:
            conn.execute(text(f"ALTER TABLE {mirror_writes.name} ADD COLUMN {name} {sql_type}"))


async def create_tables(engine: AsyncEngine) -> None:
    """Create the table when missing; add the later columns to an older one."""
    async with engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
        await conn.run_sync(_add_later_columns)


def _row_values(write: Mapping[str, Any], now: float) -> dict[str, Any]:
    """A submitted write as a new pending row: only the forwarded headers are kept, and the
    ``Idempotency-Key`` travels as a header too."""
    stamp: WriteStamp | None = write.get("stamp")
    headers = write["headers"]
    kept = {k.lower(): v for k, v in headers.items() if k.lower() in FORWARDED_HEADERS}
    if write["idempotency_key"]:
        kept["idempotency-key"] = write["idempotency_key"]
    return {
        "feature": write["feature"],
        "target": write["target"],
        "method": write["method"],
        "path_qs": write["path_qs"],
        "headers": json.dumps(kept),
        "body": write["body"],
        "idempotency_key": write["idempotency_key"],
        "attempts": 0,
        "next_at": now,
        "status": "pending",
        "created_at": now,
        "stamp_ms": None if stamp is None else stamp.ms,
        "user_id": None if stamp is None else stamp.user,
    }


async def insert_writes(
    engine: AsyncEngine, writes: Sequence[Mapping[str, Any]]
) -> list[int | None]:
    """Insert writes in order in one transaction, due now; each new row's id (None when the
    database did not say)."""
    now = time.time()
    ids: list[int | None] = []
    async with engine.begin() as conn:
        for write in writes:
            result = await conn.execute(mirror_writes.insert().values(**_row_values(write, now)))
            key = result.inserted_primary_key
            ids.append(None if key is None else int(key[0]))
    return ids


async def pending_rows(engine: AsyncEngine, limit: int) -> list[dict[str, Any]]:
    """Up to ``limit`` pending rows in id order (the order they were stored)."""
    async with engine.connect() as conn:
        rows = (
            (
                await conn.execute(
                    select(mirror_writes)
                    .where(mirror_writes.c.status == "pending")
                    .order_by(mirror_writes.c.id)
                    .limit(limit)
                )
            )
            .mappings()
            .all()
        )
    return [dict(row) for row in rows]


async def earliest_due(engine: AsyncEngine) -> float | None:
    """When the earliest pending row is due (epoch seconds), None if nothing is pending."""
    async with engine.connect() as conn:
        earliest = (
            await conn.execute(
                select(func.min(mirror_writes.c.next_at)).where(mirror_writes.c.status == "pending")
            )
        ).scalar()
    return None if earliest is None else float(earliest)


async def delete_rows(conn: AsyncConnection, ids: Sequence[int]) -> None:
    if ids:
        await conn.execute(mirror_writes.delete().where(mirror_writes.c.id.in_(ids)))


async def mark_failed(
    conn: AsyncConnection, row_id: int, *, attempts: int, next_at: float, dead: bool, error: str
) -> None:
    """Store a failed attempt: its count, when to try again, its reason, dead or not."""
    await conn.execute(
        mirror_writes.update()
        .where(mirror_writes.c.id == row_id)
        .values(
            attempts=attempts,
            next_at=next_at,
            status="dead" if dead else "pending",
            last_error=error,
        )
    )


async def counts(engine: AsyncEngine) -> tuple[int, int]:
    """How many rows are (pending, dead)."""
    async with engine.connect() as conn:
        rows = (await conn.execute(select(mirror_writes.c.status, mirror_writes.c.id))).all()
    pending = sum(1 for status, _ in rows if status == "pending")
    return pending, len(rows) - pending


async def dead_rows(engine: AsyncEngine, limit: int) -> list[dict[str, Any]]:
    """The dead rows, oldest first, with what an operator reads of them (``reason`` is the last
    failure)."""
    columns = mirror_writes.c
    async with engine.connect() as conn:
        rows = (
            (
                await conn.execute(
                    select(
                        columns.id,
                        columns.feature,
                        columns.target,
                        columns.method,
                        columns.path_qs,
                        columns.attempts,
                        columns.last_error,
                        columns.stamp_ms,
                        columns.created_at,
                    )
                    .where(columns.status == "dead")
                    .order_by(columns.id)
                    .limit(limit)
                )
            )
            .mappings()
            .all()
        )
    return [{**dict(r), "reason": r["last_error"]} for r in rows]


async def revive_dead(engine: AsyncEngine, letter: int | None) -> int:
    """Dead rows (one, or all when ``letter`` is None) pending again with fresh attempts, due
    now; how many."""
    query = mirror_writes.update().where(mirror_writes.c.status == "dead")
    if letter is not None:
        query = query.where(mirror_writes.c.id == letter)
    async with engine.begin() as conn:
        result = await conn.execute(query.values(status="pending", attempts=0, next_at=time.time()))
    return int(result.rowcount or 0)


async def delete_dead(engine: AsyncEngine, letter: int | None) -> int:
    """Delete dead rows (one, or all when ``letter`` is None), never a pending one; how many."""
    query = mirror_writes.delete().where(mirror_writes.c.status == "dead")
    if letter is not None:
        query = query.where(mirror_writes.c.id == letter)
    async with engine.begin() as conn:
        result = await conn.execute(query)
    return int(result.rowcount or 0)
