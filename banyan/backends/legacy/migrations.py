"""Additive schema migrations of the legacy store.

Each migration has a version and only ever adds tables, columns or indexes; applied versions are
recorded in ``schema_migrations``. Version 1 creates the core tables of the ORM models, version 2
the whiteboard's.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import BigInteger, Column, Integer, MetaData, Table, select
from sqlalchemy.engine import Connection

from banyan.backends.common.clock import now_ms
from banyan.backends.legacy import analytics as _analytics
from banyan.backends.legacy import documents as _documents
from banyan.backends.legacy import jobs as _jobs
from banyan.backends.legacy import quizzes as _quizzes
from banyan.backends.legacy import whiteboard
from banyan.backends.legacy.db import Base, Database

_meta = MetaData()
schema_migrations = Table(
    "schema_migrations",
    _meta,
    Column("version", Integer, primary_key=True),
    Column("applied_ms", BigInteger, nullable=False),
)


def _v1_core(conn: Connection) -> None:
    Base.metadata.create_all(conn)


def _v2_whiteboard(conn: Connection) -> None:
    whiteboard.metadata.create_all(conn)


def _v3_jobs_documents(conn: Connection) -> None:
    _jobs.metadata.create_all(conn)
    _documents.metadata.create_all(conn)


def _v4_quizzes_analytics(conn: Connection) -> None:
    _quizzes.TABLES.quizzes.metadata.create_all(conn)
    _analytics.TABLES.events.metadata.create_all(conn)


MIGRATIONS: list[tuple[int, str, Callable[[Connection], None]]] = [
    (1, "core tables: users, tokens, folders, sessions, contexts, messages", _v1_core),
    (2, "whiteboard: room updates and snapshots", _v2_whiteboard),
    (3, "job queue and documents with their chunks", _v3_jobs_documents),
    (4, "quizzes, attempts, analytics events, rollups and batches", _v4_quizzes_analytics),
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
