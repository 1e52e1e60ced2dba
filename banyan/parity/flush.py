"""A :class:`~banyan.parity.batch.Batch` written to the parity store in one transaction.

Counts are added to their rows with one upsert per table (``INSERT ... ON CONFLICT DO UPDATE SET
c = c + excluded.c``, SQLite and PostgreSQL); rollbacks and examples are inserted and the oldest
beyond what is kept deleted, so the store never grows with traffic (:mod:`banyan.parity.tables`).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from sqlalchemy import Table, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from banyan.parity.batch import Batch
from banyan.parity.tables import (
    ROLLBACKS_KEPT,
    counters,
    examples,
    fields,
    latency,
    noise,
    rollbacks,
    skips,
)

COUNTER_COLUMNS = ["compared", "matched", "mismatched", "errors", "skipped"]

_UPSERTS: dict[tuple[str, str, tuple[str, ...], tuple[str, ...]], Any] = {}


def _upsert(engine: AsyncEngine, table: Table, keys: list[str], add: list[str]) -> Any:
    """``INSERT ... ON CONFLICT (keys) DO UPDATE SET c = c + excluded.c`` for each ``add`` column,
    to execute with a list of rows. One statement object per dialect, table and columns, so
    SQLAlchemy compiles it once: compiling a fresh multi-row statement on every flush held the
    proxy's event loop for milliseconds, which users saw as latency."""
    cache_key = (engine.dialect.name, table.name, tuple(keys), tuple(add))
    statement = _UPSERTS.get(cache_key)
    if statement is None:
        if engine.dialect.name == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as pg_insert

            inserting = pg_insert(table)
        else:
            from sqlalchemy.dialects.sqlite import insert as sqlite_insert

            inserting = sqlite_insert(table)  # type: ignore[assignment]
        statement = _UPSERTS[cache_key] = inserting.on_conflict_do_update(
            index_elements=keys,
            set_={column: table.c[column] + inserting.excluded[column] for column in add},
        )
    return statement


def _count_rows(batch: Batch) -> list[tuple[Table, list[str], list[dict[str, Any]]]]:
    """Each counted table with its key columns and the rows to add (tables without rows left
    out)."""
    counter_rows = [
        {"feature": f, "endpoint": e, "hour": h, **{c: v.get(c, 0) for c in COUNTER_COLUMNS}}
        for (f, e, h), v in batch.counters.items()
    ]
    field_rows = [
        {"feature": f, "endpoint": e, "path": p, "kind": k, "hour": h, "count": n}
        for (f, e, p, k, h), n in batch.fields.items()
    ]
    latency_rows = [
        {"feature": f, "backend": b, "bucket": k, "hour": h, "count": n}
        for (f, b, k, h), n in batch.latency.items()
    ]
    noise_rows = [
        {"feature": f, "endpoint": e, "path": p, "count": n} for (f, e, p), n in batch.noise.items()
    ]
    skip_rows = [
        {"feature": f, "endpoint": e, "reason": r, "hour": h, "count": n}
        for (f, e, r, h), n in batch.skips.items()
    ]
    tables = [
        (counters, ["feature", "endpoint", "hour"], counter_rows),
        (fields, ["feature", "endpoint", "path", "kind", "hour"], field_rows),
        (latency, ["feature", "backend", "bucket", "hour"], latency_rows),
        (noise, ["feature", "endpoint", "path"], noise_rows),
        (skips, ["feature", "endpoint", "reason", "hour"], skip_rows),
    ]
    return [(table, keys, rows) for table, keys, rows in tables if rows]


async def flush(engine: AsyncEngine, batch: Batch, examples_per_path: int) -> None:
    """Write ``batch`` in one transaction (see the module docstring)."""
    async with engine.begin() as conn:
        for table, keys, rows in _count_rows(batch):
            add = COUNTER_COLUMNS if table is counters else ["count"]
            await conn.execute(_upsert(engine, table, keys, add), rows)
        if batch.rollbacks:
            await conn.execute(rollbacks.insert(), batch.rollbacks)
            for name in {r["feature"] for r in batch.rollbacks}:
                await conn.execute(older_than_kept(rollbacks, [rollbacks.c.feature == name]))
        if batch.examples:
            await _rotate_examples(conn, batch.examples, examples_per_path)


async def _rotate_examples(
    conn: AsyncConnection, batch: list[dict[str, Any]], examples_per_path: int
) -> None:
    """Keep the newest ``examples_per_path`` examples of each differing path: the batch's
    newest are inserted, the oldest beyond the limit deleted, so the examples follow what
    the backends do now rather than what they did first."""
    newest: dict[tuple[str, str, str], list[dict[str, Any]]] = defaultdict(list)
    for example in batch:
        newest[(example["feature"], example["endpoint"], example["path"])].append(example)
    keep = [x for group in newest.values() for x in group[-examples_per_path:]]
    await conn.execute(examples.insert(), keep)
    for feature, endpoint, path in newest:
        where = [
            examples.c.feature == feature,
            examples.c.endpoint == endpoint,
            examples.c.path == path,
        ]
        await conn.execute(older_than_kept(examples, where, examples_per_path))


def older_than_kept(table: Table, where: list[Any], kept: int = ROLLBACKS_KEPT) -> Any:
    """``DELETE`` of ``table``'s rows matching ``where`` but the newest ``kept`` (by id)."""
    newest = select(table.c.id).where(*where).order_by(table.c.id.desc()).limit(kept)
    return table.delete().where(*where, table.c.id.not_in(newest.scalar_subquery()))
