"""Tests of banyan/backends/new/functions/analytics.py: per-user cache invalidation, the rollup
(batched,
concurrent, exact), retention pruning and racing keyed batches — on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from banyan.backends.common import analytics
from banyan.backends.common import analytics_tables as at
from banyan.backends.common.clock import iso, now_ms
from banyan.backends.common.ids import user_id_for
from banyan.backends.new.app import RUNTIME, create_app
from banyan.backends.new.runtime.engine import Runtime
from banyan.backends.new.runtime.schema import analytics as tables
from banyan.pg import postgres_available, temp_database
from banyan.serving import serve


@dataclass
class Running:
    http: httpx.AsyncClient
    runtime: Runtime


@pytest.fixture(params=["sqlite", "postgres"])
async def running(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Running]:
    if request.param == "sqlite":
        app = create_app(f"sqlite+aiosqlite:///{tmp_path / 'new.db'}")
        async with serve(app) as url, httpx.AsyncClient(base_url=url) as client:
            yield Running(client, app[RUNTIME])
        return
    if not await postgres_available():
        pytest.skip("PostgreSQL not reachable")
    async with temp_database("banyan_new_analytics") as db_url:
        app = create_app(db_url)
        async with serve(app) as url, httpx.AsyncClient(base_url=url) as client:
            yield Running(client, app[RUNTIME])


async def signup(http: httpx.AsyncClient, email: str) -> dict[str, str]:
    response = await http.post(
        "/api/auth/register", json={"email": email, "password": "password1", "name": "N"}
    )
    return {"Authorization": f"Bearer {response.json()['token']}"}


# Fixed for the whole module (no hour-boundary flake within a test), computed at collection, which
# can come minutes before a test runs in the full suite: the window reaches 6 hours past it.
RANGE = analytics.parse_range({}, now_ms() + 6 * 3_600_000)
PARAMS = {"from": iso(RANGE[0]), "to": iso(RANGE[1])}


def cached(runtime: Runtime, email: str) -> bool:
    """Whether the summary of this user for RANGE is in the runtime's query cache."""
    args = {"user_id": user_id_for(email), "from_ms": RANGE[0], "to_ms": RANGE[1]}
    key = runtime.cache.key("analytics.range", args, user_id_for(email))
    return runtime.cache.get(key)[0]


async def send(http: httpx.AsyncClient, auth: dict[str, str], *names: str) -> httpx.Response:
    events = {"events": [{"name": n} for n in names]}
    return await http.post("/api/analytics/events", json=events, headers=auth)


async def total(http: httpx.AsyncClient, auth: dict[str, str]) -> int:
    response = await http.get("/api/analytics/summary", params=PARAMS, headers=auth)
    assert response.status_code == 200, response.text
    return int(response.json()["total"])


async def rolled_up(runtime: Runtime) -> int:
    async with runtime.engine.connect() as conn:
        counted = await conn.execute(select(func.coalesce(func.sum(tables.rollups.c.count), 0)))
        return int(counted.scalar_one())


async def test_an_ingest_drops_only_its_users_summaries(running: Running) -> None:
    http, runtime = running.http, running.runtime
    alice, bob = await signup(http, "a@x.io"), await signup(http, "b@x.io")
    await send(http, alice, "a")
    assert await total(http, alice) == 1 and await total(http, bob) == 0
    assert cached(runtime, "a@x.io") and cached(runtime, "b@x.io")
    await send(http, bob, "b", "b")
    assert cached(runtime, "a@x.io") and not cached(runtime, "b@x.io")
    assert await total(http, bob) == 2
    await send(http, alice, "a")
    assert not cached(runtime, "a@x.io") and await total(http, alice) == 2


async def test_rollups_in_batches_keep_summaries_exact_and_cached(
    running: Running, monkeypatch: pytest.MonkeyPatch
) -> None:
    http, runtime = running.http, running.runtime
    monkeypatch.setattr(at, "ROLLUP_BATCH", 3)
    auth = await signup(http, "r@x.io")
    await send(http, auth, *["view"] * 7)
    assert await total(http, auth) == 7
    assert await runtime.run_action("analytics.rollup", {}, None) == {"rolled": 7, "pruned": 0}
    assert cached(runtime, "r@x.io")  # the rollup changes no summary, so it drops none
    assert await total(http, auth) == 7
    assert await rolled_up(runtime) == 7
    await send(http, auth, "view")
    assert await total(http, auth) == 8
    assert await runtime.run_action("analytics.rollup", {}, None) == {"rolled": 1, "pruned": 0}
    body = (await http.get("/api/analytics/summary", params=PARAMS, headers=auth)).json()
    assert body["by_name"] == [{"name": "view", "count": 8}]


async def test_concurrent_rollups_count_each_event_once(running: Running) -> None:
    http, runtime = running.http, running.runtime
    auth = await signup(http, "c@x.io")
    for _ in range(5):
        await send(http, auth, *["e"] * 40)
    results = await asyncio.gather(
        *(runtime.run_action("analytics.rollup", {}, None) for _ in range(4))
    )
    assert sum(r["rolled"] for r in results) == 200
    assert await rolled_up(runtime) == 200


async def test_racing_keyed_batches_store_one(running: Running) -> None:
    http = running.http
    auth = await signup(http, "k@x.io")
    keyed = {**auth, "Idempotency-Key": "same"}
    answers = await asyncio.gather(*(send(http, keyed, "x", "y") for _ in range(4)))
    assert {a.status_code for a in answers} == {202}
    assert sum(1 for a in answers if a.headers.get("Idempotent-Replayed") == "true") == 3
    assert await total(http, auth) == 2


async def test_rolled_events_past_their_retention_are_pruned(running: Running) -> None:
    http, runtime = running.http, running.runtime
    auth = await signup(http, "p@x.io")
    await send(http, auth, "old", "old")
    assert await runtime.run_action("analytics.rollup", {}, None) == {"rolled": 2, "pruned": 0}
    later = now_ms() + at.RETENTION_MS + 3_600_000
    async with runtime.engine.begin() as conn:
        assert await at.prune_pass(conn.execute, tables, later) == 2
    assert await total(http, auth) == 2  # the rollups keep the counts
