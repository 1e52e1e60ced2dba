"""Helpers for tests that start real servers on loopback.

``serve(app)`` runs an aiohttp application on 127.0.0.1 with port 0 inside the current event loop
and yields its base URL; leaving the block stops the server. ``free_port()`` finds a port that is
free right now (for processes that must be told a port up front). ``ManualClock`` stands in for a
component's clock where a test moves time itself.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from aiohttp import web

from banyan.client_timeouts import ClientTimeouts
from banyan.serving import start_site


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port that was free on ``host`` when asked."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


@asynccontextmanager
async def serve(
    app: web.Application, host: str = "127.0.0.1", *, timeouts: ClientTimeouts | None = None
) -> AsyncIterator[str]:
    """Serve ``app`` on loopback port 0 for the duration of the block; yield its base URL."""
    runner, url = await start_site(app, host, 0, shutdown_timeout=2.0, timeouts=timeouts)
    try:
        yield url
    finally:
        await runner.cleanup()


class ManualClock:
    """A clock that reads ``now`` and moves only when a test moves it (``clock.now += 5``)."""

    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now
