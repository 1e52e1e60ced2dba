"""Tests of banyan/backends/new/functions/cache.py: pruning as a periodic job, counters on
``/metrics``;
and that the analytics rollup runs on the job queue by itself."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
from sqlalchemy import func, select

from banyan.backends.new.app import RUNTIME, create_app
from banyan.backends.new.runtime.schema import analytics, jobs
from banyan.serving import serve


async def test_periodic_rollup_and_pruning_and_metrics(tmp_path: Path) -> None:
    app = create_app(f"sqlite+aiosqlite:///{tmp_path / 'new.db'}", gc_interval=0.2)
    runtime = app[RUNTIME]
    async with serve(app) as url, httpx.AsyncClient(base_url=url) as http:
        registered = await http.post(
            "/api/auth/register", json={"email": "m@x.io", "password": "password1", "name": "M"}
        )
        auth = {"Authorization": f"Bearer {registered.json()['token']}"}
        await http.post("/api/analytics/events", json={"events": [{"name": "a"}]}, headers=auth)
        await http.get("/api/analytics/summary", headers=auth)
        await http.get("/api/analytics/summary", headers=auth)
        for _ in range(100):
            async with runtime.engine.connect() as conn:
                rolled = (
                    await conn.execute(select(func.count()).select_from(analytics.rollups))
                ).scalar_one()
                done = set(
                    (
                        await conn.execute(select(jobs.c.kind).where(jobs.c.status == "succeeded"))
                    ).scalars()
                )
            if rolled and {"analytics.rollup", "cache.prune"} <= done:
                break
            await asyncio.sleep(0.05)
        assert rolled == 1 and {"analytics.rollup", "cache.prune"} <= done
        text = (await http.get("/metrics")).text
        assert 'banyan_cache_hits_total{backend="new"} ' in text
        assert "# TYPE banyan_cache_misses_total counter" in text
        runtime.cache.ttl = -1.0  # what is cached from now on is expired at once
        await http.get(
            "/api/analytics/summary", params={"from": "2026-01-01T00:00:00Z"}, headers=auth
        )
        assert await runtime.run_action("cache.prune", {}, None) >= 1
