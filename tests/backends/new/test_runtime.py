"""Tests of the function runtime alone: validators, rollback, cache, scheduler."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from banyan.backends.common import validate as v
from banyan.backends.common.errors import ApiError
from banyan.backends.new.runtime import schema
from banyan.backends.new.runtime.context import MutationCtx, QueryCtx, tables_read
from banyan.backends.new.runtime.engine import Runtime, make_engine
from banyan.backends.new.runtime.registry import Registry
from banyan.backends.new.runtime.scheduler import Cron, SchedulerRunner

ran: list[str] = []
reg = Registry()


@reg.query("folders.count", cache=True)
async def count(ctx: QueryCtx, args: dict[str, Any]) -> int:
    return int((await ctx.read(select(func.count()).select_from(schema.folders))).scalar_one())


@reg.mutation("folders.add", args={"name": v.string(min_len=1, max_len=100)})
async def add(ctx: MutationCtx, args: dict[str, Any]) -> None:
    await ctx.write(
        schema.folders.insert().values(
            id=args["name"], user_id="u", name=args["name"], created_ms=1, updated_ms=1
        )
    )
    if args["name"] == "boom":
        raise RuntimeError("half way")


@reg.mutation("folders.later", args={"name": v.string(min_len=1)})
async def later(ctx: MutationCtx, args: dict[str, Any]) -> str:
    return await ctx.scheduler.run_after(0, "note", {"name": args["name"]})


@reg.mutation("note", args={"name": v.string()})
async def note(ctx: MutationCtx, args: dict[str, Any]) -> None:
    ran.append(args["name"])


@reg.query("sessions.foldered", cache=True)
async def foldered(ctx: QueryCtx, args: dict[str, Any]) -> int:
    f, s = schema.folders, schema.sessions
    joined = select(func.count()).select_from(s.join(f, f.c.id == s.c.folder_id))
    return int((await ctx.read(joined)).scalar_one())


@reg.mutation("sessions.put", args={"folder": v.string()})
async def put_session(ctx: MutationCtx, args: dict[str, Any]) -> None:
    await ctx.write(
        schema.sessions.insert(),
        {
            "id": args["folder"],
            "user_id": "u",
            "folder_id": args["folder"],
            "title": "t",
            "created_ms": 1,
            "updated_ms": 1,
            "expires_ms": 1,
            "message_count": 0,
        },
    )


gate: dict[str, asyncio.Event] = {}


@reg.query("folders.slowCount", cache=True)
async def slow_count(ctx: QueryCtx, args: dict[str, Any]) -> int:
    counted = await count(ctx, args)
    await gate["open"].wait()  # a commit lands while this result is on its way
    return counted


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'rt.db'}"


@pytest.fixture
async def runtime(url: str) -> AsyncIterator[Runtime]:
    rt = Runtime(make_engine(url), reg)
    await schema.migrate(rt.engine)
    yield rt
    await rt.engine.dispose()


async def test_validator_errors_use_contract_messages(runtime: Runtime) -> None:
    with pytest.raises(ApiError):
        await runtime.run_mutation("folders.add", {"name": ""}, None)
    with pytest.raises(LookupError):
        await runtime.run_query("folders.add", {}, None)


async def test_failed_mutation_writes_nothing(runtime: Runtime) -> None:
    with pytest.raises(RuntimeError):
        await runtime.run_mutation("folders.add", {"name": "boom"}, None)
    assert await runtime.run_query("folders.count", {}, None) == 0


async def test_cache_hits_and_is_invalidated_by_writes(runtime: Runtime) -> None:
    assert await runtime.run_query("folders.count", {}, None) == 0
    assert await runtime.run_query("folders.count", {}, None) == 0
    assert runtime.cache.hits == 1
    await runtime.run_mutation("folders.add", {"name": "a"}, None)
    assert await runtime.run_query("folders.count", {}, None) == 1


async def test_a_cached_join_is_invalidated_by_a_write_to_either_table(runtime: Runtime) -> None:
    assert await runtime.run_query("sessions.foldered", {}, None) == 0
    await runtime.run_mutation("folders.add", {"name": "a"}, None)
    assert runtime.cache.hits == 0
    assert await runtime.run_query("sessions.foldered", {}, None) == 0
    await runtime.run_mutation("sessions.put", {"folder": "a"}, None)
    assert await runtime.run_query("sessions.foldered", {}, None) == 1


async def test_a_result_read_before_a_write_it_raced_is_not_cached(runtime: Runtime) -> None:
    gate["open"] = asyncio.Event()
    slow = asyncio.ensure_future(runtime.run_query("folders.slowCount", {}, None))
    await asyncio.sleep(0.05)
    await runtime.run_mutation("folders.add", {"name": "a"}, None)
    gate["open"].set()
    assert await slow == 0  # what it read before the write ...
    assert await runtime.run_query("folders.slowCount", {}, None) == 1  # ... was not kept
    assert await runtime.run_query("folders.slowCount", {}, None) == 1
    assert runtime.cache.hits == 1


def test_invalidation_drops_only_the_readers_of_written_tables() -> None:
    from banyan.backends.new.runtime import cache as cache_module

    cache = cache_module.QueryCache()
    cache.put("a", {"users", "revoked_tokens"}, 1)
    cache.put("b", {"folders"}, 2)
    cache.put("b", {"folders"}, 3)  # replaced, indexed once
    assert cache.invalidate({"sessions"}) == 0
    assert cache.invalidate({"revoked_tokens", "folders"}) == 2
    assert len(cache) == 0 and cache._readers == {}
    cache.put("c", {"folders"}, 4, since=0.0)  # folders was written after 0.0
    assert len(cache) == 0
    cache_module.WRITES_REMEMBERED = -1.0
    try:
        cache.prune()
    finally:
        cache_module.WRITES_REMEMBERED = 300.0
    cache.put("c", {"folders"}, 4, since=0.0)  # the old write is forgotten
    assert cache.get("c") == (True, 4)


def test_tables_read_finds_subqueries_and_selected_columns() -> None:
    s, m = schema.sessions, schema.messages
    inner = select(m.c.id).where(m.c.session_id.in_(select(s.c.id))).subquery()
    statement = select(func.count()).select_from(inner)
    assert tables_read(statement) == {"sessions", "messages"}
    assert tables_read(statement) is tables_read(statement)  # walked once
    assert tables_read(select(s.c.id, m.c.id)) == {"sessions", "messages"}


async def test_scheduled_call_survives_restart_and_runs_once(url: str) -> None:
    ran.clear()
    first = Runtime(make_engine(url), reg)
    await schema.migrate(first.engine)
    await first.run_mutation("folders.later", {"name": "x"}, None)
    await first.engine.dispose()  # "stopped" before any runner saw the row
    second = Runtime(make_engine(url), reg)
    runner = SchedulerRunner(second, [Cron("note", 3600)])
    await runner.run_due()
    await runner.run_due()
    assert ran == ["x"]
    await second.engine.dispose()


@reg.mutation("always.fails")
async def always_fails(ctx: MutationCtx, args: dict[str, Any]) -> None:
    raise RuntimeError("nope")


@reg.mutation("schedule.failing")
async def schedule_failing(ctx: MutationCtx, args: dict[str, Any]) -> str:
    return await ctx.scheduler.run_after(0, "always.fails", {})


async def test_failing_call_is_retried_then_dead(runtime: Runtime) -> None:
    await runtime.run_mutation("schedule.failing", {}, None)
    runner = SchedulerRunner(runtime, [], max_attempts=2, backoff_seconds=0)
    assert await runner.run_due() == 1
    assert await runner.run_due() == 1
    assert await runner.run_due() == 0
    s = schema.scheduled
    async with runtime.engine.connect() as conn:
        row = (await conn.execute(select(s.c.status, s.c.attempts, s.c.last_error))).one()
    assert row[0] == "dead" and row[1] == 2 and "nope" in row[2]


def test_cache_prunes_expired_and_bounds_size() -> None:
    from banyan.backends.new.runtime.cache import QueryCache

    cache = QueryCache(ttl=-1, max_entries=2)
    for i in range(3):
        cache.put(str(i), {"t"}, i)
    assert len(cache) == 1
    assert cache.get("2") == (False, None)
