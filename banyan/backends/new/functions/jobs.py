"""The new backend's durable job queue, built on the runtime's persisted scheduler.

A job is a row of the shared ``jobs`` table (:mod:`banyan.backends.common.jobs`) whose ``kind`` names a
registered function (an action or a mutation) called with the job's ``args``. :func:`enqueue` runs
inside the caller's mutation: the row and a scheduled call of ``jobs.drain`` commit together, so a
job exists exactly when the write that asked for it does. ``jobs.drain`` (an action) claims due jobs
best-first and runs up to ``concurrency`` of them at once, renewing their leases; ``jobs.finish``
records the outcome and schedules the next drain for a retry. The ``jobs.tick`` cron buries jobs
whose worker died on their last attempt, re-triggers a drain for expired leases, prunes old system
jobs, and enqueues periodic jobs: ``periodic("analytics.rollup")`` makes that function a job every
``BANYAN_GC_INTERVAL`` seconds (or ``every``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from typing import Any

from sqlalchemy import delete, insert, select

from banyan.backends.common import ids
from banyan.backends.common import jobs as q
from banyan.backends.common import validate as v
from banyan.backends.common.clock import frozen_at, now_ms
from banyan.backends.common.errors import NotFound
from banyan.backends.new.functions.common import CALLER, KEY, OPTIONAL_KEY, anything
from banyan.backends.new.runtime import schema
from banyan.backends.new.runtime.context import ActionCtx, MutationCtx, QueryCtx
from banyan.backends.new.runtime.engine import Runtime
from banyan.backends.new.runtime.registry import action, mutation, query
from banyan.backends.new.runtime.scheduler import Cron
from banyan.backends.new.runtime.schema import jobs
from banyan.logs import get_logger
from banyan.tasks import cancel_and_wait, uncancellable

log = get_logger("new.jobs")

PERIODIC: dict[str, float | None] = {}  # function name -> every seconds (None: the GC interval)
_SETTINGS = "jobs"
_WAKE = "jobs_wake"
_GC_INTERVAL = "jobs_gc_interval"


SCHEDULED_KEEP_MS = 24 * 3600 * 1000  # how long a finished scheduler call stays inspectable


def periodic(function: str, every: float | None = None) -> None:
    """Run the registered ``function`` as a job every ``every`` seconds."""
    PERIODIC[function] = every


def install(runtime: Runtime, settings: q.JobSettings, gc_interval: float) -> list[Cron]:
    """Configure the queue on ``runtime``; returns the crons the scheduler must run."""
    wake = asyncio.Event()
    runtime.settings[_SETTINGS] = settings
    runtime.settings[_WAKE] = wake
    runtime.settings[_GC_INTERVAL] = gc_interval
    runtime.on_scheduled.append(wake.set)
    return [Cron("jobs.tick", min(gc_interval, settings.lease / 2))]


def settings_of(runtime: Runtime) -> q.JobSettings:
    found = runtime.settings.get(_SETTINGS)
    return found if isinstance(found, q.JobSettings) else q.JobSettings()


async def enqueue(
    ctx: MutationCtx,
    kind: str,
    args: Mapping[str, Any],
    *,
    user_id: str | None = None,
    priority: int = 0,
    job_id: str | None = None,
    delay: float = 0.0,
) -> dict[str, Any]:
    """Add a job in the caller's transaction; a job id that exists is replaced."""
    ctx.runtime.registry.get(kind)  # an unknown kind fails now, not in the worker
    row = q.new_row(
        kind,
        args,
        settings=settings_of(ctx.runtime),
        user_id=user_id,
        priority=priority,
        job_id=job_id,
        delay_ms=int(delay * 1000),
    )
    if job_id is not None:
        await ctx.write(delete(jobs).where(jobs.c.id == job_id))
    await ctx.write(insert(jobs).values(**row))
    await ctx.scheduler.run_at(row["run_at_ms"], "jobs.drain", {})
    return row


# -- the queue's functions -----------------------------------------------------------------------


