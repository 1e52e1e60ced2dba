"""One keep-alive HTTP/1.1 connection to an upstream, as an asyncio protocol.

The caller writes a request (head bytes it serialized itself, then the body) and reads the answer:
:meth:`Connection.wait_head` until the status line and headers are parsed, then body chunks with
:meth:`Connection.next_chunk` as they arrive. Parsing is httptools' C parser (llhttp); the answer's
headers are kept as the raw ``(name, value)`` byte pairs, in order, repetitions included.

Interim answers (``100 Continue``, ``103 Early Hints``) are skipped. An answer to ``HEAD`` ends at
its head whatever its ``Content-Length`` says (httptools cannot be told, so a parser that read one
is replaced before the connection carries another request). A body without length or chunking
ends when the upstream closes. Reading pauses while more than :data:`HIGH_WATER` bytes of body
wait for the client, so a slow client never makes the proxy hold a large answer.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, cast

from httptools import HttpParserError, HttpParserUpgrade, HttpResponseParser

from banyan.errors import (
    ConnectionClosed,
    ProtocolError,
    ResponseTooLarge,
    UpstreamTimeout,
)
from banyan.proxy.limits import Limits, describe

if TYPE_CHECKING:
    from banyan.proxy.upstream.pool import Pool

HIGH_WATER = 256 * 1024  # body bytes buffered before the upstream socket stops being read
Header = tuple[bytes, bytes]


class _TooLarge(Exception):
    """Raised inside a parser callback: the answer head went over a limit."""


class Connection(asyncio.Protocol):
    """A connection to one upstream origin, carrying one request at a time."""

    def __init__(self, pool: Pool, limits: Limits) -> None:
        self.pool = pool
        self.limits = limits
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.parser = HttpResponseParser(self)
        self.fresh_parser = True
        self.open = False
        self.idle = False  # in its pool's idle list
        self.forgotten = False  # its pool no longer counts it
        self.requests = 0  # requests started on it
        self.idle_since = 0.0
        self.sent_at = 0.0  # when the current request's head was handed to the socket
        self.body_task: asyncio.Task[None] | None = None  # still sending a streamed body
        self.body_sent = True  # the whole request body went out
        self._head_waiter: asyncio.Future[None] | None = None
        self._body_waiter: asyncio.Future[None] | None = None
        self._drain_waiter: asyncio.Future[None] | None = None
        self._timer: asyncio.TimerHandle | None = None  # see _time
        self._timed: asyncio.Future[None] | None = None  # the wait the timer is for
        self._deadline = 0.0
        self._write_paused = False
        self._reading_paused = False
        self._reset_answer(head_request=False)

    def _reset_answer(self, *, head_request: bool) -> None:
        self.head_request = head_request
        self.status = 0
        self.reason = b""
        self.headers: list[Header] = []
        self.header_bytes = 0
        self.has_head = False
        self.complete = False
        self.keep_alive = True
        self.close_delimited = False
        self.received = False  # any byte of this answer arrived
        self.error: BaseException | None = None
        self._interim = False
        self._chunks: list[bytes] = []
        self._buffered = 0
        self._framed = False

    # -- asyncio.Protocol ------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.open = True

    def data_received(self, data: bytes) -> None:
        if self.idle or (self._head_waiter is None and not self.has_head):
            # nothing was asked: an upstream talking out of turn cannot be trusted with more
            self.close()
            return
        self.received = True
        try:
            self.parser.feed_data(data)
        except HttpParserUpgrade:
            self._fail(ProtocolError("the upstream switched protocols unasked"))
        except HttpParserError as exc:
            cause = exc.__context__
            if isinstance(cause, _TooLarge):
                self._fail(ResponseTooLarge(str(cause)))
            else:
                self._fail(ProtocolError(f"malformed answer: {exc}"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.open = False
        if self.idle:
            self.pool.lost_idle(self)
        if self._drain_waiter is not None and not self._drain_waiter.done():
            self._drain_waiter.set_result(None)
        if self.error is not None or self.complete:
            return
        if self.has_head and self.close_delimited:
            self.complete = True  # the close is the end of this body
            self._wake_body()
            return
        where = "during the answer" if self.has_head else "before the answer's head"
        self._fail(ConnectionClosed(f"connection closed {where}"))

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        waiter, self._drain_waiter = self._drain_waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # -- httptools callbacks ---------------------------------------------------------------------

    def on_message_begin(self) -> None:
        self.headers = []
        self.header_bytes = 0
        self.reason = b""
        self._framed = False

    def on_status(self, status: bytes) -> None:
        self.reason += status
        if len(self.reason) > self.limits.max_field_bytes:
            limit = describe("max_field_bytes", self.limits.max_field_bytes)
            raise _TooLarge(f"the answer's status line is over {limit}")

    def on_header(self, name: bytes, value: bytes) -> None:
        size = len(name) + len(value)
        limits = self.limits
        if size > limits.max_field_bytes:
            raise _TooLarge(
                f"an answer header line of {size} bytes is over "
                f"{describe('max_field_bytes', limits.max_field_bytes)}"
            )
        self.header_bytes += size + 4
        if self.header_bytes > limits.max_header_bytes:
            limit = describe("max_header_bytes", limits.max_header_bytes)
            raise _TooLarge(f"the answer's headers are over {limit}")
        self.headers.append((name, value))
        if len(self.headers) > limits.max_headers:
            raise _TooLarge(
                f"the answer has over {describe('max_headers', limits.max_headers)} header lines"
            )
        lowered = name.lower()
        if lowered == b"content-length" or lowered == b"transfer-encoding":
            self._framed = True

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        if 100 <= status < 200:
            self._interim = True  # 100 Continue, 103 Early Hints: the real answer follows
            return
        self.status = status
        self.keep_alive = self.parser.should_keep_alive()
        no_body = self.head_request or status in (204, 304)
        self.close_delimited = not no_body and not self._framed
        self.has_head = True
        if no_body:
            self.complete = True
            if self.head_request:
                self.fresh_parser = False  # it may now wait for a body that will never come
        waiter = self._head_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def on_body(self, body: bytes) -> None:
        if self.complete:  # a HEAD answer's parser reading what it thinks is a body
            return
        self._chunks.append(body)
        self._buffered += len(body)
        if self._buffered > HIGH_WATER and not self._reading_paused and self.transport:
            self._reading_paused = True
            self.transport.pause_reading()
        self._wake_body()

    def on_message_complete(self) -> None:
        if self._interim:
            self._interim = False
            return
        self.complete = True
        self._wake_body()

    # -- for the caller --------------------------------------------------------------------------

    def begin(self, *, head_request: bool) -> None:
        """Get ready for the answer to a new request (before its head is written)."""
        if not self.fresh_parser:
            self.parser = HttpResponseParser(self)
            self.fresh_parser = True
        self._reset_answer(head_request=head_request)
        self.requests += 1
        self._head_waiter = self.loop.create_future()

    def write(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.write(data)

    def writelines(self, parts: tuple[bytes, ...]) -> None:
        assert self.transport is not None
        self.transport.writelines(parts)

    async def drain(self) -> None:
        """Wait while the socket's write buffer is full; raise once the connection is gone."""
        if self.error is not None:
            raise self.error
        if not self.open:
            raise ConnectionClosed("connection closed while the request was sent")
        if self._write_paused:
            self._drain_waiter = self.loop.create_future()
            await self._drain_waiter
            if not self.open:
                raise ConnectionClosed("connection closed while the request was sent")

    async def wait_head(self, timeout: float) -> None:
        """Until the answer's head is here (raises :class:`UpstreamError`, or the
        :class:`RequestFault` of a request body that failed meanwhile)."""
        waiter = self._head_waiter
        assert waiter is not None
        if not waiter.done():
            self._time(waiter, timeout)
            try:
                await waiter
            finally:
                self._timed = None
        self._head_waiter = None
        if self.error is not None:
            raise self.error

    def take(self) -> bytes:
        """The body bytes that arrived so far (and reading resumed if it had paused)."""
        chunks = self._chunks
        if not chunks:
            return b""
        data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        self._chunks = []
        self._buffered = 0
        if self._reading_paused and self.transport is not None:
            self._reading_paused = False
            self.transport.resume_reading()
        return data

    async def next_chunk(self, timeout: float) -> bytes:
        """The next body bytes; ``b""`` once the body is complete."""
        while True:
            if self._chunks:
                return self.take()
            if self.error is not None:
                raise self.error
            if self.complete:
                return b""
            waiter = self._body_waiter = self.loop.create_future()
            self._time(waiter, timeout)
            try:
                await waiter
            finally:
                self._timed = None
                self._body_waiter = None

    def fail(self, error: BaseException) -> None:
        """Give up on this exchange (the request body failed, or the caller stopped): the
        connection is closed and whoever waits on it gets ``error``."""
        self._fail(error)

    def close(self) -> None:
        self.open = False
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.transport is not None:
            self.transport.close()

    @property
    def reusable(self) -> bool:
        """Whether the answer ended cleanly on a connection both sides keep open."""
        return self.open and self.complete and self.keep_alive and self.error is None

    def round_trip(self) -> float:
        """Seconds from the request leaving to now (call it when the head arrived)."""
        return time.perf_counter() - self.sent_at

    # -- internals -------------------------------------------------------------------------------

    def _fail(self, error: BaseException) -> None:
        if self.error is None:
            self.error = error
        self.close()
        waiter = self._head_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        self._wake_body()

    def _time(self, waiter: asyncio.Future[None], timeout: float) -> None:
        """Fail the exchange if ``waiter`` is not done in ``timeout`` seconds.

        One timer per connection, not one per wait: a wait that ends in time leaves the timer
        armed, and the next wait moves the deadline, which the timer honours when it fires
        (a timer costs more to make and cancel than the rest of a small exchange's waiting)."""
        deadline = self.loop.time() + timeout
        self._deadline = deadline
        self._timed = waiter
        timer = self._timer
        if timer is not None and timer.when() > deadline:  # due later than now needed
            timer.cancel()
            timer = None
        if timer is None:
            self._timer = self.loop.call_at(deadline, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        waiter = self._timed
        if waiter is None or waiter.done():  # nothing is waiting: the next wait arms anew
            return
        if self.loop.time() < self._deadline:  # the deadline moved on since this was armed
            self._timer = self.loop.call_at(self._deadline, self._on_timer)
            return
        self._fail(UpstreamTimeout("no answer in time"))

    def _wake_body(self) -> None:
        waiter = self._body_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


__all__ = ["Connection", "Header"]
