"""Learned parity noise shared by proxy replicas.

Owns :class:`SharedNoise`. Every replica counts the noise it learns into the parity store
(``BANYAN_PARITY_DB``; one PostgreSQL database for all replicas), but reads the counts only at
start. With a control store, each replica re-reads them every ``interval`` (2 s) and loads them
into its learner (counts only grow: a load keeps the larger count), so a path learned as noise
through one replica is noise on all of them. A replica without parity (no shadow hook, or one
without a recorder and learner) does nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from banyan.logs import get_logger
from banyan.tasks import finish_or_cancel

log = get_logger("banyan.control")

INTERVAL = 2.0


class SharedNoise:
    def __init__(self, *, interval: float = INTERVAL) -> None:
        self.interval = interval
        self.loads = 0
        self._task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()

    def start(self, shadow: Any) -> None:
        learner = getattr(shadow, "learner", None)
        store = getattr(getattr(shadow, "recorder", None), "store", None)
        if learner is None or store is None or self._task is not None:
            return
        self._stop.clear()
        self._task = asyncio.create_task(self._run(learner, store), name="control-noise")

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            await finish_or_cancel([self._task], 2.0)
            self._task = None

    async def _run(self, learner: Any, store: Any) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self.interval)
            if self._stop.is_set():
                return
            try:
                await self.load(learner, store)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the parity store is away: try again next time
                log.warning("control_noise_failed", error=str(exc))

    async def load(self, learner: Any, store: Any) -> int:
        """Load every noise count of the parity store into ``learner``; how many there were."""
        counts = await store.noise_counts()
        for feature, endpoint, path, count in counts:
            learner.load(feature, endpoint, path, count)
        self.loads += 1
        return len(counts)
