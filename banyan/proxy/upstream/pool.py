"""Keep-alive connections to one upstream origin, and sending one request over them.

A :class:`Pool` holds at most ``max_connections`` connections to its origin; idle ones are reused
newest first and closed after ``idle_timeout`` seconds. When every connection is busy a request
waits for one until its connect timeout (then 504). :func:`send` writes a request head and body
on a pooled connection and waits for the answer's head; a reused connection the upstream closed
while it sat idle (the request's bytes met a closing socket, nothing came back) is retried once
on a fresh connection, for an idempotent request whose body the proxy still holds — never for
anything else, which could then apply twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from dataclasses import dataclass

from aiohttp import StreamReader

from banyan.errors import (
    BadRequestBody,
    ConnectError,
    ConnectionClosed,
    RequestFault,
    UpstreamError,
    UpstreamTimeout,
)
from banyan.proxy.limits import Limits
from banyan.proxy.upstream.capture import Capture
from banyan.proxy.upstream.connection import Connection
from banyan.proxy.upstream.origin import Origin, tls_context

SMALL_BODY = 64 * 1024  # a body this small leaves in the same write as its head
IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})


@dataclass(frozen=True, slots=True)
class PoolSettings:
    max_connections: int = 512  # per backend origin
    idle_timeout: float = 30.0  # seconds an unused connection is kept


class Body:
    """A request body to forward: ``data`` when the whole body is already in hand (framed as it
    will be sent), else ``stream`` read as it arrives, framed with ``chunked`` or not."""

    __slots__ = ("capture", "chunked", "data", "stream")

    def __init__(
        self,
        data: bytes | None = None,
        stream: StreamReader | None = None,
        *,
        chunked: bool = False,
        capture: Capture | None = None,
    ) -> None:
        self.data = data
        self.stream = stream
        self.chunked = chunked
        self.capture = capture

    @classmethod
    def whole(cls, payload: bytes, *, chunked: bool) -> Body:
        """A body held whole, framed for the wire."""
        if not chunked:
            return cls(payload)
        if not payload:
            return cls(b"0\r\n\r\n", chunked=True)
        return cls(b"%x\r\n%b\r\n0\r\n\r\n" % (len(payload), payload), chunked=True)


class Pool:
    def __init__(
        self, origin: Origin, limits: Limits, settings: PoolSettings | None = None
    ) -> None:
        self.origin = origin
        self.limits = limits
        self.settings = settings or PoolSettings()
        self.idle: list[Connection] = []
        self.size = 0  # open and opening connections
        self.closed = False
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._sweeper: asyncio.TimerHandle | None = None

    async def acquire(self, connect_timeout: float, *, fresh: bool = False) -> Connection:
        """A connection to use, reused unless ``fresh``; raises :class:`UpstreamError`."""
        loop = asyncio.get_running_loop()
        if not fresh:
            conn = self._reuse(loop.time())
            if conn is not None:
                return conn
        deadline = loop.time() + connect_timeout
        while self.size >= self.settings.max_connections:
            await self._wait_for_slot(deadline - loop.time())
            if not fresh:
                conn = self._reuse(loop.time())
                if conn is not None:
                    return conn
        if self.closed:
            raise ConnectError("the proxy is shutting down")
        self.size += 1
        return await self._connect(max(0.001, deadline - loop.time()))

    def _reuse(self, now: float) -> Connection | None:
        while self.idle:
            conn = self.idle.pop()
            conn.idle = False
            if conn.open and now - conn.idle_since < self.settings.idle_timeout:
                return conn
            self._discard(conn)
        return None

    async def _wait_for_slot(self, remaining: float) -> None:
        if remaining <= 0:
            raise UpstreamTimeout("no free connection to the backend in time")
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await asyncio.wait_for(waiter, remaining)
        except TimeoutError as exc:
            raise UpstreamTimeout("no free connection to the backend in time") from exc
        finally:
            with contextlib.suppress(ValueError):
                self._waiters.remove(waiter)

    async def _connect(self, timeout: float) -> Connection:
        origin = self.origin
        conn = Connection(self, self.limits)
        loop = asyncio.get_running_loop()
        try:
            await asyncio.wait_for(
                loop.create_connection(
                    lambda: conn,
                    origin.host,
                    origin.port,
                    ssl=tls_context() if origin.tls else None,
                    server_hostname=origin.host if origin.tls else None,
                ),
                timeout,
            )
        except TimeoutError as exc:
            self._forget_unopened()
            raise UpstreamTimeout(f"connect to {origin.host}:{origin.port} timed out") from exc
        except OSError as exc:
            self._forget_unopened()
            raise ConnectError(f"{origin.host}:{origin.port}: {exc}") from exc
        except BaseException:
            self._forget_unopened()
            raise
        return conn

    def _forget_unopened(self) -> None:
        self.size -= 1
        self._wake()

    def release(self, conn: Connection, *, reusable: bool) -> None:
        """Hand ``conn`` back: kept idle when ``reusable`` (and still open), else closed."""
        if reusable and conn.reusable and not self.closed:
            conn.idle = True
            conn.idle_since = asyncio.get_running_loop().time()
            self.idle.append(conn)
            if self._sweeper is None:
                self._schedule_sweep()
        else:
            self._discard(conn)
        self._wake()

    def lost_idle(self, conn: Connection) -> None:
        """An idle connection was closed by the upstream."""
        conn.idle = False
        with contextlib.suppress(ValueError):
            self.idle.remove(conn)
        self._discard(conn)
        self._wake()

    def _discard(self, conn: Connection) -> None:
        conn.close()
        if not conn.forgotten:
            conn.forgotten = True
            self.size -= 1

    def _wake(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def _schedule_sweep(self) -> None:
        loop = asyncio.get_running_loop()
        self._sweeper = loop.call_later(self.settings.idle_timeout / 2, self._sweep)

    def _sweep(self) -> None:
        self._sweeper = None
        now = asyncio.get_running_loop().time()
        keep = []
        for conn in self.idle:
            if conn.open and now - conn.idle_since < self.settings.idle_timeout:
                keep.append(conn)
            else:
                conn.idle = False
                self._discard(conn)
        self.idle = keep
        if keep and not self.closed:
            self._schedule_sweep()

    def close(self) -> None:
        self.closed = True
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        idle, self.idle = self.idle, []
        for conn in idle:
            conn.idle = False
            self._discard(conn)
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)


async def send(
    pool: Pool,
    method: str,
    head: bytes,
    body: Body | None,
    *,
    connect_timeout: float,
    read_timeout: float,
) -> Connection:
    """Send one request and wait for the answer's head; the connection returned carries the
    answer (and the task still sending a streamed body, ``conn.body_task``). Raises
    :class:`UpstreamError`, or :class:`RequestFault` when the client's body failed first."""
    replayable = body is None or body.data is not None
    for attempt in (0, 1):
        conn = await pool.acquire(connect_timeout, fresh=attempt > 0)
        reused = conn.requests > 0
        conn.begin(head_request=method == "HEAD")
        task: asyncio.Task[None] | None = None
        try:
            task = _write_request(conn, head, body)
            await conn.wait_head(read_timeout)
        except UpstreamError as exc:
            finish(pool, conn, task)
            retry = attempt == 0 and reused and replayable and not conn.received
            if retry and isinstance(exc, ConnectionClosed) and method in IDEMPOTENT:
                continue
            raise
        except BaseException:
            finish(pool, conn, task)
            raise
        conn.body_task = task
        return conn
    raise AssertionError("unreachable")  # pragma: no cover


