"""Online backup and restore of a store; the backup is always one SQLite file.

A SQLite store is copied with the sqlite3 backup API, a consistent snapshot taken while the
source stays open for readers and writers. Any other store (PostgreSQL) is read table by table
inside one ``REPEATABLE READ`` transaction, so every table comes from the same snapshot, into a new
SQLite file with the same tables (generic column types). Restore copies a backup into a SQLite
file the same way, or into any other store inside one transaction; it refuses to overwrite a store
that holds any rows unless forced, and checks the row counts afterwards.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from sqlalchemy import MetaData, delete, insert, select
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection

from banyan.backends.datatools.stores import count, fix_sequences, open_engine, reflect


class RestoreRefused(Exception):
    """The target store is not empty and --force was not given."""


def sqlite_path(db_url: str) -> Path:
    """The file behind a ``sqlite[+driver]:///file`` URL; ValueError for any other URL."""
    url = make_url(db_url)
    if not url.drivername.startswith("sqlite") or not url.database:
        raise ValueError(f"not a SQLite file URL: {db_url}")
    return Path(url.database)


def _copy(source: Path, target: Path) -> None:
    src = sqlite3.connect(source)
    dst = sqlite3.connect(target)
    try:
        with dst:
            src.backup(dst)
    finally:
        dst.close()
        src.close()


def row_count(path: Path) -> int:
    """Total rows across all user tables of a SQLite file (0 when it does not exist)."""
    if not path.exists():
        return 0
    con = sqlite3.connect(path)
    try:
        names = [
            row[0]
            for row in con.execute(
                "SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%'"
            )
        ]
        return sum(con.execute(f'SELECT COUNT(*) FROM "{name}"').fetchone()[0] for name in names)
    finally:
        con.close()


def backup_sqlite(db_url: str, out: Path) -> int:
    """Copy the store to ``out``; returns the number of rows copied."""
    source = sqlite_path(db_url)
    if not source.exists():
        raise FileNotFoundError(f"no such store: {source}")
    if out.exists():
        raise FileExistsError(f"backup file exists: {out}")
    _copy(source, out)
    return row_count(out)


def restore_sqlite(db_url: str, backup: Path, *, force: bool = False) -> int:
    """Copy ``backup`` over the store; returns rows restored after checking they match."""
    target = sqlite_path(db_url)
    if not backup.exists():
        raise FileNotFoundError(f"no such backup: {backup}")
    existing = row_count(target)
    if existing and not force:
        raise RestoreRefused(
            f"target store {target} is not empty ({existing} rows); use --force to overwrite"
        )
    _copy(backup, target)
    expected, restored = row_count(backup), row_count(target)
    if expected != restored:
        raise RuntimeError(f"restore count mismatch: backup {expected} rows, store {restored}")
    return restored


def is_sqlite(db_url: str) -> bool:
    return make_url(db_url).drivername.startswith("sqlite")


async def _copy_tables(
    source: AsyncConnection, target: AsyncConnection, metadata: MetaData, *, batch: int = 1000
) -> int:
    """Create ``metadata``'s tables in ``target`` where missing and copy every row."""
    await target.run_sync(metadata.create_all)
    copied = 0
    for table in metadata.sorted_tables:
        result = await source.stream(select(table))
        async for rows in result.partitions(batch):
            await target.execute(insert(table), [dict(row._mapping) for row in rows])
            copied += len(rows)
        await fix_sequences(target, table)
    return copied


async def backup_snapshot(db_url: str, out: Path) -> int:
    """Copy a non-SQLite store into a new SQLite file from one snapshot; returns rows copied."""
    if out.exists():
        raise FileExistsError(f"backup file exists: {out}")
    source, target = open_engine(db_url), open_engine(f"sqlite:///{out}")
    try:
        async with source.connect() as sconn:
            sconn = await sconn.execution_options(isolation_level="REPEATABLE READ")
            async with sconn.begin():
                metadata = await reflect(sconn)
                async with target.begin() as tconn:
                    copied = await _copy_tables(sconn, tconn, metadata)
    finally:
        await source.dispose()
        await target.dispose()
    return copied


async def restore_into(db_url: str, backup: Path, *, force: bool = False) -> int:
    """Restore a backup file into a non-SQLite store in one transaction; returns rows restored."""
    if not backup.exists():
        raise FileNotFoundError(f"no such backup: {backup}")
    source, target = open_engine(f"sqlite:///{backup}"), open_engine(db_url)
    try:
        async with source.connect() as sconn, target.begin() as tconn:
            metadata = await reflect(sconn)
            present = await reflect(tconn)
            existing = sum([await count(tconn, table) for table in present.sorted_tables])
            if existing and not force:
                raise RestoreRefused(
                    f"target store is not empty ({existing} rows); use --force to overwrite"
                )
            for table in reversed(metadata.sorted_tables):
                if table.name in present.tables:
                    await tconn.execute(delete(present.tables[table.name]))
            restored = await _copy_tables(sconn, tconn, metadata)
            expected = sum([await count(sconn, table) for table in metadata.sorted_tables])
            if expected != restored:
                raise RuntimeError(
                    f"restore count mismatch: backup {expected} rows, store {restored}"
                )
    finally:
        await source.dispose()
        await target.dispose()
    return restored


async def backup(db_url: str, out: Path) -> int:
    """A consistent online copy of any store into the SQLite file ``out``."""
    if is_sqlite(db_url):
        return backup_sqlite(db_url, out)
    return await backup_snapshot(db_url, out)


async def restore(db_url: str, source: Path, *, force: bool = False) -> int:
    """Restore a backup file into any store; refuses a non-empty store unless ``force``."""
    if is_sqlite(db_url):
        return restore_sqlite(db_url, source, force=force)
    return await restore_into(db_url, source, force=force)
