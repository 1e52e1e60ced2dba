"""The parity recorder: takes records on the request path without blocking, writes in batches.

A bounded queue that drops and counts when full; batches are aggregated in memory first and
written one transaction each (:meth:`banyan.parity.store.ParityStore.write`).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Any

from banyan.logs import get_logger
from banyan.parity.models import ParityItem
from banyan.tasks import cancel_and_wait

if TYPE_CHECKING:
    from banyan.parity.store import ParityStore

log = get_logger("banyan.parity.store")


class ParityRecorder:
    """Non-blocking intake on the request path; batched writes in the background.

    Results gather for ``flush_interval`` seconds (or until ``batch`` are waiting) and are then
    written ``batch`` per transaction. Each write costs the proxy's event loop a few milliseconds
    whatever its size, so writing seldom keeps users' requests from queueing behind it; a report
    calls :meth:`flush` first, so it is never stale."""

    def __init__(
        self,
        store: ParityStore,
        *,
        max_queue: int = 10_000,
        batch: int = 1000,
        flush_interval: float = 2.0,
    ) -> None:
        self.store = store
        self.queue: asyncio.Queue[ParityItem] = asyncio.Queue(max_queue)
        self.batch = batch
        self.flush_interval = flush_interval
        self.dropped = 0
        self.written = 0
        self._task: asyncio.Task[None] | None = None
        self._queued = asyncio.Event()  # something waits to be written
        self._full = asyncio.Event()  # a batch waits: write now
        self._writing = asyncio.Lock()  # items leave the queue only under it

    def record(self, item: ParityItem) -> bool:
        try:
            self.queue.put_nowait(item)
        except asyncio.QueueFull:
            self.dropped += 1
            return False
        if not self._queued.is_set():
            self._queued.set()
        if self.queue.qsize() >= self.batch and not self._full.is_set():
            self._full.set()
        return True

    async def start(self) -> None:
        await self.store.open()
        self._task = asyncio.create_task(self._run(), name="parity-recorder")

    async def _run(self) -> None:
        while True:
            await self._queued.wait()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._full.wait(), self.flush_interval)
            self._queued.clear()
            self._full.clear()
            await self.flush()

    async def _write(self, items: list[Any]) -> None:
        try:
            await self.store.write(items)
            self.written += len(items)
        except Exception:
            log.exception("parity_write_failed", items=len(items))

    async def flush(self) -> None:
        """Write everything recorded so far (including what a write in progress holds). What is
        recorded while it writes is left to the next write: under a stream of comparisons faster
        than the store, waiting for an empty queue kept a report waiting for minutes."""
        left = self.queue.qsize()
        async with self._writing:
            left = min(left, self.queue.qsize())  # a write in progress may have taken some
            while left > 0:
                items: list[ParityItem] = []
                while left > 0 and len(items) < self.batch:
                    items.append(self.queue.get_nowait())
                    left -= 1
                await self._write(items)

    async def stop(self) -> None:
        async with self._writing:  # a write in progress ends first; then nothing is in hand
            await cancel_and_wait([self._task])
        await self.flush()
        await self.store.close()