def finish(pool: Pool, conn: Connection, task: asyncio.Task[None] | None = None) -> None:
    """The exchange is over: keep the connection if its request and answer both ended cleanly."""
    task = task if task is not None else conn.body_task
    conn.body_task = None
    sent = task is None or (task.done() and not task.cancelled() and task.exception() is None)
    if task is not None and not task.done():
        task.cancel()
    pool.release(conn, reusable=sent and conn.body_sent)


def _write_request(conn: Connection, head: bytes, body: Body | None) -> asyncio.Task[None] | None:
    conn.body_sent = body is None or body.data is not None
    if body is not None and body.data is not None:
        data = body.data
        if len(data) < SMALL_BODY:
            conn.write(head + data)  # one write for head and body
        else:
            conn.writelines((head, data))
    else:
        conn.write(head)
    conn.sent_at = time.perf_counter()
    if body is None or body.stream is None:
        return None
    return asyncio.ensure_future(_pump(conn, body))


async def _pump(conn: Connection, body: Body) -> None:
    """Stream the client's body to the upstream as it arrives, in the client's framing."""
    stream, chunked, capture = body.stream, body.chunked, body.capture
    assert stream is not None
    try:
        while True:
            try:
                chunk = await stream.readany()
            except Exception as exc:  # the client's side: cut short, bad chunking, gone
                raise BadRequestBody() from exc
            if not chunk:
                break
            if capture is not None:
                capture.add(chunk)
            if chunked:
                conn.writelines((b"%x\r\n" % len(chunk), chunk, b"\r\n"))
            else:
                conn.write(chunk)
            await conn.drain()
        if chunked:
            conn.write(b"0\r\n\r\n")
        conn.body_sent = True
    except RequestFault as fault:
        conn.fail(fault)
    except UpstreamError:
        pass  # the answer's side reports the lost connection
