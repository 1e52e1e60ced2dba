"""Rollouts across proxy replicas: their records in the control store, one leader among them.

Owns :class:`ControlRolloutStore` (the :class:`~banyan.rollout.store.RolloutStore` interface over
the control store's key ``rollouts``: every record by feature, read and changed in one
transaction under an advisory lock, every replica notified) and :class:`ControlRolloutController`
(the rollout controller whose leadership is a PostgreSQL session advisory lock held on a
connection of its own, instead of a lock file beside the flag file: one replica drives every
rollout whichever host it runs on; when it dies its connection goes and another takes over within
a tick). Every replica keeps a window of the current step of each running rollout (fed by its own
traffic, as the leader's is) and writes it to the shared ``guard_counts`` table at each tick; the
leader judges each step's gates on the union of all replicas' windows of that step. The store's
calls block, as the interface says: the controller makes them in a worker
thread, and they run on the proxy's event loop, where the control store lives.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import asyncpg

from banyan.control.db import ControlError, lock_key
from banyan.control.guards import STALE_AFTER
from banyan.control.store import ControlStore
from banyan.logs import get_logger
from banyan.proxy.flags import FlagSet
from banyan.rollout.controller import RolloutController
from banyan.rollout.gates import StepWindow
from banyan.rollout.model import RolloutRecord
from banyan.rollout.store import Records

if TYPE_CHECKING:
    from banyan.proxy.app import ProxyState

log = get_logger("banyan.control")

KEY = "rollouts"
T = TypeVar("T")


def _records(value: Any) -> Records:
    return {name: RolloutRecord.from_dict(data) for name, data in (value or {}).items()}


def _plain(records: Records) -> dict[str, Any]:
    return {name: record.to_dict() for name, record in records.items()}


class ControlRolloutStore:
    def __init__(self, store: ControlStore, loop: asyncio.AbstractEventLoop) -> None:
        self.store = store
        self.loop = loop

    def _call(self, coro: Any) -> Any:
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self.loop:
            coro.close()
            raise RuntimeError("ControlRolloutStore blocks: call it from a worker thread")
        try:
            return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=30)
        except (TimeoutError, ControlError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            # the interface's callers treat OSError as "the state cannot be read or written"
            raise OSError(f"the control store: {exc}") from exc

    def load(self) -> Records:
        return _records(self._call(self.store.read(KEY)))

    def update(self, change: Callable[[Records], T]) -> T:
        def apply(value: Any) -> tuple[Any, T]:
            records = _records(value)
            result = change(records)
            return _plain(records), result

        async def run() -> T:
            result = await self.store.update(KEY, apply, source="rollout")
            await self.store.refresh()
            return result

        result: T = self._call(run())
        return result


class ControlRolloutController(RolloutController):
    """A :class:`RolloutController` led by whichever replica holds the rollouts' advisory lock."""

    def __init__(self, state: ProxyState, store: ControlStore, **kwargs: Any) -> None:
        super().__init__(
            state,
            ControlRolloutStore(store, asyncio.get_running_loop()),
            store.table("rollouts_leader"),  # never opened: leadership is the lock below
            **kwargs,
        )
        self.control = store
        self.replica = f"{store.actor}:{uuid.uuid4().hex[:8]}"
        self._combined: dict[str, tuple[int, StepWindow]] = {}
        self.key = lock_key(store.schema, "rollouts-leader")
        self._leading = False
        self._lead: asyncpg.Connection | None = None

    @property
    def leader(self) -> bool:
        return self._leading

    async def tick(self) -> None:
        if not self.control.is_open:  # the proxy is starting or stopping
            self._leading = False
            return
        await self._claim()
        try:
            await self._share_windows()
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            log.warning("rollout_windows_unshared", error=str(exc))
        await super().tick()

    def _window(self, name: str, step: int, analysis: Any) -> StepWindow:
        """This replica's window, fed here; for judging, every replica's windows of the step."""
        local = super()._window(name, step, analysis)
        combined = self._combined.get(name)
        return combined[1] if combined is not None and combined[0] == step else local

    async def _share_windows(self) -> None:
        """Write this replica's window of each running step to ``guard_counts``; the leader then
        reads every replica's windows of the same step (fresh ones only) and combines them."""
        records = _records(self.control.get(KEY))  # the last re-read: at most a second old
        flags = self.state.flags  # one reading of the flags for the whole tick
        prints = self._current_steps(records, flags)
        if not self.leader:
            self._drop_windows(records)
        now = time.time()
        rows = [
            (
                f"rollout:{name}",
                self.replica,
                prints[name][1],
                json.dumps({**window.export(), "comparisons": window.comparisons}),
                now,
            )
            for name, (step, window) in self.windows.items()
            if name in prints and prints[name][0] == step
        ]
        table = self.control.table("guard_counts")
        async with self.control.pool.acquire() as conn:
            if rows:
                await conn.executemany(
                    f"""INSERT INTO {table} (feature, replica, fingerprint, counts, at)
                        VALUES ($1, $2, $3, $4, $5) ON CONFLICT (feature, replica) DO UPDATE
                        SET fingerprint = EXCLUDED.fingerprint, counts = EXCLUDED.counts,
                        at = EXCLUDED.at""",
                    rows,
                )
            if not self.leader:
                self._combined = {}
                return
            found = await conn.fetch(
                f"""SELECT feature, fingerprint, counts FROM {table}
                    WHERE feature = ANY($1::text[]) AND at > $2""",
                [f"rollout:{name}" for name in prints],
                now - STALE_AFTER,
            )
        self._combined = self._combine(found, prints, flags)

    def _current_steps(self, records: Records, flags: FlagSet) -> dict[str, tuple[int, str]]:
        """Each rollout with a step being judged: (its step, the step's fingerprint), its local
        window made sure of."""
        prints: dict[str, tuple[int, str]] = {}
        for name, record in records.items():
            feature = flags.feature(name)
            if (
                record.state in ("running", "paused")
                and record.applied
                and feature is not None
                and feature.rollout is not None
                and record.step < len(feature.rollout.steps)
            ):
                super()._window(name, record.step, feature.rollout.analysis)
                prints[name] = (record.step, f"{record.step}:{record.started_at}")
        return prints

    def _combine(
        self, found: list[Any], prints: dict[str, tuple[int, str]], flags: FlagSet
    ) -> dict[str, tuple[int, StepWindow]]:
        """Every replica's window of each current step (rows of another step left out), as one
        window per rollout."""
        exports: dict[str, list[dict[str, Any]]] = {}
        for row in found:
            name = row["feature"].split(":", 1)[1]
            if row["fingerprint"] == prints[name][1]:
                counts = row["counts"]
                exports.setdefault(name, []).append(
                    json.loads(counts) if isinstance(counts, str) else counts
                )
        combined: dict[str, tuple[int, StepWindow]] = {}
        for name, parts in exports.items():
            feature = flags.feature(name)
            assert feature is not None and feature.rollout is not None
            window = StepWindow(name, feature.rollout.analysis)
            window.absorb(parts)
            window.comparisons = sum(int(p.get("comparisons", 0)) for p in parts)
            combined[name] = (prints[name][0], window)
        return combined

    async def _claim(self) -> None:
        """Hold the leader's lock, or try to take it (a lost connection lets it go)."""
        try:
            if self._lead is None or self._lead.is_closed():
                self._leading = False
                self._lead = await asyncpg.connect(self.control.dsn, timeout=5)
            if not self._leading:
                self._leading = bool(
                    await self._lead.fetchval("SELECT pg_try_advisory_lock($1)", self.key)
                )
                if self._leading:
                    log.info("rollout_leader", actor=self.control.actor)
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            self._leading = False
            log.warning("rollout_leader_unavailable", error=str(exc))

    async def stop(self) -> None:
        await super().stop()
        self._leading = False
        if self._lead is not None:
            with contextlib.suppress(Exception):
                await self._lead.close(timeout=2)  # lets the lock go
            self._lead = None
