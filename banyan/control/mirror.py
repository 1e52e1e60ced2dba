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
  reads the pending pairs every ``poll_interval``;
- before a write to be mirrored is answered, its replica announces its *intent*
  (:meth:`SharedMirrorQueue.announce_intent`, one ``NOTIFY`` for the intents of that moment):
  the user's answer leaves only after every replica was told, so a next request that lands on
  another replica at once finds the user held there, though the write is not stored yet (it may
  wait in line behind the user's copies, :mod:`banyan.proxy.mirror_order`). An intent holds until
  the write is stored (its announcement) or for :data:`INTENT_SECONDS` at most (its replica died
  before storing it).

Only writes that carry their user (a stamped write, ``user_id``) are fenced across replicas.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
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
INTENT_SECONDS = 5.0  # how long an announced intent holds without its write being stored
INTENT_WAIT = 0.5  # how long an answer waits for its intent's announcement at most


def is_postgres(url: str) -> bool:
    return url.split("://", 1)[0].split("+", 1)[0] in {"postgresql", "postgres"}


class SharedWriteFence(WriteFence):
    """A :class:`WriteFence` that also holds a request for the user's writes another replica
    stored in the shared queue (see the module docstring)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.remote: set[tuple[str, str]] = set()  # (target, user) with writes pending
        self.intents: dict[tuple[str, str], float] = {}  # announced, not yet stored: until when
        self._remote_waits: dict[tuple[str, str], asyncio.Future[None]] = {}

    def _intended(self, key: tuple[str, str]) -> bool:
        until = self.intents.get(key)
        if until is None:
            return False
        if until > time.monotonic():
            return True
        del self.intents[key]  # its replica never stored the write: held long enough
        return False

    def pending(self, backend: str, user: str | None, ip: str = "") -> list[asyncio.Future[None]]:
        found = super().pending(backend, user, ip)
        if found or not user:
            return found
        if (backend, user) not in self.remote and not self._intended((backend, user)):
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
        for key in pairs:
            self.intents.pop(key, None)

    def intend(self, pairs: set[tuple[str, str]]) -> None:
        """Writes some replica is about to store (their answers wait for this)."""
        until = time.monotonic() + INTENT_SECONDS
        for key in pairs:
            self.intents[key] = until

    def update(self, pairs: set[tuple[str, str]]) -> None:
        """The (target, user) pairs with writes pending in the shared queue now."""
        self.remote = pairs
        for key in [k for k in self._remote_waits if k not in pairs and not self._intended(k)]:
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
        self._notify = asyncio.Lock()  # one statement at a time on the announcer
        self._intended: set[tuple[str, str]] = set()  # intents for the next announcement
        self._intents_told: asyncio.Future[None] | None = None  # ... and when it was made
        self._intent_task: asyncio.Future[None] | None = None

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
        if self.fence is None:
            return
        with contextlib.suppress(ValueError, TypeError, AttributeError):
            told = json.loads(payload)
            if isinstance(told, dict):  # {"intent": pairs}: writes about to be stored
                self.fence.intend({(str(t), str(u)) for t, u in told["intent"]})
            else:  # pairs: writes stored
                self.fence.announce({(str(t), str(u)) for t, u in told})

    async def announce_intent(self, target: str, user: str | None) -> None:
        """Tell every replica that ``user``'s write to ``target`` is about to join the queue,
        before its answer leaves (see the module docstring). Intents arriving while one
        announcement is on its way go together in the next."""
        if self.fence is None or not user or self._announcer is None:
            return
        self._intended.add((target, user))
        told = self._intents_told
        if told is None:
            told = self._intents_told = asyncio.get_running_loop().create_future()
            self._intent_task = asyncio.ensure_future(self._tell_intents())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(told), INTENT_WAIT)

    async def _tell_intents(self) -> None:
        async with self._notify:
            pairs, self._intended = sorted(self._intended), set()
            told, self._intents_told = self._intents_told, None
            try:
                await self._tell({"intent": pairs})
            finally:
                if told is not None and not told.done():
                    told.set_result(None)

    async def _tell(self, message: Any) -> None:
        conn = self._announcer
        if conn is None or conn.is_closed():
            return
        try:
            await conn.execute("SELECT pg_notify($1, $2)", FENCE_CHANNEL, json.dumps(message))
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            log.warning("mirror_announce_failed", error=str(exc))  # the poll still sees them

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
        if pairs:
            async with self._notify:
                await self._tell(pairs)
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
                    delivered = await self._deliver_round(limit)
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
