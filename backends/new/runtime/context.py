"""What a function sees: its caller, the database (queries read, mutations read and write in one
transaction) and the scheduler. Contexts record the tables read and written, which drive the cache
invalidation and the reactive subscriptions.
"""

from __future__ import annotations

import json
import uuid
from typing import TYPE_CHECKING, Any

from sqlalchemy import Table
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql import Executable

from backends.common.clock import now_ms
from backends.new.runtime import schema

if TYPE_CHECKING:
    from backends.new.runtime.engine import Runtime


def _tables_of(statement: Executable) -> set[str]:
    """The tables a statement touches: its target (insert/update/delete) or its FROM list."""
    found: set[str] = set()
    table = getattr(statement, "table", None)
    if isinstance(table, Table):
        found.add(table.name)
    get_final = getattr(statement, "get_final_froms", None)
    if callable(get_final):
        found.update(t.name for t in get_final() if isinstance(t, Table))
    return found


class QueryCtx:
    def __init__(self, runtime: Runtime, conn: AsyncConnection, user_id: str | None) -> None:
        self.runtime = runtime
        self.conn = conn
        self.user_id = user_id
        self.reads: set[str] = set()

    async def read(self, statement: Executable) -> Any:
        self.reads |= _tables_of(statement)
        return await self.conn.execute(statement)


class Scheduler:
    """Schedules function calls inside the caller's transaction (they exist only if it commits)."""

    def __init__(self, ctx: MutationCtx) -> None:
        self.ctx = ctx

    async def run_after(self, delay_seconds: float, name: str, args: dict[str, Any]) -> str:
        return await self.run_at(now_ms() + int(delay_seconds * 1000), name, args)

    async def run_at(self, at_ms: int, name: str, args: dict[str, Any]) -> str:
        self.ctx.runtime.registry.get(name)  # unknown names fail at scheduling time
        job_id = str(uuid.uuid4())
        await self.ctx.write(
            schema.scheduled.insert().values(
                id=job_id,
                name=name,
                args=json.dumps(args),
                run_at_ms=at_ms,
                status="pending",
                attempts=0,
            )
        )
        self.ctx.scheduled = True
        return job_id


class MutationCtx(QueryCtx):
    def __init__(self, runtime: Runtime, conn: AsyncConnection, user_id: str | None) -> None:
        super().__init__(runtime, conn, user_id)
        self.writes: set[str] = set()
        self.scheduled = False
        self.scheduler = Scheduler(self)
        self.notify_users: set[str] = set()

    async def write(self, statement: Executable) -> Any:
        self.writes |= _tables_of(statement)
        return await self.conn.execute(statement)


class ActionCtx:
    """Actions do slow or outside work (hashing, the model) and call queries and mutations."""

    def __init__(self, runtime: Runtime, user_id: str | None) -> None:
        self.runtime = runtime
        self.user_id = user_id

    async def run_query(self, name: str, args: dict[str, Any]) -> Any:
        return await self.runtime.run_query(name, args, self.user_id)

    async def run_mutation(self, name: str, args: dict[str, Any]) -> Any:
        return await self.runtime.run_mutation(name, args, self.user_id)
