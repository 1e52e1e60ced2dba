"""Reading and writing any store by SQLAlchemy URL, table by table, for the data tools.

Tables are reflected with generic types (``String``, ``BigInteger``, ``LargeBinary``...), so a table
read from PostgreSQL can be created in SQLite and back. Rows are read in primary-key order with
keyset pagination, so a scan of a large table holds one batch in memory, and the same scan can
resume after any key. Which tables the tools move, and under which name on the new side, is
:data:`TABLE_PAIRS` plus every other table both stores share outside :data:`NOT_DATA`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import MetaData, String, Table, event, func, select, text, tuple_
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.sql.expression import FromClause

# Tables whose names differ between the legacy and the new store (legacy name, new name).
RENAMED: dict[str, str] = {"study_sessions": "sessions"}
# Tables moved as whole documents, not row by row (banyan/backends/datatools/whiteboard.py).
DOCUMENT_TABLES: frozenset[str] = frozenset({"whiteboard_updates"})
# Tables copied first, in this order (parents before children); others follow by name.
TABLE_ORDER: tuple[str, ...] = (
    "users",
    "revoked_tokens",
    "folders",
    "study_sessions",
    "session_contexts",
    "messages",
)
# Bookkeeping and runtime state of one store, never moved: migrations, job and scheduler queues
# (a job runs where it was queued), caches and the tools' own checkpoints.
NOT_DATA: frozenset[str] = frozenset(
    {
        "schema_migrations",
        "_migrations",
        "_scheduled",
        "_backfill_checkpoints",
        "jobs",
        "legacy_jobs",
        "cache_entries",
    }
)


class StoreError(Exception):
    """A store cannot be opened or lacks a table the tools need."""


def _generic_types(_inspector: Any, _table: Table, column: dict[str, Any]) -> None:
    column["type"] = column["type"].as_generic()
    column["default"] = None  # server defaults are dialect SQL (nextval(...)); values are copied


def open_engine(url: str) -> AsyncEngine:
    """An async engine for ``url``; a bare ``sqlite:///`` URL gets the aiosqlite driver."""
    if url.startswith("sqlite:"):
        url = "sqlite+aiosqlite:" + url[len("sqlite:") :]
    elif url.startswith("postgresql:") or url.startswith("postgres:"):
        url = "postgresql+asyncpg:" + url.partition(":")[2]
    return create_async_engine(url)


async def reflect(conn: AsyncConnection) -> MetaData:
    """Every table of the store, with generic column types."""
    metadata = MetaData()

    def run(sync_conn: Connection) -> None:
        event.listen(metadata, "column_reflect", _generic_types)
        metadata.reflect(sync_conn)

    await conn.run_sync(run)
    return metadata


@dataclass(frozen=True, slots=True)
class TablePair:
    """One table on each side and the columns both have, primary key first."""

    source: Table
    target: Table
    key: tuple[str, ...]
    columns: tuple[str, ...]

    @property
    def label(self) -> str:
        if self.source.name == self.target.name:
            return self.source.name
        return f"{self.source.name}->{self.target.name}"


def pair_tables(legacy: MetaData, new: MetaData) -> list[TablePair]:
    """The tables to move or compare, parents first; StoreError when a core table is missing."""
    names = [n for n in TABLE_ORDER if n in legacy.tables]
    names += sorted(
        n
        for n in legacy.tables
        if n not in TABLE_ORDER and n not in NOT_DATA | DOCUMENT_TABLES and n in new.tables
    )
    missing_core = [n for n in TABLE_ORDER if n not in legacy.tables]
    if missing_core:
        raise StoreError(f"legacy store lacks tables {missing_core}: is it a legacy store?")
    pairs: list[TablePair] = []
    for name in names:
        target_name = RENAMED.get(name, name)
        if target_name not in new.tables:
            raise StoreError(f"new store lacks table {target_name!r}: is it a migrated new store?")
        source, target = legacy.tables[name], new.tables[target_name]
        key = tuple(c.name for c in source.primary_key.columns)
        if not key:
            raise StoreError(f"table {name!r} has no primary key")
        shared = [c.name for c in source.columns if c.name in target.columns]
        columns = key + tuple(c for c in shared if c not in key)
        pairs.append(TablePair(source, target, key, columns))
    return pairs


def key_columns(table: FromClause, key: Sequence[str], dialect: str) -> list[Any]:
    """The key columns as both stores must sort them: text in byte order (``COLLATE "C"`` on
    PostgreSQL, SQLite's default), so a merge of the two scans lines up."""
    columns: list[Any] = []
    for name in key:
        column = table.c[name]
        if dialect == "postgresql" and isinstance(column.type, String):
            columns.append(column.collate("C"))
        else:
            columns.append(column)
    return columns


def key_clause(columns: Sequence[Any], after: Sequence[Any]) -> Any:
    """``key > after`` for a one- or many-column key."""
    if len(columns) == 1:
        return columns[0] > after[0]
    return tuple_(*columns) > tuple_(*after)


async def scan(
    conn: AsyncConnection,
    table: Table,
    key: Sequence[str],
    columns: Sequence[str],
    *,
    after: Sequence[Any] | None = None,
    batch: int = 1000,
) -> AsyncIterator[list[tuple[Any, ...]]]:
    """Rows of ``columns`` in key order, one batch at a time, starting after ``after``."""
    order = key_columns(table, key, conn.dialect.name)
    cols = [table.c[c] for c in columns]
    last = list(after) if after is not None else None
    while True:
        query = select(*cols).order_by(*order).limit(batch)
        if last is not None:
            query = query.where(key_clause(order, last))
        rows = [tuple(row) for row in (await conn.execute(query)).all()]
        if not rows:
            return
        yield rows
        last = list(rows[-1][: len(key)])
        if len(rows) < batch:
            return


async def count(conn: AsyncConnection, table: Table) -> int:
    return int((await conn.execute(select(func.count()).select_from(table))).scalar_one())


def _plain(value: Any) -> Any:
    if isinstance(value, bytes | bytearray | memoryview):
        return {"bytes": bytes(value).hex()}
    return value


def row_digest(row: Sequence[Any]) -> str:
    """A checksum of one record's values (bytes as hex), stable across SQLite and PostgreSQL."""
    encoded = json.dumps([_plain(v) for v in row], separators=(",", ":"), default=str)
    return hashlib.sha256(encoded.encode()).hexdigest()


async def fix_sequences(conn: AsyncConnection, table: Table) -> None:
    """On PostgreSQL, move an integer key's sequence past the rows copied with explicit ids."""
    if conn.dialect.name != "postgresql":
        return
    for column in table.primary_key.columns:
        seq = (
            await conn.execute(
                text("SELECT pg_get_serial_sequence(:t, :c)"),
                {"t": table.name, "c": column.name},
            )
        ).scalar()
        if seq:
            await conn.execute(
                text(
                    f'SELECT setval(:s, COALESCE((SELECT MAX("{column.name}") '
                    f'FROM "{table.name}"), 0) + 1, false)'
                ),
                {"s": seq},
            )
