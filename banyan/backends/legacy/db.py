"""The legacy store: SQLAlchemy 2 async engine and ORM models.

Tables: ``users``, ``revoked_tokens``, ``folders``, ``study_sessions``, ``session_contexts``,
``messages`` (plus ``schema_migrations``). Times are integer epoch milliseconds; ids are UUID
strings. The engine comes from ``banyan.engines`` (SQLite tuning, the writer gate);
any
SQLAlchemy async URL works (PostgreSQL via asyncpg).
"""

from __future__ import annotations

from typing import cast

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, String, Table, Text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from banyan.engines import WriteGate, make_engine


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "users"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    email: Mapped[str] = mapped_column(String(254), unique=True, index=True)
    name: Mapped[str] = mapped_column(String(100))
    password_hash: Mapped[str] = mapped_column(String(200))
    created_ms: Mapped[int] = mapped_column(BigInteger)
    idem_key_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)


class RevokedToken(Base):
    __tablename__ = "revoked_tokens"
    jti: Mapped[str] = mapped_column(String(64), primary_key=True)
    exp_ms: Mapped[int] = mapped_column(BigInteger, index=True)


class Folder(Base):
    __tablename__ = "folders"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(36), ForeignKey("users.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(100))
    created_ms: Mapped[int] = mapped_column(BigInteger)
    updated_ms: Mapped[int] = mapped_column(BigInteger)
    idem_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)
    __table_args__ = (Index("ix_folders_user_created", "user_id", "created_ms", "id"),)


class StudySession(Base):
    __tablename__ = "study_sessions"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(36), ForeignKey("users.id", ondelete="CASCADE"))
    folder_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    title: Mapped[str] = mapped_column(String(200))
    created_ms: Mapped[int] = mapped_column(BigInteger)
    updated_ms: Mapped[int] = mapped_column(BigInteger)
    expires_ms: Mapped[int] = mapped_column(BigInteger, index=True)
    message_count: Mapped[int] = mapped_column(Integer, default=0)
    idem_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)
    __table_args__ = (
        Index("ix_sessions_user_created", "user_id", "created_ms", "id"),
        Index("ix_sessions_user_folder", "user_id", "folder_id"),
    )


class SessionContext(Base):
    __tablename__ = "session_contexts"
    session_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    context: Mapped[str] = mapped_column(Text)
    updated_ms: Mapped[int] = mapped_column(BigInteger)


class Message(Base):
    __tablename__ = "messages"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    session_id: Mapped[str] = mapped_column(String(36), index=True)
    user_id: Mapped[str] = mapped_column(String(36))
    seq: Mapped[int] = mapped_column(Integer)
    role: Mapped[str] = mapped_column(String(20))
    content: Mapped[str] = mapped_column(Text)
    created_ms: Mapped[int] = mapped_column(BigInteger)
    idem_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)
    __table_args__ = (Index("ix_messages_session_seq", "session_id", "seq", unique=True),)


# The same tables as Core objects: hot paths run prepared Core statements over them (the unit of
# work and identity map cost more than a request's whole SQL on these simple lookups).
USERS = cast(Table, User.__table__)
REVOKED = cast(Table, RevokedToken.__table__)
FOLDERS = cast(Table, Folder.__table__)
SESSIONS = cast(Table, StudySession.__table__)
CONTEXTS = cast(Table, SessionContext.__table__)
MESSAGES = cast(Table, Message.__table__)


class Database:
    """The engine, a session factory and the writer gate for one store URL."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine: AsyncEngine = make_engine(url)
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        self.write_gate = WriteGate(self.engine)

    def session(self) -> AsyncSession:
        return self.sessions()

    async def close(self) -> None:
        await self.engine.dispose()
