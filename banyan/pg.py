"""PostgreSQL for tests: where the server is, whether it answers, and throwaway databases.

``postgres_url(db)`` names a database on the test server (env ``BANYAN_TEST_PG`` — a SQLAlchemy
asyncpg URL of any database there — or ``postgresql+asyncpg://postgres@127.0.0.1:5432/test``),
``postgres_available()`` says whether it answers within a timeout, and ``temp_database()``
creates a uniquely named database, yields its SQLAlchemy URL and drops it (forcing out any
connection left behind) when the block ends. CREATE/DROP go through asyncpg directly.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg

DEFAULT_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def postgres_url(database: str = "test") -> str:
    """The SQLAlchemy asyncpg URL of ``database`` on the test server."""
    base = os.environ.get("BANYAN_TEST_PG") or DEFAULT_URL
    head, _, tail = base.rpartition("/")
    query = tail.partition("?")[2]
    return f"{head}/{database}" + (f"?{query}" if query else "")


def _dsn(sqlalchemy_url: str) -> str:
    """asyncpg wants ``postgresql://``; drop the SQLAlchemy driver suffix."""
    scheme, sep, rest = sqlalchemy_url.partition("://")
    return "postgresql" + sep + rest if scheme.startswith("postgresql") else sqlalchemy_url


async def _connect(timeout: float) -> asyncpg.Connection:
    return await asyncpg.connect(_dsn(postgres_url()), timeout=timeout)


async def postgres_available(timeout: float = 2.0) -> bool:
    """True when the test server accepts a connection within ``timeout`` seconds."""
    try:
        conn = await _connect(timeout)
    except (OSError, asyncpg.PostgresError, TimeoutError):
        return False
    await conn.close()
    return True


@asynccontextmanager
async def temp_database(prefix: str = "banyan", timeout: float = 5.0) -> AsyncIterator[str]:
    """Create ``<prefix>_<random>``, yield its SQLAlchemy URL, drop it WITH (FORCE) afterwards."""
    name = f"{prefix.lower()}_{uuid.uuid4().hex[:12]}"
    if not _NAME.match(name):
        raise ValueError(f"not a usable database name: {name!r}")
    conn = await _connect(timeout)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    try:
        yield postgres_url(name)
    finally:
        conn = await _connect(timeout)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()
