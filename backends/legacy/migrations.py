"""Additive schema migrations of the legacy store.

Each migration has a version and only ever adds tables, columns or indexes; applied versions are
recorded in ``schema_migrations``. Version 1 creates the core tables of the ORM models.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import BigInteger, Column, Integer, MetaData, Table, select
from sqlalchemy.engine import Connection

from backends.common.clock import now_ms
from backends.legacy.db import Base, Database

_meta = MetaData()
schema_migrations = Table(
    "schema_migrations",
    _meta,
    Column("version", Integer, primary_key=True),
    Column("applied_ms", BigInteger, nullable=False),
)


def _v1_core(conn: Connection) -> None:
    Base.metadata.create_all(conn)


MIGRATIONS: list[tuple[int, str, Callable[[Connection], None]]] = [
    (1, "core tables: users, tokens, folders, sessions, contexts, messages", _v1_core),
]


async def migrate(db: Database) -> list[int]:
    """Apply every migration not applied yet; return the versions applied now."""
    applied_now: list[int] = []
    async with db.engine.begin() as conn:
        await conn.run_sync(_meta.create_all)
        done = set((await conn.execute(select(schema_migrations.c.version))).scalars())
        for version, _, step in MIGRATIONS:
            if version in done:
                continue
            await conn.run_sync(step)
            await conn.execute(
                schema_migrations.insert().values(version=version, applied_ms=now_ms())
            )
            applied_now.append(version)
    return applied_now
