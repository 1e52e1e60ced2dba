"""Tests for banyan.pg against the real PostgreSQL test server (skipped loudly when unreachable)."""

from __future__ import annotations

import asyncpg
import pytest

from banyan import pg

pytestmark = pytest.mark.postgres


def test_postgres_url_default_and_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BANYAN_TEST_PG", raising=False)
    assert pg.postgres_url() == "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
    assert pg.postgres_url("x1") == "postgresql+asyncpg://postgres@127.0.0.1:5432/x1"
    monkeypatch.setenv("BANYAN_TEST_PG", "postgresql+asyncpg://u:p@db:6543/other?ssl=disable")
    assert pg.postgres_url("y") == "postgresql+asyncpg://u:p@db:6543/y?ssl=disable"


async def test_unreachable_server_is_reported_not_raised(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BANYAN_TEST_PG", "postgresql+asyncpg://postgres@127.0.0.1:1/test")
    assert await pg.postgres_available(timeout=1.0) is False


async def test_temp_database_is_created_usable_and_dropped() -> None:
    if not await pg.postgres_available():
        pytest.skip("PostgreSQL not reachable at 127.0.0.1:5432: temp_database cannot be tested")
    async with pg.temp_database("pgtest") as url:
        assert url.startswith("postgresql+asyncpg://")
        name = url.rsplit("/", 1)[1]
        assert name.startswith("pgtest_")
        conn = await asyncpg.connect(url.replace("postgresql+asyncpg", "postgresql"))
        try:
            await conn.execute("CREATE TABLE t (x int)")
            await conn.execute("INSERT INTO t VALUES (41)")
            assert await conn.fetchval("SELECT x + 1 FROM t") == 42
        finally:
            await conn.close()
        leftover = await asyncpg.connect(url.replace("postgresql+asyncpg", "postgresql"))
    # the drop forced the still-open connection out
    admin = await asyncpg.connect(pg.postgres_url().replace("postgresql+asyncpg", "postgresql"))
    try:
        gone = await admin.fetchval("SELECT count(*) FROM pg_database WHERE datname = $1", name)
    finally:
        await admin.close()
    assert gone == 0
    with pytest.raises((asyncpg.PostgresError, asyncpg.InterfaceError, OSError)):
        await leftover.fetchval("SELECT 1")  # the drop forced this connection out
    leftover.terminate()


def test_bad_prefix_is_refused() -> None:
    async def enter() -> None:
        async with pg.temp_database("Bad-Prefix!"):
            pass

    import asyncio

    with pytest.raises(ValueError):
        asyncio.run(enter())
