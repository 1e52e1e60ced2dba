"""Tests of the legacy job queue (banyan/backends/legacy/jobs.py) on a real SQLite store:
priorities,
retries with backoff, dead letters, leases of a worker that died, release on a clean stop,
heartbeats, periodic jobs and pruning. Job kinds used here are registered by this module."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update

from banyan.backends.common import jobs as q
from banyan.backends.common.clock import now_ms
from banyan.backends.legacy import jobs, migrations
from banyan.backends.legacy.db import Database
from banyan.backends.legacy.state import LegacyState

SEEN: list[str] = []
FAILS: dict[str, int] = {}
GATE: dict[str, asyncio.Event] = {}


@jobs.handler("test.record")
async def record(st: LegacyState, job: q.ClaimedJob) -> dict[str, Any]:
    SEEN.append(job.args["name"])
    return {"name": job.args["name"]}


@jobs.handler("test.flaky")
async def flaky(st: LegacyState, job: q.ClaimedJob) -> str:
    left = FAILS.get(job.id, 0)
    if left:
        FAILS[job.id] = left - 1
        raise RuntimeError(f"{left} more failures")
    return "finally"


@jobs.handler("test.wait")
async def wait(st: LegacyState, job: q.ClaimedJob) -> str:
    await GATE[job.id].wait()
    return "released"


@pytest.fixture
async def st(tmp_path: Path) -> AsyncIterator[LegacyState]:
    state = LegacyState(
        db=Database(f"sqlite+aiosqlite:///{tmp_path / 'jobs.db'}"),
        session_ttl_ms=60_000,
        gc_interval=60,
    )
    await migrations.migrate(state.db)
    SEEN.clear()
    yield state
    await state.db.close()


def worker(st: LegacyState, **settings: Any) -> jobs.JobWorker:
    chosen: dict[str, Any] = {"backoff": 0.01, "lease": 5.0, "max_attempts": 3}
    chosen.update(concurrency=1, poll=0.02)
    chosen.update(settings)
    return jobs.install(st, settings=q.JobSettings(**chosen))


async def add(st: LegacyState, kind: str, args: dict[str, Any], **options: Any) -> str:
    async with st.db.engine.begin() as conn:
        row = await jobs.enqueue(conn, st, kind, args, **options)
    return str(row["id"])


async def row_of(st: LegacyState, job_id: str) -> dict[str, Any]:
    async with st.db.engine.connect() as conn:
        found = await conn.execute(select(jobs.jobs).where(jobs.jobs.c.id == job_id))
        return dict(found.mappings().one())


async def settle(st: LegacyState, job_id: str, statuses: tuple[str, ...]) -> dict[str, Any]:
    for _ in range(300):
        row = await row_of(st, job_id)
        if row["status"] in statuses:
            return row
        await asyncio.sleep(0.01)
    raise AssertionError(f"job {job_id} stayed {row['status']}")


async def test_higher_priority_runs_first(st: LegacyState) -> None:
    w = worker(st)
    for name, priority in (("low", 0), ("high", 10), ("mid", 5), ("low2", 0)):
        await add(st, "test.record", {"name": name}, priority=priority)
    while (job := await w.claim_one()) is not None:
        assert await w.run_one(job) == "succeeded"
    assert SEEN == ["high", "mid", "low", "low2"]


async def test_retries_back_off_then_succeed(st: LegacyState) -> None:
    w = worker(st, backoff=0.2)
    job_id = await add(st, "test.flaky", {})
    FAILS[job_id] = 2
    job = await w.claim_one()
    assert job is not None and await w.run_one(job) == "failed"
    row = await row_of(st, job_id)
    assert row["status"] == "failed" and row["error"] == "RuntimeError: 2 more failures"
    assert 150 <= row["run_at_ms"] - row["updated_ms"] <= 250  # backoff * 2**0
    assert await w.claim_one() is None  # not due yet
    await w.start()
    try:
        done = await settle(st, job_id, ("succeeded",))
    finally:
        await w.stop()
    assert done["attempts"] == 3 and done["error"] is None and done["result"] == '"finally"'
    assert w.ran["failed"] == 2


async def test_a_job_that_keeps_failing_is_dead_after_max_attempts(st: LegacyState) -> None:
    w = worker(st)
    job_id = await add(st, "test.flaky", {})
    FAILS[job_id] = 100
    await w.start()
    try:
        dead = await settle(st, job_id, ("dead",))
    finally:
        await w.stop()
    assert dead["attempts"] == 3 and dead["error"].startswith("RuntimeError")
    assert await w.claim_one() is None  # the dead stay dead


async def test_an_unknown_kind_fails(st: LegacyState) -> None:
    w = worker(st, max_attempts=1)
    job_id = await add(st, "test.nobody", {})
    job = await w.claim_one()
    assert job is not None and await w.run_one(job) == "dead"
    assert "no handler for job kind" in (await row_of(st, job_id))["error"]


async def test_an_expired_lease_is_taken_over_and_the_late_finish_is_ignored(
    st: LegacyState,
) -> None:
    dying = worker(st, lease=0.1)
    job_id = await add(st, "test.record", {"name": "orphan"})
    orphan = await dying.claim_one()
    assert orphan is not None and orphan.attempts == 1
    assert await dying.claim_one() is None  # leased
    await asyncio.sleep(0.15)
    heir = worker(st)
    taken = await heir.claim_one()
    assert taken is not None and taken.id == job_id and taken.attempts == 2
    late = await dying._write(q.succeed(jobs.jobs, orphan.id, orphan.token, "stale", now_ms()))
    assert late == 0
    assert await heir.run_one(taken) == "succeeded"
    assert (await row_of(st, job_id))["result"] == '{"name":"orphan"}'


async def test_a_worker_that_died_on_the_last_attempt_leaves_a_dead_job(st: LegacyState) -> None:
    w = worker(st, lease=0.05, max_attempts=1)
    job_id = await add(st, "test.record", {"name": "x"})
    assert await w.claim_one() is not None
    await asyncio.sleep(0.1)
    assert await w.claim_one() is None  # out of attempts: not claimable
    assert (await w.tick())["dead"] == 1
    row = await row_of(st, job_id)
    assert row["status"] == "dead" and "lease expired" in row["error"]


async def test_a_clean_stop_hands_running_jobs_back(st: LegacyState) -> None:
    w = worker(st)
    job_id = await add(st, "test.wait", {})
    GATE[job_id] = asyncio.Event()
    await w.start()
    await settle(st, job_id, ("running",))
    await w.stop()
    row = await row_of(st, job_id)
    assert row["status"] == "queued" and row["attempts"] == 0 and row["lease_token"] is None
    assert w.ran["released"] == 1
    GATE[job_id].set()
    again = worker(st)
    job = await again.claim_one()
    assert job is not None and await again.run_one(job) == "succeeded"


async def test_heartbeats_keep_the_lease(st: LegacyState) -> None:
    w = worker(st, lease=0.15)
    job_id = await add(st, "test.wait", {})
    GATE[job_id] = asyncio.Event()
    job = await w.claim_one()
    assert job is not None
    running = asyncio.create_task(w.run_one(job))
    await asyncio.sleep(0.35)  # over two leases, renewed every 50 ms
    assert await worker(st).claim_one() is None
    GATE[job_id].set()
    assert await running == "succeeded"


async def test_periodic_jobs_are_enqueued_once_per_slot_and_pruned(st: LegacyState) -> None:
    jobs.PERIODIC["test.record"] = 3600.0
    try:
        w = worker(st)
        first = await w.tick()
        second = await w.tick()
    finally:
        del jobs.PERIODIC["test.record"]
    assert first["enqueued"] >= 1 and second["enqueued"] == 0
    async with st.db.engine.connect() as conn:
        mine = (
            (await conn.execute(select(jobs.jobs).where(jobs.jobs.c.kind == "test.record")))
            .mappings()
            .all()
        )
    assert len(mine) == 1 and mine[0]["user_id"] is None
    assert mine[0]["id"] == q.periodic_job_id("test.record", now_ms() // 3_600_000)
    async with st.db.engine.begin() as conn:
        await conn.execute(
            update(jobs.jobs).values(status="succeeded", updated_ms=now_ms() - 2 * 86_400_000)
        )
    assert (await w.tick())["pruned"] == first["enqueued"]
    assert (await w.depth())["succeeded"] == 0


async def test_wake_and_worker_lookup(st: LegacyState) -> None:
    jobs.wake(st)  # no worker yet: nothing to wake
    with pytest.raises(RuntimeError):
        jobs.worker_of(st)
    w = worker(st)
    jobs.wake(st)
    assert w._wake.is_set()
