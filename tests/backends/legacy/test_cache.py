"""Tests of banyan/backends/legacy/cache.py: TTL, tags, the load/invalidate race, pruning, metrics;
and
that pruning and the analytics rollup run on the app's job queue by themselves."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
from sqlalchemy import func, select

from banyan.backends.legacy import analytics, jobs
from banyan.backends.legacy.app import create_app
from banyan.backends.legacy.cache import TTLCache, cache_of, metric_lines
from banyan.backends.legacy.db import Database
from banyan.backends.legacy.state import STATE, LegacyState
from banyan.serving import serve
from tests.clock import ManualClock


def test_entries_expire_after_their_ttl_and_are_counted() -> None:
    clock = ManualClock(100.0)
    cache = TTLCache(ttl=5, clock=clock)
    assert cache.get("k") == (False, None)
    cache.put("k", 1, ["t"])
    assert cache.get("k") == (True, 1)
    clock.now += 5
    assert cache.get("k") == (False, None)
    assert cache.stats() == {"hits": 1, "misses": 2, "entries": 0}


def test_invalidation_drops_only_the_tagged_entries() -> None:
    cache = TTLCache()
    cache.put("a1", 1, ["user:a"])
    cache.put("a2", 2, ["user:a", "x"])
    cache.put("b", 3, ["user:b"])
    assert cache.invalidate("user:a") == 2
    assert cache.get("b") == (True, 3) and len(cache) == 1


def test_prune_and_a_full_cache_evict() -> None:
    clock = ManualClock(100.0)
    cache = TTLCache(ttl=1, max_entries=2, clock=clock)
    cache.put("a", 1)
    clock.now += 0.5
    cache.put("b", 2)
    cache.put("c", 3)  # full and nothing expired: the oldest goes
    assert cache.get("a")[0] is False and cache.get("c") == (True, 3)
    clock.now += 1.1
    assert cache.prune() == 2 and len(cache) == 0
    cache.put("d", 4)
    clock.now += 0.6
    cache.put("e", 5)
    clock.now += 0.6
    cache.put("f", 6)  # full, d expired: pruning makes room and e stays
    assert cache.get("e") == (True, 5) and cache.get("f") == (True, 6) and len(cache) == 2


async def test_a_load_overtaken_by_an_invalidation_is_not_stored() -> None:
    cache = TTLCache()
    started, release = asyncio.Event(), asyncio.Event()

    async def slow() -> str:
        started.set()
        await release.wait()
        return "stale"

    task = asyncio.create_task(cache.get_or_load("k", ["t"], slow))
    await started.wait()
    cache.invalidate("t")  # a write lands while the read is in flight
    release.set()
    assert await task == "stale"  # the caller gets what it read...
    assert cache.get("k") == (False, None)  # ...but it is not cached

    async def fresh() -> str:
        return "fresh"

    assert await cache.get_or_load("k", ["t"], fresh) == "fresh"
    assert await cache.get_or_load("k", ["t"], slow) == "fresh"  # a hit: slow is never called


def test_one_cache_per_app_and_its_metric_lines() -> None:
    st = LegacyState(db=Database("sqlite+aiosqlite://"), session_ttl_ms=1, gc_interval=1)
    assert cache_of(st) is cache_of(st)
    cache_of(st).get("missing")
    lines = metric_lines(cache_of(st))
    assert 'banyan_cache_misses_total{backend="legacy"} 1' in lines
    assert 'banyan_cache_entries{backend="legacy"} 0' in lines


async def test_periodic_rollup_and_pruning_and_metrics(tmp_path: Path) -> None:
    app = create_app(f"sqlite+aiosqlite:///{tmp_path / 'legacy.db'}", gc_interval=0.2)
    st = app[STATE]
    async with serve(app) as url, httpx.AsyncClient(base_url=url) as http:
        registered = await http.post(
            "/api/auth/register", json={"email": "m@x.io", "password": "password1", "name": "M"}
        )
        auth = {"Authorization": f"Bearer {registered.json()['token']}"}
        await http.post("/api/analytics/events", json={"events": [{"name": "a"}]}, headers=auth)
        await http.get("/api/analytics/summary", headers=auth)
        await http.get("/api/analytics/summary", headers=auth)
        for _ in range(100):
            async with st.db.engine.connect() as conn:
                count = select(func.count()).select_from(analytics.TABLES.rollups)
                rolled = (await conn.execute(count)).scalar_one()
                kinds = select(jobs.jobs.c.kind).where(jobs.jobs.c.status == "succeeded")
                done = set((await conn.execute(kinds)).scalars())
            if rolled and {"analytics.rollup", "cache.prune"} <= done:
                break
            await asyncio.sleep(0.05)
        assert rolled == 1 and {"analytics.rollup", "cache.prune"} <= done
        text = (await http.get("/metrics")).text
    assert 'banyan_cache_hits_total{backend="legacy"} 1' in text
    assert 'banyan_cache_misses_total{backend="legacy"} 1' in text
