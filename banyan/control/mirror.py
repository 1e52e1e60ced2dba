"""The mirror queue and the write fence across proxy replicas: one queue in PostgreSQL.

Owns :class:`SharedMirrorQueue` and :class:`SharedWriteFence`, what a replica uses instead of
:class:`~banyan.proxy.mirror.MirrorQueue` and :class:`~banyan.proxy.fence.WriteFence` when it has
a control store and its mirror queue (``BANYAN_MIRROR_DB``) is a PostgreSQL database that every
replica shares. The queue's rules are the plain queue's; what changes:

- the tables are created under an advisory lock (replicas starting together do not collide);
- a delivery round runs under ``pg_try_advisory_lock`` of the queue: one replica delivers at a
  time, so no write is delivered twice at the same time and a user's lane stays in order
  whichever replica stored its writes; a replica that finds the lock taken tries again after
  ``poll_interval``;
- every ``poll_interval`` each replica reads which of its own queued writes are gone (delivered
  or dead, by whichever replica) and releases their holds, and which (target, user) pairs have
  writes pending at all;
- the fence makes a request wait for a user's writes pending in the shared queue that another
  replica stored, until the queue no longer has them (at most ``max_wait``). A replica that
  stores writes announces their (target, user) pairs at once (``NOTIFY``), and every replica also
  reads the pending pairs every ``poll_interval``: a request that reaches another replica within
  the few milliseconds between the write's answer and that announcement is not held.

Only writes that carry their user (a stamped write, ``user_id``) are fenced across replicas.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Mapping
from typing import Any

import aiohttp
import asyncpg

from banyan.control.db import dsn, lock_key
from banyan.logs import get_logger
from banyan.proxy.fence import WriteFence
from banyan.proxy.mirror import MirrorQueue
from banyan.proxy.mirror_store import mirror_writes

log = get_logger("banyan.control")
FENCE_CHANNEL = "banyan_mirror_pending"


def is_postgres(url: str) -> bool:
    return url.split("://", 1)[0].split("+", 1)[0] in {"postgresql", "postgres"}


class SharedWriteFence(WriteFence):
    """A :class:`WriteFence` that also holds a request for the user's writes another replica
    stored in the shared queue (see the module docstring)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.remote: set[tuple[str, str]] = set()  # (target, user) with writes pending
        self._remote_waits: dict[tuple[str, str], asyncio.Future[None]] = {}

    def pending(self, backend: str, user: str | None, ip: str = "") -> list[asyncio.Future[None]]:
        found = super().pending(backend, user, ip)
        if found or not user or (backend, user) not in self.remote:
            return found
        key = (backend, user)
        future = self._remote_waits.get(key)
        if future is None:
            future = asyncio.get_running_loop().create_future()
            self._remote_waits[key] = future
            self._queued.add(future)  # a write in the queue, not a copy in flight
        return [future]

    def announce(self, pairs: set[tuple[str, str]]) -> None:
        """Writes just stored in the shared queue by some replica (its ``NOTIFY``)."""
        self.remote = self.remote | pairs

    def update(self, pairs: set[tuple[str, str]]) -> None:
        """The (target, user) pairs with writes pending in the shared queue now."""
        self.remote = pairs
        for key in [k for k in self._remote_waits if k not in pairs]:
            future = self._remote_waits.pop(key)
            self._queued.discard(future)
            if not future.done():
                future.set_result(None)


