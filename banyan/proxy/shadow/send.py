"""Sending one shadow copy to the candidate and reading its answer.

A copy is the primary's request: the same head bytes (:meth:`banyan.proxy.headers.Outbound.head`:
target, every header line in order, ``Host``, ``X-Request-Id``) and body, sent by the same
upstream client the proxy forwards with (:mod:`banyan.proxy.upstream`), through the shadow's own
keep-alive pools, so a slow or hanging candidate never takes connections from the users'
requests. The candidate's latency is its own round trip: from the copy's head leaving to its
answer's head. Every failure comes back as a :class:`~banyan.parity.compare.Response` carrying
an error, never as an exception.

Copies are sent on the proxy's own event loop, in gaps between users' requests
(:mod:`banyan.proxy.gaps`). Handing them to a helper process instead cost the users more than it
saved the loop (docs/decisions.md).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

from banyan.errors import (
    ConnectError,
    ConnectionClosed,
    ProtocolError,
    ResponseTooLarge,
    UpstreamError,
    UpstreamTimeout,
)
from banyan.parity.compare import Response
from banyan.proxy.headers import lowered
from banyan.proxy.upstream import Body, Upstreams, finish, send

_ERRORS: dict[type[UpstreamError], str] = {
    UpstreamTimeout: "candidate timed out",
    ConnectError: "candidate refused or unreachable",
    ConnectionClosed: "candidate closed the connection",
    ProtocolError: "candidate sent a malformed answer",
    ResponseTooLarge: "candidate's answer head is over the proxy's limits",
}


@dataclass(frozen=True, slots=True)
class Copy:
    """One request copy to send, and how long and how much of its answer to wait for."""

    method: str
    url: str  # the backend's base URL: where to connect
    head: bytes  # the request head, serialized as for the primary
    body: bytes  # the request body as the client sent it (unframed)
    chunked: bool  # the body is framed chunked (the head says so)
    timeout: float  # seconds, for the whole exchange
    limit: int  # the largest answer body kept, in bytes


async def send_copy(upstreams: Upstreams, copy: Copy) -> Response:
    """Send one copy and read its answer; a body over ``copy.limit`` comes back empty with the
    error ``body_too_large``, a timeout or a refused connection as an error, never as an
    exception. The latency is the copy's own round trip, from its head leaving."""
    started = time.perf_counter()
    try:
        async with asyncio.timeout(copy.timeout):
            pool = upstreams.pool(copy.url)
            conn = await send(
                pool,
                copy.method,
                copy.head,
                Body.whole(copy.body, chunked=copy.chunked),
                connect_timeout=copy.timeout,
                read_timeout=copy.timeout,
            )
            try:
                head = conn.round_trip() * 1000
                raw = await _read_up_to(conn, copy.limit + 1, copy.timeout)
            finally:
                finish(pool, conn)
            if len(raw) > copy.limit:
                return Response(conn.status, {}, b"", head, error="body_too_large")
            return Response(conn.status, lowered(conn.headers), raw, head)
    except TimeoutError:
        return _failed(started, _ERRORS[UpstreamTimeout])
    except UpstreamError as exc:
        return _failed(started, _ERRORS.get(type(exc), exc.kind))
    except (OSError, ValueError) as exc:
        return _failed(started, type(exc).__name__)


async def _read_up_to(conn: Any, limit: int, timeout: float) -> bytes:
    """The whole body, or its first ``limit`` bytes when it is longer."""
    parts: list[bytes] = []
    size = 0
    while size < limit:
        chunk = await conn.next_chunk(timeout)
        if not chunk:
            break
        parts.append(chunk)
        size += len(chunk)
    return b"".join(parts)[:limit]


def _failed(started: float, error: str) -> Response:
    return Response(0, {}, b"", (time.perf_counter() - started) * 1000, error=error)


class CopySender:
    """Sends the shadow's copies through its pools (:meth:`start`), counting those on their way."""

    def __init__(self) -> None:
        self.sending = 0  # copies sent and not answered yet
        self.sent = 0  # copies sent over this sender's life
        self._upstreams: Upstreams | None = None

    def start(self, upstreams: Upstreams) -> None:
        self._upstreams = upstreams

    async def send(self, copy: Copy) -> Response:
        assert self._upstreams is not None, "start() the sender first"
        self.sending += 1
        self.sent += 1
        try:
            return await send_copy(self._upstreams, copy)
        finally:
            self.sending -= 1

    def status(self) -> dict[str, int]:
        """For ``/_proxy/status``: the copies on their way to a candidate now, and all so far."""
        return {"sending": self.sending, "sent": self.sent}