@mutation("jobs.claim", {"token": v.string(min_len=1, max_len=36)})
async def claim(ctx: MutationCtx, args: dict[str, Any]) -> dict[str, Any] | None:
    now = now_ms()
    lease_ms = settings_of(ctx.runtime).lease_ms
    for job_id in (await ctx.read(q.due_ids(jobs, now, 8))).scalars().all():
        taken = await ctx.write(q.claim(jobs, job_id, args["token"], lease_ms, now))
        if taken.rowcount == 1:
            row = (await ctx.read(select(jobs).where(jobs.c.id == job_id))).mappings().one()
            return q.ClaimedJob.from_row(row).as_dict()
    return None


@mutation("jobs.renew", {"id": v.string(), "token": v.string()})
async def renew(ctx: MutationCtx, args: dict[str, Any]) -> bool:
    lease_ms = settings_of(ctx.runtime).lease_ms
    done = await ctx.write(q.renew(jobs, args["id"], args["token"], lease_ms, now_ms()))
    return bool(done.rowcount)


@mutation(
    "jobs.finish",
    {
        "id": v.string(),
        "token": v.string(),
        "outcome": v.one_of("succeeded", "failed", "released"),
        "result": anything(),
        "error": v.nullable(v.string(strip=False, max_len=q.MAX_ERROR_CHARS)),
        "attempts": v.integer(minimum=0),
        "max_attempts": v.integer(minimum=1),
    },
    optional={"result", "error"},
)
async def finish(ctx: MutationCtx, args: dict[str, Any]) -> str:
    now, job_id, token = now_ms(), args["id"], args["token"]
    if args["outcome"] == "succeeded":
        await ctx.write(q.succeed(jobs, job_id, token, args.get("result"), now))
        return "succeeded"
    if args["outcome"] == "released":
        await ctx.write(q.release(jobs, job_id, token, now))
        await ctx.scheduler.run_at(now, "jobs.drain", {})
        return "queued"
    statement, status = q.fail(
        jobs,
        job_id,
        token,
        attempts=args["attempts"],
        max_attempts=args["max_attempts"],
        error=args.get("error") or "failed",
        settings=settings_of(ctx.runtime),
        now=now,
    )
    done = await ctx.write(statement)
    if done.rowcount and status == "failed":
        retry_at = (await ctx.read(select(jobs.c.run_at_ms).where(jobs.c.id == job_id))).scalar()
        await ctx.scheduler.run_at(int(retry_at or now), "jobs.drain", {})
    return status


@mutation("jobs.tick")
async def tick(ctx: MutationCtx, args: dict[str, Any]) -> dict[str, int]:
    now = now_ms()
    settings = settings_of(ctx.runtime)
    buried = (await ctx.write(q.bury_expired(jobs, now))).rowcount or 0
    pruned = (await ctx.write(q.prune_periodic(jobs, now))).rowcount or 0
    calls = schema.scheduled  # finished one-off scheduler calls (every enqueue adds one)
    finished = calls.c.status == "done", calls.c.run_at_ms < now - SCHEDULED_KEEP_MS
    pruned_calls = (await ctx.write(delete(calls).where(*finished))).rowcount or 0
    gc_interval = float(ctx.runtime.settings.get(_GC_INTERVAL, 60.0))
    added = 0
    for function, every in sorted(PERIODIC.items()):
        every_ms = int((every or gc_interval) * 1000)
        job_id = q.periodic_job_id(function, q.periodic_slot(every_ms, now))
        exists = (await ctx.read(select(jobs.c.id).where(jobs.c.id == job_id))).first()
        if exists is None:
            row = q.new_row(function, {}, settings=settings, job_id=job_id, now=now)
            await ctx.write(insert(jobs).values(**row))
            added += 1
    due = (await ctx.read(q.due_ids(jobs, now, 1))).first()
    if due is not None:
        await ctx.scheduler.run_at(now, "jobs.drain", {})
    return {
        "enqueued": added,
        "dead": int(buried),
        "pruned": int(pruned),
        "calls_pruned": int(pruned_calls),
    }


