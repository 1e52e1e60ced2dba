"""The new backend's tables (SQLAlchemy Core) and its additive migrations.

Documents keep integer epoch-millisecond times and UUID string ids. Every lookup path is indexed.
``_scheduled`` holds the persisted scheduler's function calls; ``_migrations`` the applied versions.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import (
    BigInteger,
    Column,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    select,
)
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from banyan.backends.common import analytics_tables, document_tables, quiz_tables
from banyan.backends.common import jobs as jobs_rules
from banyan.backends.common.clock import now_ms
from banyan.backends.common.whiteboard.sqlstore import define_tables

metadata = MetaData()

users = Table(
    "users",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("email", String(254), nullable=False, unique=True),
    Column("name", String(100), nullable=False),
    Column("password_hash", String(200), nullable=False),
    Column("created_ms", BigInteger, nullable=False),
    Column("idem_key_hash", String(64)),
)
revoked_tokens = Table(
    "revoked_tokens",
    metadata,
    Column("jti", String(64), primary_key=True),
    Column("exp_ms", BigInteger, nullable=False, index=True),
)
folders = Table(
    "folders",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("user_id", String(36), nullable=False),
    Column("name", String(100), nullable=False),
    Column("created_ms", BigInteger, nullable=False),
    Column("updated_ms", BigInteger, nullable=False),
    Column("idem_hash", String(64)),
    Index("ix_new_folders_user", "user_id", "created_ms", "id"),
)
sessions = Table(
    "sessions",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("user_id", String(36), nullable=False),
    Column("folder_id", String(36)),
    Column("title", String(200), nullable=False),
    Column("created_ms", BigInteger, nullable=False),
    Column("updated_ms", BigInteger, nullable=False),
    Column("expires_ms", BigInteger, nullable=False, index=True),
    Column("message_count", Integer, nullable=False, default=0),
    Column("idem_hash", String(64)),
    Index("ix_new_sessions_user", "user_id", "created_ms", "id"),
    Index("ix_new_sessions_folder", "user_id", "folder_id"),
)
contexts = Table(
    "session_contexts",
    metadata,
    Column("session_id", String(36), primary_key=True),
    Column("context", Text, nullable=False),
    Column("updated_ms", BigInteger, nullable=False),
)
messages = Table(
    "messages",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("session_id", String(36), nullable=False),
    Column("user_id", String(36), nullable=False),
    Column("seq", Integer, nullable=False),
    Column("role", String(20), nullable=False),
    Column("content", Text, nullable=False),
    Column("created_ms", BigInteger, nullable=False),
    Column("idem_hash", String(64)),
    Index("ix_new_messages_session_seq", "session_id", "seq", unique=True),
)
scheduled = Table(
    "_scheduled",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("args", Text, nullable=False),
    Column("run_at_ms", BigInteger, nullable=False),
    Column("status", String(10), nullable=False),  # pending | running | done | failed | dead
    Column("attempts", Integer, nullable=False, default=0),
    Column("last_error", Text),
    Column("cron", String(200)),
    Index("ix_new_scheduled_due", "status", "run_at_ms"),
)
whiteboard_metadata = MetaData()  # migration 2 (the whiteboard's rooms and snapshots)
whiteboard = define_tables(whiteboard_metadata)
work_metadata = MetaData()  # migration 3 (the job queue, documents and their chunks)
jobs = jobs_rules.define_table(work_metadata)
documents = document_tables.define_tables(work_metadata)
learning_metadata = MetaData()  # migration 4 (quizzes and analytics)
quizzes = quiz_tables.define_tables(learning_metadata)
analytics = analytics_tables.define_tables(learning_metadata)
_migrations = Table(
    "_migrations",
    MetaData(),
    Column("version", Integer, primary_key=True),
    Column("applied_ms", BigInteger, nullable=False),
)


def _v1(conn: Connection) -> None:
    metadata.create_all(conn)


def _v2_whiteboard(conn: Connection) -> None:
    whiteboard_metadata.create_all(conn)


def _v3_work(conn: Connection) -> None:
    work_metadata.create_all(conn)


def _v4_learning(conn: Connection) -> None:
    learning_metadata.create_all(conn)


MIGRATIONS: list[tuple[int, str, Callable[[Connection], None]]] = [
    (1, "documents, tokens and the scheduler", _v1),
    (2, "whiteboard: room updates and snapshots", _v2_whiteboard),
    (3, "job queue and documents with their chunks", _v3_work),
    (4, "quizzes, attempts, analytics events, rollups and batches", _v4_learning),
]


async def migrate(engine: AsyncEngine) -> list[int]:
    applied: list[int] = []
    async with engine.begin() as conn:
        await conn.run_sync(_migrations.metadata.create_all)
        done = set((await conn.execute(select(_migrations.c.version))).scalars())
        for version, _, step in MIGRATIONS:
            if version not in done:
                await conn.run_sync(step)
                await conn.execute(
                    _migrations.insert().values(version=version, applied_ms=now_ms())
                )
                applied.append(version)
    return applied
