"""Guard windows judged on every replica's evidence: shared counters in the control store.

Owns :class:`SharedGuards`. Each replica keeps feeding its own :class:`FeatureGuard` windows on
the request path (no database call there); every ``interval`` (250 ms) it writes each guarded
feature's window that changed (:meth:`FeatureGuard.export`) into ``guard_counts`` under its own
replica id, reads every replica's row for its guarded features, and judges the sum
(:meth:`FeatureGuard.combined`: the same rules, over the union of the windows). A row counts only
while its fingerprint (the feature's mode, percent, primary and guard settings) matches this
replica's — a flip resets every replica's evidence as it resets a local guard — and while it is
younger than ``stale_after`` (the last window of a replica that died stops counting). A breach
goes to the proxy's rollback, which the control plane decides once across replicas.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from banyan.control.store import ControlStore
from banyan.logs import get_logger
from banyan.proxy.flags import Feature, FlagSet, FlagStore
from banyan.proxy.guards import Breach, FeatureGuard, GuardBoard
from banyan.tasks import finish_or_cancel

if TYPE_CHECKING:
    from banyan.proxy.app import ProxyState

log = get_logger("banyan.control")

FLUSH_INTERVAL = 0.25
STALE_AFTER = 60.0


def fingerprint(feature: Feature) -> str:
    """What must match for two replicas' windows to be judged together."""
    text = f"{feature.mode}:{feature.percent}:{feature.primary}:{feature.guards!r}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class SharedGuards:
    def __init__(
        self,
        store: ControlStore,
        *,
        interval: float = FLUSH_INTERVAL,
        stale_after: float = STALE_AFTER,
    ) -> None:
        self.store = store
        self.replica = f"{store.actor}:{uuid.uuid4().hex[:8]}"
        self.interval = interval
        self.stale_after = stale_after
        self.flushes = 0
        self._pushed: dict[str, str] = {}  # feature -> the row last written
        self._task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()

    def start(self, state: ProxyState) -> None:
        """Judge ``state``'s guards under its flags in force from now on; a breach goes to its
        rollback (:meth:`ProxyState.on_breach`). Only those three parts are kept."""
        if self._task is None:
            self._stop.clear()
            run = self._run(state.guards, state.store, state.on_breach)
            self._task = asyncio.create_task(run, name="control-guards")

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            await finish_or_cancel([self._task], 2.0)
            self._task = None
        with contextlib.suppress(Exception):  # the rows would go stale anyway
            async with self.store.pool.acquire() as conn:
                await conn.execute(
                    f"DELETE FROM {self.store.table('guard_counts')} WHERE replica = $1",
                    self.replica,
                )

    async def _run(
        self, guards: GuardBoard, flags: FlagStore, on_breach: Callable[[Breach], None]
    ) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self.interval)
            if self._stop.is_set():
                return
            try:
                for breach in await self.judge(guards, flags.current):
                    on_breach(breach)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the database is away: judge again next round
                log.warning("control_guards_failed", error=str(exc))

    async def judge(self, board: GuardBoard, flags: FlagSet) -> list[Breach]:
        """Flush this replica's changed windows (``board``'s), then judge every feature guarded
        under ``flags`` on the sum of all replicas' windows; the breaches found (each remembered
        on the local guard)."""
        guards: dict[str, tuple[FeatureGuard, Feature, str]] = {}
        for name, guard in board.all().items():
            feature = flags.feature(name)
            if feature is not None and feature.mode != "legacy" and guard.tripped is None:
                guards[name] = (guard, feature, fingerprint(feature))
        if not guards:
            return []
        now = time.time()
        changed = []
        for name, (guard, _feature, print_) in guards.items():
            row = json.dumps(guard.export())
            if self._pushed.get(name) != print_ + row:
                changed.append((name, self.replica, print_, row, now))
        table = self.store.table("guard_counts")
        async with self.store.pool.acquire() as conn:
            if changed:
                await conn.executemany(
                    f"""INSERT INTO {table} (feature, replica, fingerprint, counts, at)
                        VALUES ($1, $2, $3, $4, $5) ON CONFLICT (feature, replica) DO UPDATE
                        SET fingerprint = EXCLUDED.fingerprint, counts = EXCLUDED.counts,
                        at = EXCLUDED.at""",
                    changed,
                )
                for name, _replica, print_, row, _at in changed:
                    self._pushed[name] = print_ + row
            rows = await conn.fetch(
                f"""SELECT feature, fingerprint, counts FROM {table}
                    WHERE feature = ANY($1::text[]) AND at > $2""",
                list(guards),
                now - self.stale_after,
            )
        self.flushes += 1
        evidence: dict[str, list[dict[str, Any]]] = {}
        for row in rows:
            name = row["feature"]
            if row["fingerprint"] == guards[name][2]:
                counts = row["counts"]
                evidence.setdefault(name, []).append(
                    json.loads(counts) if isinstance(counts, str) else counts
                )
        breaches = []
        for name, exports in evidence.items():
            guard, feature, _ = guards[name]
            total = FeatureGuard.combined(
                name, feature.guards, exports, min_samples=guard.min_samples
            )
            breach = total.evaluate()
            if breach is not None:
                guard.tripped = breach
                breaches.append(breach)
        return breaches
