"""Read-your-writes across the two backends: one caller's writes reach a backend before they do.

The proxy sends some writes to a backend after the user's answer: shadow copies to the candidate
and mirror writes to the other store. Without care, the same user's next request can overtake
them — a shadowed read reaches the candidate before the create it reads, or, right after a flip,
the user's first request to the other backend arrives before their last write was mirrored there.
Both look like lost records (a 404 to the user, a false mismatch to parity).

A :class:`WriteFence` tracks, per ``(backend, user)``, the writes still on their way. ``hold``
registers one (synchronously, on the request path, so nothing can slip in before it) and returns its
release; ``pending`` takes a snapshot of what is on its way now; ``wait`` waits for such a snapshot.
A request to a backend waits for that user's pending writes to it, at most ``max_wait`` seconds (a
mirror write that keeps failing must not hang a user; it is retried and reported by the mirror
queue). A shadow copy waits the same: past it, the copy is sent anyway (a write's copy must
land) but its answer, unless a failure, is not compared (the skip ``earlier_writes_late``), since
it read a store the caller's earlier writes had not reached; a copy of a write waits longer
(``WRITE_COPY_WAIT``), since sent early it would change what the candidate stores. A write
without a user (a registration: no JWT ``sub`` yet) is held under its client address, and every
request from that address waits for it too, so the first call made with the new token never
overtakes the copy that creates the user. In steady state — every feature of a user on one
side — nothing is ever pending for the side the user talks to, so nothing waits.

A hold is either a *copy* on its way (a shadow copy, sent straight to the candidate) or a write
*queued* in the durable mirror queue (``hold(..., queued=True)``). The queue keeps its own writes
in order, so a write that joins it only waits for the user's copies still in flight
(:meth:`copies`): that way a logout mirrored through the queue never reaches the other store
before the create whose shadow copy is still on its way (:mod:`banyan.proxy.mirror_order`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Hashable

Release = Callable[[], None]
MAX_WAIT = 2.0
# How long a shadow copy of a write (a tutor ask included) waits for the caller's earlier copies:
# sent early, it changes what the candidate stores (an answer made without the turn before it),
# not only what it answers. It runs after the user's answer, so the wait costs the user nothing.
WRITE_COPY_WAIT = 30.0


def _noop() -> None:
    return None


class WriteFence:
    def __init__(self, *, max_wait: float = MAX_WAIT) -> None:
        self.max_wait = max_wait
        self._pending: dict[Hashable, list[asyncio.Future[None]]] = {}
        self._queued: set[asyncio.Future[None]] = set()  # holds of writes in the mirror queue
        self.waits = 0  # requests that found writes on their way and waited
        self.timeouts = 0  # waits cut at max_wait

    def hold(
        self, backend: str, user: str | None, ip: str = "", *, queued: bool = False
    ) -> Release:
        """Register a write on its way to ``backend`` for ``user`` (or, for a caller without a
        user such as a registration, for its address); call the result when done. ``queued``:
        the write travels through the mirror queue (not a copy in flight)."""
        caller = user or (f"ip:{ip}" if ip else None)
        if not caller:
            return _noop
        key = (backend, caller)
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.setdefault(key, []).append(future)
        if queued:
            self._queued.add(future)

        def release() -> None:
            if future.done():
                return
            future.set_result(None)
            self._queued.discard(future)
            waiting = self._pending.get(key)
            if waiting is not None:
                waiting.remove(future)
                if not waiting:
                    del self._pending[key]

        return release

    def pending(self, backend: str, user: str | None, ip: str = "") -> list[asyncio.Future[None]]:
        """The writes on their way to ``backend`` for ``user`` right now, and those made without a
        user from the same address (the registration that created this user)."""
        if not self._pending:
            return []
        found: list[asyncio.Future[None]] = []
        if user:
            found.extend(self._pending.get((backend, user), ()))
        if ip:
            found.extend(self._pending.get((backend, f"ip:{ip}"), ()))
        return found

    def copies(self, backend: str, user: str | None, ip: str = "") -> list[asyncio.Future[None]]:
        """Like :meth:`pending`, but only the copies in flight, not the writes queued."""
        return [f for f in self.pending(backend, user, ip) if f not in self._queued]

    async def wait(self, futures: list[asyncio.Future[None]], limit: float | None = None) -> bool:
        """Wait for a :meth:`pending` snapshot; False when ``limit`` (else ``max_wait``) cut the
        wait short."""
        if not futures:
            return True
        self.waits += 1
        _, late = await asyncio.wait(futures, timeout=self.max_wait if limit is None else limit)
        if late:
            self.timeouts += 1
            return False
        return True

    def status(self) -> dict[str, int]:
        """For ``/_proxy/status``: the writes on their way now (copies and queued writes, every
        user), the requests that waited for some, and the waits cut at ``max_wait`` (a request
        that may have overtaken a write of its user's)."""
        on_their_way = sum(len(futures) for futures in self._pending.values())
        return {"on_their_way": on_their_way, "waits": self.waits, "timeouts": self.timeouts}

    async def before(self, backend: str, user: str | None) -> bool:
        """Wait for ``user``'s writes on their way to ``backend`` (the request path's call)."""
        return await self.wait(self.pending(backend, user))
