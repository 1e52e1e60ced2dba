"""The control store: runtime state shared by every proxy replica, in one PostgreSQL schema.

Owns :class:`ControlStore`: flag overrides (per feature, the changes applied on top of the flag
file, with who set them, why and when), a small key/value table with the same change
notification (for other runtime state, e.g. rollout steps), the shared audit table, and the
change feed (the values it holds: :mod:`banyan.control.state`; its SQL statements:
:mod:`banyan.control.writes`). Every write is one transaction that takes an advisory lock on what
it changes, bumps the store's version and sends ``NOTIFY`` (delivered at commit); every replica
``LISTEN``\\ s and re-reads the whole state when told, and polls the version every
``poll_interval`` as a backstop (a dropped listener connection is reopened by the poll).
Subscribers are called after each re-read that found a new version, with the snapshots before and
after.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import asyncpg

from banyan.control import writes
from banyan.control.db import ControlError, channel, check_schema, create_tables, dsn, lock_key
from banyan.control.state import (
    Describe,
    Entry,
    Override,
    Snapshot,
    Subscriber,
    default_actor,
    loads,
    merge_changes,
    snapshot_of,
)
from banyan.logs import get_logger
from banyan.tasks import finish_or_cancel

log = get_logger("banyan.control")

POLL_INTERVAL = 0.5  # seconds between version checks; NOTIFY usually wins
T = TypeVar("T")


class ControlStore:
    def __init__(
        self,
        url: str,
        *,
        schema: str,
        poll_interval: float = POLL_INTERVAL,
        actor: str | None = None,
    ) -> None:
        self.dsn = dsn(url)
        self.schema = check_schema(schema)
        self.channel = channel(schema)
        self.poll_interval = poll_interval
        self.actor = actor or default_actor("proxy")
        self.snapshot = Snapshot()
        self.refreshes = 0
        self.notifications = 0
        self._pool: asyncpg.Pool | None = None
        self._listener: asyncpg.Connection | None = None
        self._subscribers: list[Subscriber] = []
        self._wake = asyncio.Event()
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._refresh_lock = asyncio.Lock()

    def table(self, name: str) -> str:
        return f'"{self.schema}".{name}'

    # -- lifecycle --------------------------------------------------------------------------------

    async def open(self) -> None:
        """Connect, create the tables if needed and read the state once."""
        if self._pool is not None:
            return
        try:
            self._pool = await asyncpg.create_pool(
                self.dsn, min_size=1, max_size=4, command_timeout=10, timeout=10
            )
        except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
            raise ControlError(f"cannot reach the control store: {exc}") from exc
        async with self.pool.acquire() as conn:
            await create_tables(conn, self.schema)
        await self.refresh()

    async def start(self) -> None:
        """Follow changes: LISTEN, plus the version poll as a backstop."""
        await self.open()
        if self._tasks:
            return
        self._stop.clear()
        await self._listen()
        self._tasks = [asyncio.create_task(self._follow(), name="control-follow")]

    async def close(self) -> None:
        self._stop.set()
        self._wake.set()
        tasks, self._tasks = self._tasks, []
        await finish_or_cancel(tasks, 2.0)
        if self._listener is not None:
            with contextlib.suppress(Exception):
                await self._listener.close(timeout=2)
            self._listener = None
        if self._pool is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._pool.close(), 5)
            self._pool = None

    @property
    def is_open(self) -> bool:
        return self._pool is not None

    @property
    def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise ControlError("the control store is not open")
        return self._pool

    def subscribe(self, callback: Subscriber) -> None:
        """``await callback(old, new)`` after every re-read that found a new version."""
        self._subscribers.append(callback)

    # -- following changes ------------------------------------------------------------------------

    def _notified(self, *_: Any) -> None:
        self.notifications += 1
        self._wake.set()

    async def _listen(self) -> None:
        try:
            self._listener = await asyncpg.connect(self.dsn, timeout=5)
            await self._listener.add_listener(self.channel, self._notified)
        except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
            self._listener = None
            log.warning("control_listen_failed", error=str(exc))

    async def _follow(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.poll_interval)
            self._wake.clear()
            if self._stop.is_set():
                return
            if self._listener is None or self._listener.is_closed():
                await self._listen()
            try:
                await self.refresh()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the database is away: keep serving the last state
                log.warning("control_refresh_failed", error=str(exc))

    async def refresh(self) -> bool:
        """Re-read the state when its version moved; True when it did. Subscribers are called
        before the lock is let go: once any refresh returns, every change read is applied."""
        async with self._refresh_lock:
            async with self.pool.acquire() as conn:
                version = await conn.fetchval(f"SELECT version FROM {self.table('state')}")
                if version == self.snapshot.version:
                    return False
                async with conn.transaction(isolation="repeatable_read", readonly=True):
                    version = await conn.fetchval(f"SELECT version FROM {self.table('state')}")
                    rows = await conn.fetch(f"SELECT * FROM {self.table('overrides')}")
                    pairs = await conn.fetch(f"SELECT * FROM {self.table('kv')}")
            new = snapshot_of(version, rows, pairs)
            old, self.snapshot = self.snapshot, new
            self.refreshes += 1
            # under the lock: whoever's refresh returns, the change has been applied
            for callback in list(self._subscribers):
                try:
                    await callback(old, new)
                except Exception:
                    log.exception("control_subscriber_failed", callback=repr(callback))
        return True

    # -- writes -----------------------------------------------------------------------------------

    async def _bump(self, conn: asyncpg.Connection) -> int:
        return await writes.bump(conn, self.table("state"), self.channel)

    async def _audit(self, conn: asyncpg.Connection, **entry: Any) -> bool:
        return await writes.insert_audit(conn, self.table("audit"), actor=self.actor, **entry)

    async def set_override(
        self,
        feature: str,
        changes: Mapping[str, Any],
        *,
        source: str,
        reason: str | None = None,
        only_if: Callable[[dict[str, Any]], bool] | None = None,
        describe: Describe | None = None,
    ) -> Override | None:
        """Merge ``changes`` into ``feature``'s override, audit it, notify every replica.

        Serialised per feature by an advisory lock: ``only_if(current changes)`` is asked under
        it (False: nothing is done, None returned, as when the merge changes nothing), so of
        several replicas deciding the same thing at once exactly one writes. ``describe(changes)``
        gives the feature's settings with those changes for the audit entry; an exception from
        it (an override the file cannot take) aborts the write.
        """
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "SELECT pg_advisory_xact_lock($1)", lock_key(self.schema, "feature", feature)
            )
            row = await conn.fetchrow(
                f"SELECT changes FROM {self.table('overrides')} WHERE feature = $1", feature
            )
            current: dict[str, Any] = loads(row["changes"]) if row is not None else {}
            if only_if is not None and not only_if(current):
                return None
            merged = merge_changes(current, changes)
            if row is not None and merged == current:
                return None
            before: Any = current
            after: Any = merged
            if describe is not None:
                before = await asyncio.to_thread(describe, current or None)
                after = await asyncio.to_thread(describe, merged)
            version = await self._bump(conn)
            override = Override(feature, merged, source, self.actor, reason, time.time(), version)
            await writes.upsert_override(conn, self.table("overrides"), override)
            await self._audit(
                conn,
                source=source,
                feature=feature,
                before=before,
                after=after,
                digest=f"control:{version}",
                reason=reason,
            )
        log.info("control_override_set", feature=feature, source=source, version=version)
        return override

    async def clear_overrides(
        self,
        versions: Mapping[str, int],
        *,
        source: str,
        reason: str | None = None,
        digest: str | None = None,
    ) -> list[str]:
        """Delete the overrides named in ``versions`` that still have that version (one changed
        since is kept); audited and notified. Returns the features cleared."""
        cleared: list[str] = []
        async with self.pool.acquire() as conn, conn.transaction():
            for feature, version in versions.items():
                await conn.execute(
                    "SELECT pg_advisory_xact_lock($1)", lock_key(self.schema, "feature", feature)
                )
                row = await conn.fetchrow(
                    f"""DELETE FROM {self.table("overrides")} WHERE feature = $1 AND version = $2
                        RETURNING changes""",
                    feature,
                    version,
                )
                if row is None:
                    continue
                cleared.append(feature)
                await self._audit(
                    conn,
                    source=source,
                    feature=feature,
                    before=loads(row["changes"]),
                    after=None,
                    digest=digest,
                    reason=reason,
                )
            if cleared:
                await self._bump(conn)
        return cleared

    async def put(self, key: str, value: Any, *, source: str) -> Entry:
        """Set ``key`` to ``value`` (JSON-able) and notify every replica."""
        async with self.pool.acquire() as conn, conn.transaction():
            version = await self._bump(conn)
            entry = Entry(key, value, source, self.actor, time.time(), version)
            await writes.upsert_entry(conn, self.table("kv"), entry)
        return entry

    async def update(self, key: str, change: Callable[[Any], tuple[Any, T]], *, source: str) -> T:
        """Read ``key``'s value (None when absent), ``change(value) -> (new value, result)``,
        write the new value if it differs (notifying every replica), return ``result``; one
        transaction under an advisory lock on ``key``, so concurrent updates apply one by one
        wherever they run. ``change`` runs on the event loop: keep it quick."""
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", lock_key(self.schema, "kv", key))
            current = await conn.fetchval(
                f"SELECT value FROM {self.table('kv')} WHERE key = $1", key
            )
            value = loads(current) if current is not None else None
            new, result = change(value)
            if new != value:
                version = await self._bump(conn)
                entry = Entry(key, new, source, self.actor, time.time(), version)
                await writes.upsert_entry(conn, self.table("kv"), entry)
        return result

    async def read(self, key: str, default: Any = None) -> Any:
        """``key``'s committed value now (not the last re-read's)."""
        async with self.pool.acquire() as conn:
            value = await conn.fetchval(f"SELECT value FROM {self.table('kv')} WHERE key = $1", key)
        return default if value is None else loads(value)

    async def delete(self, key: str) -> bool:
        """Remove ``key``; True when it was there."""
        async with self.pool.acquire() as conn, conn.transaction():
            gone = await conn.fetchval(
                f"DELETE FROM {self.table('kv')} WHERE key = $1 RETURNING key", key
            )
            if gone is None:
                return False
            await self._bump(conn)
        return True

    def get(self, key: str, default: Any = None) -> Any:
        """The value of ``key`` as of the last re-read (at most ~1 s old)."""
        entry = self.snapshot.kv.get(key)
        return default if entry is None else entry.value

    def items(self, prefix: str = "") -> dict[str, Any]:
        """Every key starting with ``prefix`` and its value, as of the last re-read."""
        return {k: e.value for k, e in self.snapshot.kv.items() if k.startswith(prefix)}

    # -- the shared audit table -------------------------------------------------------------------

    async def audit(
        self,
        *,
        source: str,
        feature: str,
        before: Any,
        after: Any,
        digest: str | None,
        reason: str | None = None,
        event: str | None = None,
    ) -> bool:
        """Append one audit entry; with ``event`` set, only the first entry of that event is
        kept (several replicas seeing the same file edit audit it once). True when written."""
        async with self.pool.acquire() as conn:
            return await self._audit(
                conn,
                source=source,
                feature=feature,
                before=before,
                after=after,
                digest=digest,
                reason=reason,
                event=event,
            )

    async def history(
        self, *, feature: str | None = None, limit: int = 100
    ) -> list[dict[str, Any]]:
        """The newest ``limit`` audit entries (optionally of one feature), newest first."""
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(
                f"""SELECT at, source, actor, feature, before, after, digest, reason
                    FROM {self.table("audit")} WHERE $1::text IS NULL OR feature = $1
                    ORDER BY id DESC LIMIT $2""",
                feature,
                limit,
            )
        return [{**dict(r), "before": loads(r["before"]), "after": loads(r["after"])} for r in rows]
