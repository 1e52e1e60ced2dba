"""``banyan data backfill``: copy the legacy store into the new store, idempotent and resumable.

Each table is read in primary-key order in batches. A batch inserts the records the new store lacks
and updates the ones whose values differ, then records the batch's last key in the new store's
``_backfill_checkpoints`` table in the same transaction. An interrupted run resumes after that key;
a table that finishes drops its checkpoint, so the next run scans it whole again and writes only
what changed since (a second run over unchanged data writes nothing). Records that exist only in
the new store are left alone: ``banyan data verify`` reports them. The new store's schema
migrations run first (they are additive), so the target may be a fresh, empty database. Analytics
are copied as events, never as rollup rows (:mod:`.analytics` says why).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TextIO

from sqlalchemy import (
    BigInteger,
    Column,
    MetaData,
    String,
    Table,
    bindparam,
    delete,
    insert,
    select,
    tuple_,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from banyan.backends.common.clock import now_ms
from banyan.backends.datatools import analytics
from banyan.backends.datatools.progress import Progress
from banyan.backends.datatools.stores import (
    TablePair,
    count,
    fix_sequences,
    open_engine,
    pair_tables,
    reflect,
    scan,
)
from banyan.backends.datatools.whiteboard import UPDATES, merge_rooms, updates_table
from banyan.backends.new.runtime.schema import migrate as migrate_new_store

_meta = MetaData()
checkpoints = Table(
    "_backfill_checkpoints",
    _meta,
    Column("name", String(200), primary_key=True),
    Column("last_key", String(2000), nullable=False),
    Column("updated_ms", BigInteger, nullable=False),
)


@dataclass(slots=True)
class TableResult:
    """What one table's backfill did."""

    table: str
    read: int = 0
    inserted: int = 0
    updated: int = 0
    resumed: bool = False

    @property
    def unchanged(self) -> int:
        return self.read - self.inserted - self.updated


async def _checkpoint(conn: AsyncConnection, name: str) -> list[Any] | None:
    row = (
        await conn.execute(select(checkpoints.c.last_key).where(checkpoints.c.name == name))
    ).first()
    return None if row is None else list(json.loads(row[0]))


async def _save_checkpoint(conn: AsyncConnection, name: str, last: Sequence[Any]) -> None:
    await conn.execute(delete(checkpoints).where(checkpoints.c.name == name))
    await conn.execute(
        insert(checkpoints).values(name=name, last_key=json.dumps(list(last)), updated_ms=now_ms())
    )


async def _existing(
    conn: AsyncConnection, pair: TablePair, keys: list[tuple[Any, ...]]
) -> dict[tuple[Any, ...], tuple[Any, ...]]:
    target = pair.target
    cols = [target.c[c] for c in pair.columns]
    if len(pair.key) == 1:
        where = target.c[pair.key[0]].in_([k[0] for k in keys])
    else:
        where = tuple_(*(target.c[k] for k in pair.key)).in_(keys)
    rows = (await conn.execute(select(*cols).where(where))).all()
    width = len(pair.key)
    return {tuple(row[:width]): tuple(row) for row in rows}


async def _apply(
    conn: AsyncConnection, pair: TablePair, rows: list[tuple[Any, ...]]
) -> tuple[int, int]:
    width = len(pair.key)
    found = await _existing(conn, pair, [row[:width] for row in rows])
    missing = [row for row in rows if row[:width] not in found]
    changed = [row for row in rows if row[:width] in found and found[row[:width]] != row]
    if missing:
        fresh = analytics.FRESH.get(pair.target.name, {})
        await conn.execute(
            insert(pair.target),
            [{**fresh, **dict(zip(pair.columns, row, strict=True))} for row in missing],
        )
    if changed:
        values: dict[str, Any] = {c: bindparam(f"v_{c}") for c in pair.columns[width:]}
        if values:
            statement = update(pair.target).values(values)
            for k in pair.key:
                statement = statement.where(pair.target.c[k] == bindparam(f"k_{k}"))
            params = []
            for row in changed:
                item = {f"k_{k}": v for k, v in zip(pair.key, row[:width], strict=True)}
                item.update(
                    {f"v_{c}": v for c, v in zip(pair.columns[width:], row[width:], strict=True)}
                )
                params.append(item)
            await conn.execute(statement, params)
    return len(missing), len(changed)


async def backfill_table(
    source: AsyncEngine,
    target: AsyncEngine,
    pair: TablePair,
    *,
    batch: int,
    stream: TextIO | None,
) -> TableResult:
    """Copy one table; resumes after its checkpoint when one is there."""
    result = TableResult(pair.label)
    async with target.connect() as tconn:
        after = await _checkpoint(tconn, pair.label)
    result.resumed = after is not None
    async with source.connect() as sconn:
        progress = Progress(pair.label, await count(sconn, pair.source), stream=stream)
        async for rows in scan(
            sconn, pair.source, pair.key, pair.columns, after=after, batch=batch
        ):
            async with target.begin() as tconn:
                inserted, updated = await _apply(tconn, pair, rows)
                await _save_checkpoint(tconn, pair.label, rows[-1][: len(pair.key)])
            result.read += len(rows)
            result.inserted += inserted
            result.updated += updated
            progress.advance(len(rows))
    async with target.begin() as tconn:
        await fix_sequences(tconn, pair.target)
        await tconn.execute(delete(checkpoints).where(checkpoints.c.name == pair.label))
    progress.finish()
    return result


async def backfill(
    legacy_url: str,
    new_url: str,
    *,
    batch: int = 1000,
    restart: bool = False,
    stream: TextIO | None = None,
) -> list[TableResult]:
    """Copy every data table from the legacy store into the new store."""
    source, target = open_engine(legacy_url), open_engine(new_url)
    try:
        async with source.connect() as sconn:
            legacy_meta = await reflect(sconn)
        await migrate_new_store(target)
        async with target.begin() as tconn:
            await tconn.run_sync(_meta.create_all)
            if restart:
                await tconn.execute(delete(checkpoints))
            new_meta = await reflect(tconn)
        tables = dict(legacy_meta.tables), dict(new_meta.tables)
        counted = analytics.has_counts(tables[0]) and analytics.has_counts(tables[1])
        results = []
        for pair in pair_tables(legacy_meta, new_meta):
            if counted and pair.source.name == analytics.ROLLUPS:
                continue  # derived from the events, but for pruned hours (below)
            copied = analytics.data_columns(pair)
            results.append(await backfill_table(source, target, copied, batch=batch, stream=stream))
        if counted:
            read, raised = await analytics.raise_pruned_hours(
                source, target, tables, now_ms(), batch=batch
            )
            results.append(TableResult(analytics.PRUNED_LABEL, read=read, updated=raised))
        rooms = updates_table(legacy_meta), updates_table(new_meta)
        if rooms[0] is not None and rooms[1] is not None:
            async with source.connect() as sconn, target.begin() as tconn:
                read, merged = await merge_rooms(sconn, tconn, rooms[0], rooms[1])
            results.append(TableResult(f"{UPDATES} (rooms)", read=read, inserted=merged))
        return results
    finally:
        await source.dispose()
        await target.dispose()
