"""Idle gaps: background work on the proxy's event loop yields to the users' requests.

The event loop runs one callback at a time, so a shadow copy being sent delays whichever user
request arrives meanwhile. :class:`IdleGaps` counts the users' requests in progress
(:meth:`enter`/:meth:`leave`, called by the request handler) and lets waiting background work
through only when none is: one waiter per loop iteration, so a request arriving between two is
read first. A waiter never waits longer than ``max_wait`` seconds — under a load with no gaps at
all, background work proceeds as it would without this, just slightly later.
"""

from __future__ import annotations

import asyncio
from collections import deque


def _release(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


class IdleGaps:
    def __init__(self, max_wait: float = 0.25) -> None:
        self.max_wait = max_wait
        self.busy = 0  # users' requests in progress
        self.waited = 0  # background steps that had to wait for a gap
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._scheduled = False

    def enter(self) -> None:
        self.busy += 1

    def leave(self) -> None:
        self.busy -= 1
        if self.busy == 0:
            self._schedule()

    def _schedule(self) -> None:
        if self._waiters and not self._scheduled:
            self._scheduled = True
            # call_soon runs in the next loop iteration, after the loop has polled for I/O
            asyncio.get_running_loop().call_soon(self._wake_one)

    def _wake_one(self) -> None:
        self._scheduled = False
        if self.busy:
            return  # a request came in: the next gap is when it is done
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                break
        self._schedule()

    async def wait(self) -> None:
        """Return at the next gap between users' requests (at once when there is one now)."""
        if not self.busy and not self._waiters:
            return
        self.waited += 1
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        self._waiters.append(waiter)
        timer = loop.call_later(self.max_wait, _release, waiter)
        try:
            await waiter
        finally:
            timer.cancel()
