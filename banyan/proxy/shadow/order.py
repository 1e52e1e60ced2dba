"""The order of one caller's copies to the candidate: lines, and a request's place in them.

A copy joins its caller's line (and a whiteboard room's, which every user shares); it waits for
the copies already on their way in those lines (:mod:`banyan.proxy.fence`) and holds its own place
until it is sent. A request takes its place before the primary is asked (a
:class:`Reservation`), which the comparison takes over, or which lapses if none comes.
"""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass

from aiohttp import web

from banyan.application import plugged
from banyan.proxy.fence import Release, WriteFence
from banyan.proxy.routing import user_from_authorization

SAFE = frozenset({"GET", "HEAD", "OPTIONS"})
Caller = tuple[str | None, str]  # (user, client address): whose copies wait in one line


def sampled(request_id: str, percent: float, salt: str = "") -> bool:
    if percent >= 100:
        return True
    if percent <= 0:
        return False
    bucket = (
        int.from_bytes(hashlib.sha256((salt + request_id).encode()).digest()[:8], "big") % 10_000
    )
    return bucket < percent * 100


def caller_of(request: web.Request) -> Caller:
    user = user_from_authorization(request.headers.get("Authorization"), request.query.get("token"))
    return user, request.remote or ""


def lines_of(path: str, caller: Caller) -> list[Caller]:
    """The lines a copy joins: its caller's, and for a whiteboard room, which every user shares,
    the room's too (the application's ``shared_line``) — so the room's copies (snapshots,
    restores, reads, socket frames) keep one order across users, as the primary saw them, and
    each user's copies keep theirs (an Idempotency-Key is the user's, whatever the room)."""
    shared = plugged().shared_line(path)
    return [caller] if shared is None else [caller, (shared, "")]


def pending(fence: WriteFence, backend: str, lines: list[Caller]) -> list[asyncio.Future[None]]:
    """The copies on their way to ``backend`` in any of ``lines`` now."""
    return [f for line in lines for f in fence.pending(backend, *line)]


def hold(fence: WriteFence, backend: str, lines: list[Caller]) -> Release:
    """Take a place in every one of ``lines``; the returned release gives them all up."""
    releases = [fence.hold(backend, *line) for line in lines]

    def release() -> None:
        for each in releases:
            each()

    return release


@dataclass(slots=True)
class Reservation:
    """A request's place in its caller's line to the candidate, taken before the primary answers.

    ``earlier``: the caller's copies on their way when it came; ``release`` gives the place up;
    ``lapse`` gives it up on its own when no comparison ever takes it over."""

    earlier: list[asyncio.Future[None]]
    release: Release
    lapse: asyncio.TimerHandle
    caller: Caller

    def cancel(self) -> None:
        """No copy is coming: nobody waits for it."""
        self.lapse.cancel()
        self.release()

    def take_over(self) -> None:
        """The comparison releases the place itself, whatever happens."""
        self.lapse.cancel()


RESERVED: web.RequestKey[Reservation] = web.RequestKey("banyan_shadow_reserved", Reservation)
