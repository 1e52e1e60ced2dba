"""Tests of the function runtime alone: validators, rollback, cache, scheduler."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from backends.common import validate as v
from backends.common.errors import ApiError
from backends.new.runtime import schema
from backends.new.runtime.context import MutationCtx, QueryCtx
from backends.new.runtime.engine import Runtime, make_engine
from backends.new.runtime.registry import Registry
from backends.new.runtime.scheduler import Cron, SchedulerRunner

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
    from backends.new.runtime.cache import QueryCache

    cache = QueryCache(ttl=-1, max_entries=2)
    for i in range(3):
        cache.put(str(i), {"t"}, i)
    assert len(cache) == 1
    assert cache.get("2") == (False, None)
