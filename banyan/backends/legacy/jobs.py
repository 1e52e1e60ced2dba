"""The legacy backend's durable job queue: the ``jobs`` table, a pool of worker tasks, periodic
jobs, and ``GET /api/jobs/{id}``.

Other modules register what a job kind does with ``@handler("kind")`` (``async def fn(st, job)``,
returning a JSON-able result) and enqueue with :func:`enqueue` inside their own transaction, then
call :func:`wake` after the commit. ``@periodic("kind")`` registers a handler that the ticker
enqueues once per ``BANYAN_GC_INTERVAL`` seconds (or ``every``) — the analytics rollup and the cache
pruning plug in this way. Rows move with the shared statements of :mod:`banyan.backends.common.jobs`
(claims, leases, backoff, dead letters), so both backends' queues behave the same.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aiohttp import web
from sqlalchemy import MetaData, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from banyan.backends.common import ids
from banyan.backends.common import jobs as q
from banyan.backends.common.clock import frozen_at, now_ms
from banyan.backends.common.errors import NotFound
from banyan.backends.legacy.auth import authenticate
from banyan.backends.legacy.state import LegacyState, state
from banyan.logs import get_logger
from banyan.tasks import cancel_and_wait, uncancellable

log = get_logger("legacy.jobs")

metadata = MetaData()  # migration 3
jobs = q.define_table(metadata)

JobHandler = Callable[[LegacyState, q.ClaimedJob], Awaitable[Any]]
HANDLERS: dict[str, JobHandler] = {}
PERIODIC: dict[str, float | None] = {}  # kind -> every seconds (None: the GC interval)
_WORKER_KEY = "jobs"


def handler(kind: str) -> Callable[[JobHandler], JobHandler]:
    """Register what a job of ``kind`` does."""

    def register(fn: JobHandler) -> JobHandler:
        HANDLERS[kind] = fn
        return fn

    return register


def periodic(kind: str, every: float | None = None) -> Callable[[JobHandler], JobHandler]:
    """Register a handler that runs as a job of ``kind`` every ``every`` seconds."""

    def register(fn: JobHandler) -> JobHandler:
        HANDLERS[kind] = fn
        PERIODIC[kind] = every
        return fn

    return register


async def enqueue(
    db: AsyncSession | AsyncConnection,
    st: LegacyState,
    kind: str,
    args: Mapping[str, Any],
    *,
    user_id: str | None = None,
    priority: int = 0,
    job_id: str | None = None,
    delay: float = 0.0,
) -> dict[str, Any]:
    """Add a job inside the caller's transaction (it exists once the caller commits); returns
    the row. A job id that exists already is replaced (a re-created owner starts afresh)."""
    row = q.new_row(
        kind,
        args,
        settings=worker_of(st).settings,
        user_id=user_id,
        priority=priority,
        job_id=job_id,
        delay_ms=int(delay * 1000),
    )
    if job_id is not None:
        await db.execute(jobs.delete().where(jobs.c.id == job_id))
    await db.execute(insert(jobs).values(**row))
    return row


def worker_of(st: LegacyState) -> JobWorker:
    found = st.extras.get(_WORKER_KEY)
    if not isinstance(found, JobWorker):
        raise RuntimeError("the job worker is not installed")
    return found


def wake(st: LegacyState) -> None:
    """Tell the worker that a job was committed (it also polls, so this only saves latency)."""
    found = st.extras.get(_WORKER_KEY)
    if isinstance(found, JobWorker):
        found.wake()


class JobWorker:
    """``settings.concurrency`` worker tasks claiming jobs, plus a ticker for leases and periodic
    jobs. ``stop()`` releases the jobs in hand, so a restart picks them up at once."""

    def __init__(self, st: LegacyState, settings: q.JobSettings, *, tick: float) -> None:
        self.st = st
        self.settings = settings
        self.tick_seconds = tick
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._next_due_ms: int | None = None
        self.ran: dict[str, int] = {"succeeded": 0, "failed": 0, "dead": 0, "released": 0}

    def wake(self) -> None:
        self._wake.set()

    async def start(self) -> None:
        for n in range(self.settings.concurrency):
            self._tasks.append(asyncio.create_task(self._slot(), name=f"legacy-job-{n}"))
        self._tasks.append(asyncio.create_task(self._ticker(), name="legacy-job-ticker"))

    async def stop(self) -> None:
        await cancel_and_wait(self._tasks)
        self._tasks.clear()

    # -- claiming and running ------------------------------------------------------------------

    async def claim_one(self) -> q.ClaimedJob | None:
        now = now_ms()
        token = q.new_token()
        async with self.st.db.engine.begin() as conn:
            candidates = (await conn.execute(q.due_ids(jobs, now, 8))).scalars().all()
            lease_ms = self.settings.lease_ms
            for job_id in candidates:
                taken = await conn.execute(q.claim(jobs, job_id, token, lease_ms, now))
                if taken.rowcount == 1:
                    row = (await conn.execute(select(jobs).where(jobs.c.id == job_id))).mappings()
                    return q.ClaimedJob.from_row(row.one())
            self._next_due_ms = (await conn.execute(q.next_due_ms(jobs))).scalar()
        return None

    def _idle_seconds(self) -> float:
        """How long an idle worker waits: until the next retry is due, at most ``poll``."""
        if self._next_due_ms is None:
            return self.settings.poll
        return min(self.settings.poll, max(0.0, (self._next_due_ms - now_ms()) / 1000))

    async def run_one(self, job: q.ClaimedJob) -> str:
        """Run a claimed job to its next state; returns that state."""
        beat = asyncio.create_task(self._heartbeat(job))
        try:
            fn = HANDLERS.get(job.kind)
            if fn is None:
                raise LookupError(f"no handler for job kind {job.kind!r}")
            with frozen_at(job.due_ms if job.due_ms is not None else now_ms()):
                result = await fn(self.st, job)
        except asyncio.CancelledError:
            beat.cancel()
            await uncancellable(self._write(q.release(jobs, job.id, job.token, now_ms())))
            self.ran["released"] += 1
            raise
        except Exception as exc:
            error = q.describe(exc)
            log.warning("job_failed", kind=job.kind, id=job.id, attempt=job.attempts, error=error)
            statement, status = q.fail(
                jobs,
                job.id,
                job.token,
                attempts=job.attempts,
                max_attempts=job.max_attempts,
                error=error,
                settings=self.settings,
                now=now_ms(),
            )
        else:
            status = "succeeded"
            statement = q.succeed(jobs, job.id, job.token, result, now_ms())
        finally:
            beat.cancel()
        await uncancellable(self._write(statement))
        self.ran[status] += 1
        return status

    async def _write(self, statement: Any) -> int:
        async with self.st.db.engine.begin() as conn:
            done = await conn.execute(statement)
        return int(done.rowcount or 0)

    async def _heartbeat(self, job: q.ClaimedJob) -> None:
        while True:
            await asyncio.sleep(self.settings.lease / 3)
            kept = await self._write(
                q.renew(jobs, job.id, job.token, self.settings.lease_ms, now_ms())
            )
            if not kept:
                log.warning("job_lease_lost", kind=job.kind, id=job.id)
                return

    async def _slot(self) -> None:
        while True:
            self._wake.clear()
            claiming = asyncio.ensure_future(self.claim_one())
            try:
                job = await asyncio.shield(claiming)
            except asyncio.CancelledError:
                with contextlib.suppress(Exception):
                    late = await claiming
                    if late is not None:  # claimed as we were stopped: hand it back
                        await self._write(q.release(jobs, late.id, late.token, now_ms()))
                raise
            except Exception:
                log.exception("job_claim_failed")
                job = None
            if job is None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self._idle_seconds())
                continue
            await self.run_one(job)

    # -- periodic jobs, expired leases, pruning --------------------------------------------------

    async def tick(self) -> dict[str, int]:
        now = now_ms()
        added = 0
        async with self.st.db.engine.begin() as conn:
            buried = (await conn.execute(q.bury_expired(jobs, now))).rowcount or 0
            pruned = (await conn.execute(q.prune_periodic(jobs, now))).rowcount or 0
        for kind, every in sorted(PERIODIC.items()):
            every_ms = int((every or self.st.gc_interval) * 1000)
            job_id = q.periodic_job_id(kind, q.periodic_slot(every_ms, now))
            try:
                async with self.st.db.engine.begin() as conn:
                    exists = await conn.execute(select(jobs.c.id).where(jobs.c.id == job_id))
                    if exists.first() is None:
                        row = q.new_row(kind, {}, settings=self.settings, job_id=job_id, now=now)
                        await conn.execute(insert(jobs).values(**row))
                        added += 1
            except IntegrityError:  # another replica enqueued this slot first
                continue
        if added or buried:
            self.wake()
        return {"enqueued": added, "dead": int(buried), "pruned": int(pruned)}

    async def _ticker(self) -> None:
        while True:
            await asyncio.sleep(self.tick_seconds)
            try:
                await self.tick()
            except Exception:
                log.exception("job_tick_failed")
            self.wake()

    async def depth(self) -> dict[str, int]:
        async with self.st.db.engine.connect() as conn:
            return q.depth(await conn.execute(q.count_by_status(jobs)))


# -- the app's side ------------------------------------------------------------------------------


def install(st: LegacyState, *, settings: q.JobSettings | None = None) -> JobWorker:
    """Create the app's worker (started by :func:`start` once the schema is migrated)."""
    chosen = settings or q.settings_from_env()
    worker = JobWorker(st, chosen, tick=min(st.gc_interval, chosen.lease / 2))
    st.extras[_WORKER_KEY] = worker
    return worker


async def get_job(request: web.Request) -> web.Response:
    user, _ = await authenticate(request)
    job_id = request.match_info["id"]
    row = None
    if ids.is_uuid(job_id):
        async with state(request).db.engine.connect() as conn:
            row = (await conn.execute(select(jobs).where(jobs.c.id == job_id))).mappings().first()
    if row is None or row["user_id"] != user.id:
        raise NotFound("job not found")
    return web.json_response(q.render(row))


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/jobs/{id}", get_job)
