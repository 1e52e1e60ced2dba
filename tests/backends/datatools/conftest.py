"""Stores for the data tool tests: a legacy and a new store, on SQLite and on PostgreSQL.

The legacy store is filled through the real legacy backend over HTTP (a user, a folder, sessions
with context and messages), then topped up with plain rows of the same tables for volume.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from sqlalchemy import insert

from banyan.backends.datatools.cli import main
from banyan.backends.datatools.stores import open_engine
from banyan.backends.legacy import migrations as legacy_migrations
from banyan.backends.legacy.app import create_app
from banyan.backends.legacy.db import Database, StudySession
from banyan.backends.new.runtime import schema as new_schema
from banyan.pg import postgres_available, temp_database
from banyan.serving import serve

PASSWORD = "password123"


@dataclass
class Stores:
    legacy: str
    new: str
    user_id: str
    session_id: str


async def fill_legacy(db_url: str, extra_sessions: int = 0) -> tuple[str, str]:
    """Create data through the legacy API; return (user id, one session id)."""
    async with serve(create_app(db_url)) as base, httpx.AsyncClient(base_url=base) as http:
        reg = await http.post(
            "/api/auth/register", json={"email": "d@x.io", "password": PASSWORD, "name": "D"}
        )
        token, user_id = reg.json()["token"], reg.json()["user"]["id"]
        auth = {"Authorization": f"Bearer {token}"}
        folder = (await http.post("/api/folders", json={"name": "F"}, headers=auth)).json()
        sid = ""
        for i in range(3):
            made = await http.post(
                "/api/sessions", json={"title": f"s{i}", "folder_id": folder["id"]}, headers=auth
            )
            sid = made.json()["id"]
            await http.put(f"/api/sessions/{sid}/context", json={"context": {"i": i}}, headers=auth)
            for text in ("hello", "world"):
                await http.post(
                    f"/api/sessions/{sid}/messages",
                    json={"role": "user", "content": text},
                    headers=auth,
                )
        await http.post("/api/auth/logout", headers=auth)
    if extra_sessions:
        db = Database(db_url)
        rows = [
            {
                "id": f"bulk-{n:06d}",
                "user_id": user_id,
                "folder_id": None,
                "title": f"bulk {n}",
                "created_ms": 1_700_000_000_000 + n,
                "updated_ms": 1_700_000_000_000 + n,
                "expires_ms": 4_000_000_000_000,
                "message_count": 0,
                "idem_hash": None,
            }
            for n in range(extra_sessions)
        ]
        async with db.engine.begin() as conn:
            await conn.execute(insert(StudySession), rows)
        await db.close()
    return user_id, sid


@pytest.fixture(params=["sqlite", "postgres"])
async def empty_stores(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[tuple[str, str]]:
    """(legacy URL, new URL): two empty databases of one kind."""
    if request.param == "sqlite":
        yield (
            f"sqlite+aiosqlite:///{tmp_path / 'legacy.db'}",
            f"sqlite+aiosqlite:///{tmp_path / 'new.db'}",
        )
        return
    if not await postgres_available():
        pytest.skip("PostgreSQL not reachable at 127.0.0.1:5432: data tools untested on it")
    async with temp_database("dt_legacy") as legacy, temp_database("dt_new") as new:
        yield legacy, new


@pytest.fixture
async def stores(empty_stores: tuple[str, str]) -> Stores:
    """A filled legacy store and an empty new one."""
    legacy, new = empty_stores
    user_id, sid = await fill_legacy(legacy)
    return Stores(legacy, new, user_id, sid)


async def run_cli(argv: list[str]) -> int:
    """``banyan data ...`` from an async test: the command runs its own loop in a thread."""
    return await asyncio.to_thread(main, argv)


async def migrated(stores: tuple[str, str]) -> None:
    """Both stores' schemas, no rows."""
    legacy = Database(stores[0])
    await legacy_migrations.migrate(legacy)
    await legacy.close()
    engine = open_engine(stores[1])
    await new_schema.migrate(engine)
    await engine.dispose()


def analytics_event(n: int, hour: int, *, rolled: bool) -> dict[str, object]:
    """Event ``n`` of user u1 in ``hour``, an ``analytics_events`` row."""
    return {
        "id": f"00000000-0000-5000-8000-{n:012d}",
        "user_id": "u1",
        "batch_id": "b1",
        "name": "page.view",
        "at_ms": hour + n,
        "hour_ms": hour,
        "session_id": None,
        "properties": "{}",
        "received_ms": hour + n,
        "rolled": rolled,
    }
