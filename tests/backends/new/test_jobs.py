"""Tests of the new backend's job queue (banyan/backends/new/functions/jobs.py) on a real runtime
and
SQLite store: enqueue inside a mutation, drains in priority order, retries scheduled on the
persisted scheduler, dead letters, lease takeover, release on cancel, the tick cron and periodic
jobs. The ``testjobs.*`` functions are registered by this module."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from banyan.backends.common import jobs as q
from banyan.backends.common import validate as v
from banyan.backends.common.clock import now_ms
from banyan.backends.new.functions import jobs
from banyan.backends.new.functions.common import anything
from banyan.backends.new.runtime import schema
from banyan.backends.new.runtime.context import ActionCtx, MutationCtx
from banyan.backends.new.runtime.engine import Runtime, make_engine
from banyan.backends.new.runtime.registry import action, mutation, registry
from banyan.backends.new.runtime.scheduler import SchedulerRunner

SEEN: list[str] = []
FAILS: dict[str, int] = {}
GATE = asyncio.Event()


@mutation(
    "testjobs.enqueue",
    {"kind": v.string(), "args": anything(), "priority": v.integer()},
    optional={"priority"},
)
async def add(ctx: MutationCtx, args: dict[str, Any]) -> str:
    row = await jobs.enqueue(
        ctx, args["kind"], args["args"], user_id="u1", priority=args.get("priority", 0)
    )
    return str(row["id"])


@action("testjobs.record", {"name": v.string()})
async def record(ctx: ActionCtx, args: dict[str, Any]) -> str:
    SEEN.append(args["name"])
    return args["name"]


@action("testjobs.flaky", {"key": v.string()})
async def flaky(ctx: ActionCtx, args: dict[str, Any]) -> str:
    left = FAILS.get(args["key"], 0)
    if left:
        FAILS[args["key"]] = left - 1
        raise RuntimeError("not yet")
    return "done"


@action("testjobs.wait")
async def wait(ctx: ActionCtx, args: dict[str, Any]) -> str:
    await GATE.wait()
    return "released"


@pytest.fixture
async def runtime(tmp_path: Path) -> AsyncIterator[Runtime]:
    made = Runtime(make_engine(f"sqlite+aiosqlite:///{tmp_path / 'new.db'}"), registry)
    await schema.migrate(made.engine)
    SEEN.clear()
    GATE.clear()
    yield made
    await made.engine.dispose()


def configure(runtime: Runtime, **settings: Any) -> None:
    chosen: dict[str, Any] = {"backoff": 0.01, "lease": 5.0, "max_attempts": 3}
    chosen.update(concurrency=1, poll=0.02)
    chosen.update(settings)
    jobs.install(runtime, q.JobSettings(**chosen), gc_interval=60)


async def enqueue(runtime: Runtime, kind: str, args: dict[str, Any], priority: int = 0) -> str:
    sent = {"kind": kind, "args": args, "priority": priority}
    job_id: str = await runtime.run_mutation("testjobs.enqueue", sent, None)
    return job_id


async def row_of(runtime: Runtime, job_id: str) -> dict[str, Any]:
    async with runtime.engine.connect() as conn:
        found = await conn.execute(select(schema.jobs).where(schema.jobs.c.id == job_id))
        return dict(found.mappings().one())


async def drain(runtime: Runtime) -> dict[str, int]:
    ran: dict[str, int] = await runtime.run_action("jobs.drain", {}, None)
    return ran


async def test_enqueue_commits_the_job_and_a_drain_together(runtime: Runtime) -> None:
    configure(runtime)
    job_id = await enqueue(runtime, "testjobs.record", {"name": "a"})
    async with runtime.engine.connect() as conn:
        calls = (await conn.execute(select(schema.scheduled.c.name))).scalars().all()
    assert calls == ["jobs.drain"]
    assert (await row_of(runtime, job_id))["status"] == "queued"
    with pytest.raises(LookupError):
        await enqueue(runtime, "testjobs.nobody", {})


async def test_a_drain_runs_jobs_best_first(runtime: Runtime) -> None:
    configure(runtime)
    for name, priority in (("low", 0), ("high", 9), ("mid", 3)):
        await enqueue(runtime, "testjobs.record", {"name": name}, priority)
    assert await drain(runtime) == {"ran": 3}
    assert SEEN == ["high", "mid", "low"]
    assert await drain(runtime) == {"ran": 0}
    depth = await runtime.run_query("jobs.depth", {}, None)
    assert depth == {**dict.fromkeys(q.STATUSES, 0), "succeeded": 3}


async def test_retries_ride_the_scheduler_until_success_or_the_dead_letters(
    runtime: Runtime,
) -> None:
    configure(runtime)
    FAILS["twice"], FAILS["always"] = 2, 100
    twice = await enqueue(runtime, "testjobs.flaky", {"key": "twice"})
    always = await enqueue(runtime, "testjobs.flaky", {"key": "always"})
    runner = SchedulerRunner(runtime, [], poll_interval=0.02)
    await runner.start()
    try:
        for _ in range(300):
            rows = [await row_of(runtime, twice), await row_of(runtime, always)]
            if [r["status"] for r in rows] == ["succeeded", "dead"]:
                break
            await asyncio.sleep(0.01)
    finally:
        await runner.stop()
    assert rows[0]["status"] == "succeeded" and rows[0]["attempts"] == 3
    assert rows[1]["status"] == "dead" and rows[1]["attempts"] == 3
    assert rows[1]["error"] == "RuntimeError: not yet"


async def test_an_expired_lease_is_taken_over(runtime: Runtime) -> None:
    configure(runtime, lease=0.05)
    job_id = await enqueue(runtime, "testjobs.record", {"name": "orphan"})
    orphan = await runtime.run_mutation("jobs.claim", {"token": "dead-worker"}, None)
    assert orphan["id"] == job_id
    assert await drain(runtime) == {"ran": 0}  # still leased
    await asyncio.sleep(0.08)
    tick = await runtime.run_mutation("jobs.tick", {}, None)
    assert tick["dead"] == 0
    assert (await drain(runtime))["ran"] >= 1  # the orphan (and any periodic job just enqueued)
    row = await row_of(runtime, job_id)
    assert row["status"] == "succeeded" and row["attempts"] == 2
    late = {**orphan, "outcome": "succeeded", "result": "stale"}
    late.pop("kind"), late.pop("args"), late.pop("user_id"), late.pop("due_ms")
    assert await runtime.run_mutation("jobs.finish", late, None) == "succeeded"
    assert (await row_of(runtime, job_id))[
        "result"
    ] == '"orphan"'  # the late finish changed nothing


async def test_a_dead_worker_on_the_last_attempt_is_buried_by_the_tick(runtime: Runtime) -> None:
    configure(runtime, lease=0.05, max_attempts=1)
    job_id = await enqueue(runtime, "testjobs.record", {"name": "x"})
    assert await runtime.run_mutation("jobs.claim", {"token": "t"}, None) is not None
    await asyncio.sleep(0.08)
    assert (await runtime.run_mutation("jobs.tick", {}, None))["dead"] == 1
    assert (await row_of(runtime, job_id))["status"] == "dead"


async def test_a_cancelled_drain_hands_its_jobs_back(runtime: Runtime) -> None:
    configure(runtime, lease=0.15)
    job_id = await enqueue(runtime, "testjobs.wait", {})
    task = asyncio.create_task(drain(runtime))
    for _ in range(100):
        if (await row_of(runtime, job_id))["status"] == "running":
            break
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.2)  # a heartbeat renews the lease meanwhile
    assert await runtime.run_mutation("jobs.claim", {"token": "thief"}, None) is None
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    row = await row_of(runtime, job_id)
    assert row["status"] == "queued" and row["attempts"] == 0
    GATE.set()
    assert await drain(runtime) == {"ran": 1}


async def test_periodic_functions_become_jobs_once_per_slot(runtime: Runtime) -> None:
    configure(runtime)
    jobs.periodic("testjobs.record", every=3600)
    try:
        first = await runtime.run_mutation("jobs.tick", {}, None)
        second = await runtime.run_mutation("jobs.tick", {}, None)
    finally:
        del jobs.PERIODIC["testjobs.record"]
    assert first["enqueued"] >= 1 and second["enqueued"] == 0
    row = await row_of(runtime, q.periodic_job_id("testjobs.record", now_ms() // 3_600_000))
    assert row["user_id"] is None and row["kind"] == "testjobs.record"


async def test_job_settings_default_without_install(runtime: Runtime) -> None:
    assert jobs.settings_of(runtime) == q.JobSettings()


async def test_the_tick_prunes_finished_scheduler_calls_after_a_day(runtime: Runtime) -> None:
    configure(runtime)
    calls = schema.scheduled
    old, fresh = now_ms() - jobs.SCHEDULED_KEEP_MS - 1000, now_ms()
    async with runtime.engine.begin() as conn:
        for call_id, status, at in (
            ("old", "done", old),
            ("new", "done", fresh),
            ("x", "dead", old),
        ):
            row = {"id": call_id, "name": "jobs.drain", "args": "{}", "run_at_ms": at}
            await conn.execute(calls.insert().values(status=status, attempts=1, **row))
    assert (await runtime.run_mutation("jobs.tick", {}, None))["calls_pruned"] == 1
    async with runtime.engine.connect() as conn:
        left = set((await conn.execute(select(calls.c.id))).scalars())
    assert {"new", "x"} <= left and "old" not in left
