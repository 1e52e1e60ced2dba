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
queue before its hold is released), and for the user's writes that *arrived* earlier and are
still waiting here — by arrival, not by when they joined: a create whose copy failed joins after
the update that followed it (that update waited for the create's copy), yet is stored first.
A copy's hold always ends (its comparison releases it whatever happens, a hold never taken over
lapses), but a copy can take a while: it waits for the user's earlier writes (2 s at most), for
a gap in the users' requests, then up to the feature's
``shadow_timeout``. So the wait has only a safety cap (``max_wait``, 120 s). Writes with nothing
to wait for are stored at once, with no task.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Hashable

from banyan.tasks import cancel_and_wait

Waits = list[asyncio.Future[None]]


class SubmitOrder:
    def __init__(self, *, max_wait: float = 120.0) -> None:
        self.max_wait = max_wait
        # per lane, the writes still waiting here: their arrival order -> stored
        self._lanes: dict[Hashable, dict[float, asyncio.Future[None]]] = {}
        self._waiting: dict[asyncio.Task[None], Callable[[], None]] = {}
        self.waited = 0  # writes that waited for a copy or an earlier write

    def _earlier(self, lane: Hashable, seq: float) -> Waits:
        waiting = self._lanes.get(lane, {})
        return [done for at, done in waiting.items() if at < seq and not done.done()]

    def submit(self, lane: Hashable, seq: float, copies: Waits, store: Callable[[], None]) -> None:
        """Call ``store`` once ``copies`` (the user's copies in flight) and the lane's writes
        that arrived before this one (``seq``: the arrival order, e.g. a monotonic clock read
        when the request came in) are stored — a write whose copy failed joins late, but in its
        place — or after :attr:`max_wait` seconds."""
        pending = [f for f in copies if not f.done()] + self._earlier(lane, seq)
        if not pending:
            store()
            return
        self.waited += 1
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._lanes.setdefault(lane, {})[seq] = done

        def finish() -> None:  # once, whichever comes first: the wait's end or a flush
            if done.done():
                return
            store()
            done.set_result(None)
            waiting = self._lanes.get(lane, {})
            if waiting.get(seq) is done:
                del waiting[seq]
                if not waiting:
                    del self._lanes[lane]

        task = asyncio.ensure_future(self._after(lane, seq, pending, finish))
        self._waiting[task] = finish
        task.add_done_callback(self._waiting.pop)

    async def _after(
        self, lane: Hashable, seq: float, pending: Waits, finish: Callable[[], None]
    ) -> None:
        deadline = asyncio.get_running_loop().time() + self.max_wait
        while pending:  # an earlier write may have joined (late) while this one waited
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                break
            await asyncio.wait(pending, timeout=left)
            pending = self._earlier(lane, seq)
        finish()

    async def flush(self) -> None:
        """Store every waiting write now, in the order they came (the proxy is stopping)."""
        waiting = list(self._waiting.items())
        await cancel_and_wait([task for task, _ in waiting])
        for _, finish in waiting:
            finish()
