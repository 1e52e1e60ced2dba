"""The runtime: runs functions with validated arguments in the right context.

- A query runs on a read connection; its result is cached (TTL) under the tables it read.
- A mutation runs in ONE transaction: everything it wrote, and everything it scheduled, commits
  together or not at all. On SQLite mutations take turns (the writer gate) instead of sleeping in
  SQLite's busy handler. After the commit the cache entries of the written tables are dropped and
  the live hub re-runs the subscriptions of the users the mutation names.
- An action runs outside any transaction and calls queries and mutations.
"""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from banyan.backends.common.live import LiveHub
from banyan.backends.new.runtime.cache import QueryCache
from banyan.backends.new.runtime.context import ActionCtx, MutationCtx, QueryCtx
from banyan.backends.new.runtime.registry import Registry
from banyan.engines import WriteGate, make_engine

__all__ = ["Runtime", "make_engine"]


class Runtime:
    def __init__(self, engine: AsyncEngine, registry: Registry, *, cache_ttl: float = 5.0) -> None:
        self.engine = engine
        self.registry = registry
        self.cache = QueryCache(ttl=cache_ttl)
        self.write_gate = WriteGate(engine)
        self.live: LiveHub | None = None
        self.on_scheduled: list[Any] = []
        self.calls: dict[str, int] = {}
        self.settings: dict[str, Any] = {"session_ttl_ms": 30 * 24 * 3600 * 1000}

    def _function(self, name: str, kind: str) -> Any:
        function = self.registry.get(name)
        if function.kind != kind:
            raise LookupError(f"{name} is a {function.kind}, not a {kind}")
        self.calls[name] = self.calls.get(name, 0) + 1
        return function

    async def run_query(self, name: str, raw_args: Any, user_id: str | None) -> Any:
        function = self._function(name, "query")
        args = function.check(raw_args)
        key = self.cache.key(name, args, user_id) if function.cache else None
        if key is not None:
            found, value = self.cache.get(key)
            if found:
                return value
        started = time.monotonic()
        async with self.engine.connect() as conn:
            ctx = QueryCtx(self, conn, user_id)
            value = await function.handler(ctx, args)
        if key is not None:
            self.cache.put(key, ctx.reads, value, since=started)
        return value

    async def run_mutation(self, name: str, raw_args: Any, user_id: str | None) -> Any:
        function = self._function(name, "mutation")
        args = function.check(raw_args)
        async with self.write_gate(), self.engine.begin() as conn:
            ctx = MutationCtx(self, conn, user_id)
            value = await function.handler(ctx, args)
        self.committed(ctx)
        return value

    def committed(self, ctx: MutationCtx) -> None:
        if ctx.writes:
            self.cache.invalidate(ctx.writes)
            if self.live is not None:
                for user in ctx.notify_users | ({ctx.user_id} if ctx.user_id else set()):
                    self.live.changed(user, ctx.writes)
        if ctx.scheduled:
            for wake in self.on_scheduled:
                wake()

    async def run_action(self, name: str, raw_args: Any, user_id: str | None) -> Any:
        function = self._function(name, "action")
        args = function.check(raw_args)
        return await function.handler(ActionCtx(self, user_id), args)

    async def run(self, name: str, raw_args: Any, user_id: str | None) -> Any:
        kind = self.registry.get(name).kind
        if kind == "query":
            return await self.run_query(name, raw_args, user_id)
        if kind == "mutation":
            return await self.run_mutation(name, raw_args, user_id)
        return await self.run_action(name, raw_args, user_id)