class SharedMirrorQueue(MirrorQueue):
    def __init__(self, url: str, *, fence: SharedWriteFence | None = None, **kwargs: Any) -> None:
        super().__init__(url, **kwargs)
        self.fence = fence
        self.key = lock_key("mirror", url.rpartition("@")[2])
        self.busy_rounds = 0  # rounds another replica was delivering
        self._lock: asyncpg.Connection | None = None
        self._announcer: asyncpg.Connection | None = None
        self._busy = False
        self._round = asyncio.Lock()  # one round at a time on the one connection it uses

    async def start(self, session: aiohttp.ClientSession, backends: Mapping[str, str]) -> None:
        ddl = await asyncpg.connect(dsn(self.url), timeout=10)
        try:
            await ddl.execute("SELECT pg_advisory_lock($1)", lock_key("mirror-ddl", self.url))
            await super().start(session, backends)
        finally:
            await ddl.close()  # lets the lock go
        if self.fence is not None:
            self._announcer = await asyncpg.connect(dsn(self.url), timeout=10)
            await self._announcer.add_listener(FENCE_CHANNEL, self._announced)

    async def stop(self) -> None:
        await super().stop()
        for conn in (self._lock, self._announcer):
            if conn is not None:
                with contextlib.suppress(Exception):
                    await conn.close(timeout=2)
        self._lock = self._announcer = None

    def _announced(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        if self.fence is not None:
            with contextlib.suppress(ValueError, TypeError):
                self.fence.announce({(str(t), str(u)) for t, u in json.loads(payload)})

    async def _store(self, writes: list[dict[str, Any]]) -> int:
        """Store as the plain queue does, then tell every replica whose writes are now pending
        (so their fences hold at once, not at their next look at the queue)."""
        stored = await super()._store(writes)
        pairs = sorted(
            {
                (w["target"], w["stamp"].user)
                for w in writes
                if w.get("stamp") is not None and w["stamp"].user
            }
        )
        if pairs and self._announcer is not None and not self._announcer.is_closed():
            try:
                await self._announcer.execute(
                    "SELECT pg_notify($1, $2)", FENCE_CHANNEL, json.dumps(pairs)
                )
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.warning("mirror_announce_failed", error=str(exc))  # the poll still sees them
        return stored

    async def _connection(self) -> asyncpg.Connection:
        if self._lock is None or self._lock.is_closed():
            self._lock = await asyncpg.connect(dsn(self.url), timeout=10)
        return self._lock

    async def deliver_due(self, limit: int = 500) -> bool:
        """One round under the queue's lock (nothing when another replica holds it), then the
        holds of this replica's writes delivered elsewhere are released, and the fence told.
        Rounds never overlap (the worker's and, say, an admin retry's share one connection)."""
        async with self._round:
            conn = await self._connection()
            delivered = False
            if await conn.fetchval("SELECT pg_try_advisory_lock($1)", self.key):
                self._busy = False
                try:
                    delivered = await super().deliver_due(limit)
                finally:
                    await conn.execute("SELECT pg_advisory_unlock($1)", self.key)
            else:
                self._busy = True
                self.busy_rounds += 1
            await self._follow(conn)
            return delivered

    async def _follow(self, conn: asyncpg.Connection) -> None:
        table = mirror_writes.name
        mine = list(self._releases)
        if mine:
            left = {
                r["id"]
                for r in await conn.fetch(
                    f"SELECT id FROM {table} WHERE id = ANY($1::bigint[]) AND status = 'pending'",
                    mine,
                )
            }
            for row_id in mine:
                if row_id not in left:
                    self._release(row_id)
        if self.fence is not None:
            rows = await conn.fetch(
                f"""SELECT DISTINCT target, user_id FROM {table}
                    WHERE status = 'pending' AND user_id IS NOT NULL"""
            )
            self.fence.update({(r["target"], r["user_id"]) for r in rows})

    async def _seconds_to_next(self) -> float | None:
        """Every replica looks at least every ``poll_interval``: others' writes wake no one here."""
        if self._busy:
            return self.poll_interval
        wait = await super()._seconds_to_next()
        return self.poll_interval if wait is None else min(wait, self.poll_interval)


def shared_queue(url: str) -> tuple[SharedMirrorQueue, SharedWriteFence] | None:
    """The shared queue and its fence for a PostgreSQL ``url``; None for any other store (a
    SQLite file is one replica's own)."""
    if not is_postgres(url):
        return None
    fence = SharedWriteFence()
    return SharedMirrorQueue(url, fence=fence), fence