@action("jobs.drain")
async def drain(ctx: ActionCtx, args: dict[str, Any]) -> dict[str, int]:
    """Run due jobs, ``concurrency`` at a time, until none is due."""
    runtime = ctx.runtime
    settings = settings_of(runtime)
    wake = runtime.settings.get(_WAKE)
    running: set[asyncio.Task[str]] = set()
    ran = 0
    try:
        while True:
            while len(running) < settings.concurrency:
                job = await claim_or_release(runtime)
                if job is None:
                    break
                running.add(asyncio.create_task(run_job(runtime, q.ClaimedJob(**job))))
            if not running:
                return {"ran": ran}
            waiter: asyncio.Future[Any] = asyncio.ensure_future(
                wake.wait() if isinstance(wake, asyncio.Event) else asyncio.sleep(settings.poll)
            )
            done, _ = await asyncio.wait(
                {*running, waiter}, timeout=settings.poll, return_when=asyncio.FIRST_COMPLETED
            )
            waiter.cancel()
            if isinstance(wake, asyncio.Event):
                wake.clear()
            finished = done & running
            running -= finished
            ran += len(finished)
    except asyncio.CancelledError:
        await cancel_and_wait(running)
        raise


async def claim_or_release(runtime: Runtime) -> dict[str, Any] | None:
    """Claim the best due job; a drain stopped meanwhile hands what it claimed back at once."""
    token = q.new_token()
    claiming = asyncio.ensure_future(runtime.run_mutation("jobs.claim", {"token": token}, None))
    try:
        job: dict[str, Any] | None = await asyncio.shield(claiming)
    except asyncio.CancelledError:
        with contextlib.suppress(Exception):
            late = await claiming
            if late is not None:
                release = {"id": late["id"], "token": token, "outcome": "released"}
                release.update(attempts=late["attempts"], max_attempts=late["max_attempts"])
                await runtime.run_mutation("jobs.finish", release, None)
        raise
    return job


async def run_job(runtime: Runtime, job: q.ClaimedJob) -> str:
    """Run one claimed job (renewing its lease) and record how it ended."""
    settings = settings_of(runtime)
    beat = asyncio.create_task(_heartbeat(runtime, job, settings))
    outcome: dict[str, Any] = {
        "id": job.id,
        "token": job.token,
        "attempts": job.attempts,
        "max_attempts": job.max_attempts,
    }
    try:
        with frozen_at(job.due_ms if job.due_ms is not None else now_ms()):
            result = await runtime.run(job.kind, dict(job.args), job.user_id)
    except asyncio.CancelledError:
        beat.cancel()
        released = {**outcome, "outcome": "released"}
        await uncancellable(runtime.run_mutation("jobs.finish", released, None))
        raise
    except Exception as exc:
        error = q.describe(exc)
        log.warning("job_failed", kind=job.kind, id=job.id, attempt=job.attempts, error=error)
        outcome.update(outcome="failed", error=error)
    else:
        outcome.update(outcome="succeeded", result=result)
    finally:
        beat.cancel()
    status: str = await uncancellable(runtime.run_mutation("jobs.finish", outcome, None))
    return status


async def _heartbeat(runtime: Runtime, job: q.ClaimedJob, settings: q.JobSettings) -> None:
    while True:
        await asyncio.sleep(settings.lease / 3)
        with contextlib.suppress(Exception):
            kept = await runtime.run_mutation(
                "jobs.renew", {"id": job.id, "token": job.token}, None
            )
            if not kept:
                log.warning("job_lease_lost", kind=job.kind, id=job.id)
                return


@query("jobs.get", {"id": v.string(), **CALLER, **KEY}, optional=OPTIONAL_KEY)
async def get_job(ctx: QueryCtx, args: dict[str, Any]) -> dict[str, Any]:
    row = None
    if ids.is_uuid(args["id"]):
        row = (await ctx.read(select(jobs).where(jobs.c.id == args["id"]))).mappings().first()
    if row is None or row["user_id"] != args["caller"]["id"]:
        raise NotFound("job not found")
    return q.render(row)


@query("jobs.depth")
async def depth(ctx: QueryCtx, args: dict[str, Any]) -> dict[str, int]:
    return q.depth(await ctx.read(q.count_by_status(jobs)))
