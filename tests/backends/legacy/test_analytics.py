"""Tests of banyan/backends/legacy/analytics.py over HTTP: ingest, replay, cached summaries, the
rollup."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web
from sqlalchemy import func, select

from banyan.backends.common import analytics_tables as at
from banyan.backends.common.clock import iso, now_ms
from banyan.backends.legacy import analytics
from banyan.backends.legacy.app import create_app
from banyan.backends.legacy.cache import cache_of
from banyan.backends.legacy.state import STATE, LegacyState
from banyan.serving import serve


@pytest.fixture
async def app(tmp_path: Path) -> AsyncIterator[tuple[web.Application, httpx.AsyncClient]]:
    application = create_app(f"sqlite+aiosqlite:///{tmp_path / 'legacy.db'}", gc_interval=60)
    async with serve(application) as url, httpx.AsyncClient(base_url=url) as http:
        yield application, http


async def signup(http: httpx.AsyncClient, email: str) -> dict[str, str]:
    response = await http.post(
        "/api/auth/register", json={"email": email, "password": "password1", "name": "N"}
    )
    assert response.status_code == 201, response.text
    return {"Authorization": f"Bearer {response.json()['token']}"}


def batch(*names: str, at: int | None = None) -> dict[str, Any]:
    events: list[dict[str, Any]] = [{"name": n} for n in names]
    if at is not None:
        for event in events:
            event["at"] = iso(at)
    return {"events": events}


async def summary(http: httpx.AsyncClient, auth: dict[str, str]) -> dict[str, Any]:
    response = await http.get("/api/analytics/summary", headers=auth)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_summaries_are_cached_per_user_and_dropped_by_that_users_ingest(
    app: tuple[web.Application, httpx.AsyncClient],
) -> None:
    application, http = app
    cache = cache_of(application[STATE])
    alice, bob = await signup(http, "a@x.io"), await signup(http, "b@x.io")
    assert (
        await http.post("/api/analytics/events", json=batch("a", "b"), headers=alice)
    ).json() == {"accepted": 2}
    assert (await summary(http, alice))["total"] == 2
    assert (await summary(http, bob))["total"] == 0
    misses, hits = cache.misses, cache.hits
    assert (await summary(http, alice))["total"] == 2
    assert (cache.hits, cache.misses) == (hits + 1, misses)
    await http.post("/api/analytics/events", json=batch("c"), headers=bob)
    assert (await summary(http, alice))["total"] == 2 and cache.hits == hits + 2  # bob's ingest
    await http.post("/api/analytics/events", json=batch("c"), headers=alice)
    assert (await summary(http, alice))["total"] == 3  # alice's ingest dropped her entry


async def test_replays_store_nothing_and_conflicts_are_refused(
    app: tuple[web.Application, httpx.AsyncClient],
) -> None:
    _, http = app
    auth = await signup(http, "r@x.io")
    keyed = {**auth, "Idempotency-Key": "k1"}
    first = await http.post("/api/analytics/events", json=batch("a", "a"), headers=keyed)
    again = await http.post("/api/analytics/events", json=batch("a", "a"), headers=keyed)
    assert first.status_code == again.status_code == 202
    assert again.headers["Idempotent-Replayed"] == "true" and again.json() == {"accepted": 2}
    other = await http.post("/api/analytics/events", json=batch("b"), headers=keyed)
    assert other.status_code == 409 and other.json()["error"]["code"] == "idempotency_conflict"
    assert (await summary(http, auth))["by_name"] == [{"name": "a", "count": 2}]


async def test_racing_keyed_batches_store_one(
    app: tuple[web.Application, httpx.AsyncClient],
) -> None:
    _, http = app
    auth = await signup(http, "race@x.io")
    keyed = {**auth, "Idempotency-Key": "same"}
    answers = await asyncio.gather(
        *(http.post("/api/analytics/events", json=batch("x", "y"), headers=keyed) for _ in range(4))
    )
    assert {a.status_code for a in answers} == {202}
    assert sum(1 for a in answers if a.headers.get("Idempotent-Replayed") == "true") == 3
    assert (await summary(http, auth))["total"] == 2


async def test_rollup_folds_events_and_the_summary_stays_exact(
    app: tuple[web.Application, httpx.AsyncClient],
) -> None:
    application, http = app
    st: LegacyState = application[STATE]
    auth = await signup(http, "u@x.io")
    hour_ago = now_ms() - 3_600_000
    await http.post("/api/analytics/events", json=batch("view", "view", at=hour_ago), headers=auth)
    await http.post("/api/analytics/events", json=batch("view", "quiz"), headers=auth)
    before = await summary(http, auth)
    assert await analytics.rollup(st) == {"rolled": 4, "pruned": 0}
    assert await analytics.rollup(st) == {"rolled": 0, "pruned": 0}
    await http.post("/api/analytics/events", json=batch("view"), headers=auth)
    cache_of(st).invalidate(analytics.cache_tag("nobody"))
    after = await summary(http, auth)
    assert after["total"] == before["total"] + 1 == 5
    assert {r["name"]: r["count"] for r in after["by_name"]} == {"quiz": 1, "view": 4}
    async with st.db.session() as db:
        r = analytics.TABLES.rollups
        rows = (await db.execute(select(func.sum(r.c.count)))).scalar_one()
        assert rows == 4
        # rolled events are kept for the retention, then pruned
        later = now_ms() + at.RETENTION_MS + 3_600_000
        assert await at.prune_pass(db.execute, analytics.TABLES, later) == 4
        await db.commit()
    assert (await summary(http, auth))["total"] == 5


async def test_bad_batches_store_nothing(app: tuple[web.Application, httpx.AsyncClient]) -> None:
    _, http = app
    auth = await signup(http, "v@x.io")
    bad = {"events": [{"name": "ok"}, {"name": "Not Valid"}]}
    response = await http.post("/api/analytics/events", json=bad, headers=auth)
    assert response.status_code == 400
    assert response.json()["error"]["message"] == "events[1].name: is invalid"
    assert (await summary(http, auth))["total"] == 0
