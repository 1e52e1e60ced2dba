"""What a function sees: its caller, the database (queries read, mutations read and write in one
transaction) and the scheduler. Contexts record the tables read and written, which drive the cache
invalidation and the reactive subscriptions.
"""

from __future__ import annotations

import json
import uuid
import weakref
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from sqlalchemy import Table
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql import ClauseElement, Executable
from sqlalchemy.sql.util import find_tables

from banyan.backends.common.clock import wall_ms
from banyan.backends.new.runtime import schema

if TYPE_CHECKING:
    from banyan.backends.new.runtime.engine import Runtime


_read_sets: weakref.WeakKeyDictionary[Executable, frozenset[str]] = weakref.WeakKeyDictionary()


def tables_read(statement: Executable) -> frozenset[str]:
    """Every table a statement reads: FROM lists, joins, subqueries and selected columns.

    Found by walking the statement (no compilation); remembered per statement object, so a
    statement built once and run with parameters is walked once."""
    found = _read_sets.get(statement)
    if found is None:
        walked = (
            find_tables(statement, check_columns=True, include_crud=True)
            if isinstance(statement, ClauseElement)
            else []
        )
        found = frozenset(t.name for t in walked if isinstance(t, Table))
        _read_sets[statement] = found
    return found


def table_written(statement: Executable) -> set[str]:
    """The target of an insert, update or delete."""
    table = getattr(statement, "table", None)
    return {table.name} if isinstance(table, Table) else set()


class QueryCtx:
    def __init__(self, runtime: Runtime, conn: AsyncConnection, user_id: str | None) -> None:
        self.runtime = runtime
        self.conn = conn
        self.user_id = user_id
        self.reads: set[str] = set()

    async def read(self, statement: Executable, params: Mapping[str, Any] | None = None) -> Any:
        self.reads |= tables_read(statement)
        return await self.conn.execute(statement, params)


class Scheduler:
    """Schedules function calls inside the caller's transaction (they exist only if it commits)."""

    def __init__(self, ctx: MutationCtx) -> None:
        self.ctx = ctx

    async def run_after(self, delay_seconds: float, name: str, args: dict[str, Any]) -> str:
        return await self.run_at(wall_ms() + int(delay_seconds * 1000), name, args)

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

    async def write(self, statement: Executable, params: Mapping[str, Any] | None = None) -> Any:
        self.writes |= table_written(statement)
        return await self.conn.execute(statement, params)


class ActionCtx:
    """Actions do slow or outside work (hashing, the model) and call queries and mutations."""

    def __init__(self, runtime: Runtime, user_id: str | None) -> None:
        self.runtime = runtime
        self.user_id = user_id

    async def run_query(self, name: str, args: dict[str, Any]) -> Any:
        return await self.runtime.run_query(name, args, self.user_id)

    async def run_mutation(self, name: str, args: dict[str, Any]) -> Any:
        return await self.runtime.run_mutation(name, args, self.user_id)
