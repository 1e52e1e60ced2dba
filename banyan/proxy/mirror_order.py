"""One line per user into the mirror queue: a user's writes join it in the order the user made
them, across features.

A user's writes reach the other store by two roads: a compared shadow copy goes straight to the
candidate (:mod:`banyan.proxy.shadow`), everything else through the durable mirror queue
(:mod:`banyan.proxy.mirror`), whose lanes deliver one user's rows in the order they were stored.
Without care a write taking the queue overtakes an earlier one still travelling as a copy — a
logout (``writes: always``) stored at once while the create before it is still on its way, or
comes back from a copy that got no answer and is stored after the logout.

:class:`SubmitOrder` closes that gap: a write for the queue waits, before it is stored, for the
user's copies to that store still in flight when it was made (a copy that fails is put in the
queue before its hold is released, so it is stored first), and for the user's earlier writes
still waiting here. The wait is bounded (``max_wait``: longer than a copy's own timeout), so a
write is stored, at the latest, a little after the copy before it would have given up anyway.
Writes with nothing to wait for are stored at once, with no task.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Hashable

from banyan.tasks import cancel_and_wait

Waits = list[asyncio.Future[None]]


class SubmitOrder:
    def __init__(self, *, max_wait: float = 35.0) -> None:
        self.max_wait = max_wait
        self._tails: dict[Hashable, asyncio.Future[None]] = {}
        self._waiting: dict[asyncio.Task[None], Callable[[], None]] = {}
        self.waited = 0  # writes that waited for a copy or an earlier write

    def submit(
        self, lane: Hashable, copies: Waits, store: Callable[[], None], max_wait: float
    ) -> None:
        """Call ``store`` once ``copies`` (the user's copies in flight) and the lane's earlier
        writes are done, or after ``max_wait`` seconds (capped at :attr:`max_wait`)."""
        earlier = [f for f in copies if not f.done()]
        tail = self._tails.get(lane)
        if tail is not None and not tail.done():
            earlier.append(tail)
        if not earlier:
            store()
            return
        self.waited += 1
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._tails[lane] = done

        def finish() -> None:  # once, whichever comes first: the wait's end or a flush
            if done.done():
                return
            store()
            done.set_result(None)
            if self._tails.get(lane) is done:
                del self._tails[lane]

        task = asyncio.ensure_future(self._after(earlier, finish, min(max_wait, self.max_wait)))
        self._waiting[task] = finish
        task.add_done_callback(self._waiting.pop)

    @staticmethod
    async def _after(earlier: Waits, finish: Callable[[], None], max_wait: float) -> None:
        await asyncio.wait(earlier, timeout=max_wait)
        finish()

    async def flush(self) -> None:
        """Store every waiting write now, in the order they came (the proxy is stopping)."""
        waiting = list(self._waiting.items())
        await cancel_and_wait([task for task, _ in waiting])
        for _, finish in waiting:
            finish()
