"""Slow clients are cut: header and body read timeouts for every Banyan server.

aiohttp's server has no timeout for reading a request: a client that sends half a request line,
or headers and then a trickle of body, holds its connection (a descriptor, a task, buffers) for as
long as it likes. :class:`ClientTimeouts` names the limits, after nginx's:

- ``header`` (``client_header_timeout``): the whole request head — request line and headers — must
  arrive within it, counted from the connection's start or from the first byte of the next request
  on a kept-alive connection. Past it the client gets ``408`` with a JSON error (when part of a
  request arrived) and the connection is closed.
- ``body`` (``client_body_timeout``): the longest wait between two reads of a request body (not the
  whole body: a large upload at a steady pace is never cut). While the server itself is not reading
  (its buffer is full because the handler or the upstream is slow) the clock does not run. Past it
  the connection is closed; the handler sees the client gone.
- ``keepalive``: how long an idle kept-alive connection (or a new one that never sends a byte) stays
  open.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiohttp.streams import StreamReader
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_server import Server

from banyan.env import seconds
from banyan.logs import get_logger

log = get_logger("server")

HEADER_ENV = "BANYAN_CLIENT_HEADER_TIMEOUT"
BODY_ENV = "BANYAN_CLIENT_BODY_TIMEOUT"
KEEPALIVE_ENV = "BANYAN_KEEPALIVE_TIMEOUT"


@dataclass(frozen=True)
class ClientTimeouts:
    header: float = 60.0
    body: float = 60.0
    keepalive: float = 75.0

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> ClientTimeouts:
        """Defaults, each overridden by its variable when set in ``environ``."""
        return cls(
            header=seconds(environ, HEADER_ENV, cls.header),
            body=seconds(environ, BODY_ENV, cls.body),
            keepalive=seconds(environ, KEEPALIVE_ENV, cls.keepalive),
        )


# -- the protocol -----------------------------------------------------------------------------

_IDLE, _HEAD, _BODY, _DONE = range(4)  # what the connection is waiting for from the client

REQUEST_TIMEOUT = (
    b"HTTP/1.1 408 Request Timeout\r\nContent-Type: application/json\r\n"
    b"Connection: close\r\nContent-Length: %d\r\n\r\n%s"
)


def _timeout_body(timeout: float) -> bytes:
    message = f"the request head did not arrive within {timeout:g} s"
    return json.dumps({"error": {"code": "request_timeout", "message": message}}).encode()


class SlowClientGuard(RequestHandler):
    """aiohttp's request handler, plus the header and body read timeouts.

    One timer per connection, armed only while the connection waits for a client: for the rest
    of a head (a fixed deadline) or for more of a body (a deadline that moves with every read).
    It is checked, not re-created, on each read. Once a connection is upgraded (a WebSocket) it
    is never armed again."""

    __slots__ = (
        "_guard_body",
        "_guard_deadline",
        "_guard_phase",
        "_guard_seen",
        "_guard_timer",
        "_timeouts",
    )

    def __init__(self, manager: Server, **kwargs: Any) -> None:
        timeouts = getattr(manager, "timeouts", None) or ClientTimeouts()  # a GuardedServer's
        kwargs["keepalive_timeout"] = timeouts.keepalive
        super().__init__(manager, **kwargs)
        self._guard_phase = _IDLE
        self._guard_deadline = 0.0
        self._guard_timer: asyncio.TimerHandle | None = None
        self._guard_body: StreamReader | None = None
        self._guard_seen = False
        self._timeouts = timeouts

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._await_head(seen=False)  # a new connection owes a request head, like nginx's

    def connection_lost(self, exc: BaseException | None) -> None:
        self._disarm(_DONE)
        self._guard_body = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        phase = self._guard_phase
        if phase == _DONE:
            if self._upgraded or self._force_close:  # a WebSocket, or a connection being cut
                super().data_received(data)
                return
            phase = self._guard_phase = _IDLE  # the upgrade was refused: plain HTTP again
        heads_before = self._request_count
        super().data_received(data)
        if self._upgraded:
            self._disarm(_DONE)
        elif self._request_count != heads_before:  # a head arrived (maybe more than one)
            body = self._messages[-1][1] if self._messages else None
            if body is not None and not body.is_eof():
                self._await_body(body)
            else:
                self._disarm(_IDLE)
        elif phase == _BODY:
            body = self._guard_body
            if body is None or body.is_eof():
                self._disarm(_IDLE)
            elif data:
                self._guard_deadline = self._loop.time() + self._timeouts.body
        elif phase == _IDLE and data:
            self._await_head(seen=True)
        elif phase == _HEAD and data:
            self._guard_seen = True

    # -- states ----------------------------------------------------------------------------------

    def _await_head(self, *, seen: bool) -> None:
        self._guard_phase = _HEAD
        self._guard_seen = seen
        self._arm(self._loop.time() + self._timeouts.header)

    def _await_body(self, body: StreamReader) -> None:
        self._guard_phase = _BODY
        self._guard_body = body
        self._arm(self._loop.time() + self._timeouts.body)

    def _arm(self, deadline: float) -> None:
        self._guard_deadline = deadline
        timer = self._guard_timer
        if timer is not None and timer.when() > deadline:  # due later than now needed
            timer.cancel()
            timer = None
        if timer is None:
            self._guard_timer = self._loop.call_at(deadline, self._check)

    def _disarm(self, phase: int) -> None:
        self._guard_phase = phase
        self._guard_body = None
        if self._guard_timer is not None:
            self._guard_timer.cancel()
            self._guard_timer = None

    def _check(self) -> None:
        self._guard_timer = None
        if self.transport is None or self._guard_phase in (_IDLE, _DONE):
            return
        now = self._loop.time()
        if self._guard_phase == _BODY and (self._reading_paused or self._buffer_paused):
            # the server is not reading (its buffer is full): the client is not the slow one
            self._guard_deadline = now + self._timeouts.body
        if now < self._guard_deadline:
            self._guard_timer = self._loop.call_at(self._guard_deadline, self._check)
            return
        self._cut(now)

    def _cut(self, now: float) -> None:
        transport, phase = self.transport, self._guard_phase
        assert transport is not None
        peer = self.peername
        if phase == _HEAD:
            log.info("client_header_timeout", peer=str(peer), partial=self._guard_seen)
            if self._guard_seen and not self._request_in_progress:
                body = _timeout_body(self._timeouts.header)
                transport.write(REQUEST_TIMEOUT % (len(body), body))
        else:
            log.info("client_body_timeout", peer=str(peer))
        self._disarm(_DONE)
        self.force_close()


class GuardedServer(Server):
    """aiohttp's low-level server, making :class:`SlowClientGuard` protocols that read their
    ``timeouts`` here (a subclass of the guard made by a subclass of this server gets them too)."""

    def __init__(self, *args: Any, timeouts: ClientTimeouts, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.timeouts = timeouts

    def __call__(self) -> RequestHandler:
        return SlowClientGuard(self, loop=self._loop, **self._kwargs)


class GuardedAppRunner(web.AppRunner):
    """An ``AppRunner`` whose connections are guarded by ``timeouts``."""

    def __init__(self, app: web.Application, *, timeouts: ClientTimeouts, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self.timeouts = timeouts

    async def _make_server(self) -> Server:
        plain = await super()._make_server()  # runs the app's startup, freezes it
        return GuardedServer(
            plain.request_handler,
            request_factory=plain.request_factory,
            handler_cancellation=plain.handler_cancellation,
            timeouts=self.timeouts,
            **plain._kwargs,
        )
