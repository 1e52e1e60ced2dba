"""The persisted scheduler: function calls stored in ``_scheduled``, run when due, exactly once.

``ctx.scheduler.run_after(seconds, name, args)`` inside a mutation stores a row in the same
transaction. The runner claims due rows one at a time with a conditional update (``pending`` ->
``running``), so a row is run by one runner only; it then runs the function (a mutation or an
action) and marks the row ``done``, or ``pending`` again with backoff, or ``dead`` after
``max_attempts``. Rows found ``running`` at startup were interrupted by a crash and are retried.
Cron jobs (``cron(name, every_seconds)``) keep exactly one pending row each, re-armed after every
run; pending rows survive a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from dataclasses import dataclass

from sqlalchemy import select, update

from banyan.backends.common.clock import wall_ms
from banyan.backends.new.runtime import schema
from banyan.backends.new.runtime.engine import Runtime
from banyan.logs import get_logger
from banyan.tasks import cancel_and_wait

log = get_logger("new.scheduler")


@dataclass(frozen=True, slots=True)
class Cron:
    name: str  # the function to call
    every_seconds: float


class SchedulerRunner:
    def __init__(
        self,
        runtime: Runtime,
        crons: list[Cron],
        *,
        poll_interval: float = 0.5,
        max_attempts: int = 5,
        backoff_seconds: float = 1.0,
    ) -> None:
        self.runtime = runtime
        self.crons = crons
        self.poll_interval = poll_interval
        self.max_attempts = max_attempts
        self.backoff_seconds = backoff_seconds
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.completed = 0
        runtime.on_scheduled.append(self._wake.set)

    async def start(self) -> None:
        s = schema.scheduled
        async with self.runtime.engine.begin() as conn:
            await conn.execute(update(s).where(s.c.status == "running").values(status="pending"))
            armed = set(
                (
                    await conn.execute(
                        select(s.c.cron).where(s.c.status == "pending", s.c.cron.is_not(None))
                    )
                ).scalars()
            )
            for cron in self.crons:
                if cron.name not in armed:
                    await conn.execute(s.insert().values(**self._cron_row(cron)))
        self._task = asyncio.create_task(self._loop(), name="new-scheduler")

    def _cron_row(self, cron: Cron) -> dict[str, object]:
        return {
            "id": str(uuid.uuid4()),
            "name": cron.name,
            "args": "{}",
            "run_at_ms": wall_ms() + int(cron.every_seconds * 1000),
            "status": "pending",
            "attempts": 0,
            "cron": cron.name,
        }

    async def stop(self) -> None:
        await cancel_and_wait([self._task])

    async def _loop(self) -> None:
        while True:
            self._wake.clear()
            try:
                ran = await self.run_due()
            except Exception:
                log.exception("scheduler_pass_failed")
                ran = 0
            if not ran:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.poll_interval)

    async def run_due(self, limit: int = 20) -> int:
        s = schema.scheduled
        async with self.runtime.engine.connect() as conn:
            due = (
                (
                    await conn.execute(
                        select(s.c.id)
                        .where(s.c.status == "pending", s.c.run_at_ms <= wall_ms())
                        .order_by(s.c.run_at_ms)
                        .limit(limit)
                    )
                )
                .scalars()
                .all()
            )
        ran = 0
        for job_id in due:
            if await self._run_one(job_id):
                ran += 1
        return ran

    async def _run_one(self, job_id: str) -> bool:
        s = schema.scheduled
        async with self.runtime.engine.begin() as conn:
            claimed = await conn.execute(
                update(s).where(s.c.id == job_id, s.c.status == "pending").values(status="running")
            )
            if claimed.rowcount != 1:
                return False  # another runner took it
            row = (await conn.execute(select(s).where(s.c.id == job_id))).mappings().one()
        error: str | None = None
        try:
            await self.runtime.run(row["name"], json.loads(row["args"]), None)
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
            log.warning("scheduled_function_failed", name=row["name"], error=error)
        async with self.runtime.engine.begin() as conn:
            if error is None:
                await conn.execute(
                    update(s).where(s.c.id == job_id).values(status="done", last_error=None)
                )
                self.completed += 1
            else:
                attempts = row["attempts"] + 1
                dead = attempts >= self.max_attempts and row["cron"] is None
                await conn.execute(
                    update(s)
                    .where(s.c.id == job_id)
                    .values(
                        status="dead" if dead else ("done" if row["cron"] else "pending"),
                        attempts=attempts,
                        last_error=error,
                        run_at_ms=wall_ms()
                        + int(self.backoff_seconds * 1000 * 2 ** (attempts - 1)),
                    )
                )
            if row["cron"] is not None:
                cron = next((c for c in self.crons if c.name == row["cron"]), None)
                if cron is not None:
                    await conn.execute(s.insert().values(**self._cron_row(cron)))
        return True
