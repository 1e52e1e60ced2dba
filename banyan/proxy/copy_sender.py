"""Shadow copies: sent from the proxy's own process, or on request from a helper process.

A copy is the primary's request: the same head bytes (:meth:`banyan.proxy.headers.Outbound.head`:
target, every header line in order, ``Host``, ``X-Request-Id``) and body, sent by the same
upstream client the proxy forwards with (:mod:`banyan.proxy.upstream`, :func:`send_copy`). The
candidate's latency is its own round trip: from the copy's head leaving to its answer's head.

By default (``in_process=True``, ``BANYAN_SHADOW_SENDER=inline``) :class:`CopySender` sends each
copy on the proxy's event loop, through the proxy's pools. With ``in_process=False``
(``BANYAN_SHADOW_SENDER=process``) it hands every copy to a helper process instead (``python -m
banyan.proxy.copy_sender FD MAX_INFLIGHT``, started at the first copy, running below the proxy:
:func:`yield_to_the_proxy`) over a private socket pair, and gets the candidate's answer back: the
proxy's part is one small message each way. That takes about 35 µs of CPU per copy off the
proxy's loop but costs two more process wake-ups per copy, which on a small host delay the users'
requests more than the loop time saved (``bench/copy_sender.py``; docs/decisions.md).

Failures stay contained: when the helper cannot be started, copies are sent in-process by the
same :func:`send_copy` until a restart succeeds (tried again after 1 s, doubling up to a minute
while it keeps failing); copies a helper had in hand when it died come back as errors; a helper
whose proxy is gone sees its socket close and exits.

Messages are length-prefixed pickles of plain tuples; the socket pair is private to the proxy and
the child it started itself, so nothing else can write to it.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import pickle
import socket
import struct
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from multidict import MultiDict

from banyan.errors import (
    ConnectError,
    ConnectionClosed,
    ProtocolError,
    ResponseTooLarge,
    UpstreamError,
    UpstreamTimeout,
)
from banyan.logs import get_logger
from banyan.parity.compare import Response
from banyan.processes import stop as stop_process
from banyan.proxy.headers import lowered
from banyan.proxy.limits import Limits
from banyan.proxy.upstream import Body, PoolSettings, Upstreams, finish, send
from banyan.tasks import cancel_and_wait

log = get_logger("banyan.proxy.copy_sender")
FRAME = struct.Struct("!I")  # the length of the pickle that follows
NICE = 10  # the helper's CPU priority below the proxy's: the users' requests come first
GRACE_SECONDS = 2.0  # how much longer than the copy's own timeout the proxy waits for an answer
FIRST_RETRY_SECONDS = 1.0
LAST_RETRY_SECONDS = 60.0
PARENT_CHECK_SECONDS = 2.0
# The errors of a copy the helper lost (it died, or stopped answering): they say nothing of the
# candidate, so the shadow counts such a copy as skipped, never as the candidate's failure.
HELPER_EXITED = "copy sender exited"
HELPER_SILENT = "copy sender did not answer"
SENDER_ERRORS = frozenset({HELPER_EXITED, HELPER_SILENT})


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

    def as_job(self, job_id: int) -> Job:
        return (
            job_id,
            self.method,
            self.url,
            self.head,
            self.body,
            self.chunked,
            self.timeout,
            self.limit,
        )


# On the wire, plain tuples (cheaper to pickle than a class):
# (job id, method, url, head, body, chunked, timeout seconds, body limit in bytes)
Job = tuple[int, str, str, bytes, bytes, bool, float, int]
# (job id, status, header lines (lower-cased name, value), body, head latency ms, error)
Answer = tuple[int, int, list[tuple[str, str]], bytes, float, str | None]
_ERRORS: dict[type[UpstreamError], str] = {
    UpstreamTimeout: "candidate timed out",
    ConnectError: "candidate refused or unreachable",
    ConnectionClosed: "candidate closed the connection",
    ProtocolError: "candidate sent a malformed answer",
    ResponseTooLarge: "candidate's answer head is over the proxy's limits",
}


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


class Channel(asyncio.Protocol):
    """One end of the socket pair: sends and receives length-prefixed pickles."""

    def __init__(self, on_message: Callable[[Any], None], on_lost: Callable[[], None]) -> None:
        self._on_message = on_message
        self._on_lost = on_lost
        self._buffer = bytearray()
        self.transport: asyncio.WriteTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.WriteTransport, transport)

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        while len(self._buffer) >= FRAME.size:
            (size,) = FRAME.unpack_from(self._buffer)
            end = FRAME.size + size
            if len(self._buffer) < end:
                return
            message = pickle.loads(self._buffer[FRAME.size : end])
            del self._buffer[:end]
            self._on_message(message)

    def send(self, message: Any) -> None:
        assert self.transport is not None
        data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
        self.transport.writelines((FRAME.pack(len(data)), data))

    def connection_lost(self, exc: Exception | None) -> None:
        self._on_lost()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


def _expire(future: asyncio.Future[Response], started: float) -> None:
    if not future.done():
        future.set_result(_failed(started, HELPER_SILENT))


class CopySender:
    """The proxy's side: :meth:`send` a copy, through the helper when it runs, else in-process."""

    def __init__(self, max_inflight: int = 64, *, in_process: bool = True) -> None:
        self.max_inflight = max_inflight
        self.in_process = in_process
        self.started = 0  # helpers started over this sender's life
        self.lost = 0  # copies a dying helper took with it
        self._upstreams: Upstreams | None = None
        self._channel: Channel | None = None
        self._process: asyncio.subprocess.Process | None = None
        self._pending: dict[int, asyncio.Future[Response]] = {}
        self._sending = 0  # copies being sent in-process now
        self._ids = itertools.count()
        self._lock = asyncio.Lock()
        self._retry_at = 0.0
        self._retry_after = FIRST_RETRY_SECONDS
        self._reapers: set[asyncio.Task[None]] = set()

    def start(self, upstreams: Upstreams) -> None:
        """Use ``upstreams`` for copies sent in-process (the helper starts at the first copy)."""
        self._upstreams = upstreams

    def status(self) -> dict[str, Any]:
        """For ``/_proxy/status``: where copies leave from and how the helper has fared."""
        return {
            "mode": "in_process" if self.in_process else "helper",
            "helper_pid": self.helper_pid,
            "helpers_started": self.started,
            "copies_lost": self.lost,
            "in_flight": len(self._pending) + self._sending,
        }

    @property
    def helper_pid(self) -> int | None:
        return self._process.pid if self._process is not None and self._channel else None

    async def send(self, copy: Copy) -> Response:
        channel = self._channel or await self._helper()
        if channel is None:
            assert self._upstreams is not None, "start() the sender first"
            self._sending += 1
            try:
                return await send_copy(self._upstreams, copy)
            finally:
                self._sending -= 1
        loop = asyncio.get_running_loop()
        job_id = next(self._ids)
        future: asyncio.Future[Response] = loop.create_future()
        self._pending[job_id] = future
        # the helper cuts the copy at its timeout; this only guards against a helper that hangs
        timer = loop.call_later(copy.timeout + GRACE_SECONDS, _expire, future, time.perf_counter())
        try:
            channel.send(copy.as_job(job_id))
            return await future
        finally:
            timer.cancel()
            self._pending.pop(job_id, None)

    async def _helper(self) -> Channel | None:
        if self.in_process or time.monotonic() < self._retry_at:
            return None
        async with self._lock:
            if self._channel is None and time.monotonic() >= self._retry_at:
                await self._start_helper()
        return self._channel

    async def _start_helper(self) -> None:
        parent, child = socket.socketpair()
        try:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "banyan.proxy.copy_sender",
                str(child.fileno()),
                str(self.max_inflight),
                pass_fds=(child.fileno(),),
                stdin=asyncio.subprocess.DEVNULL,
            )
        except OSError as exc:
            parent.close()
            self._failed_start(f"{type(exc).__name__}: {exc}")
            return
        finally:
            child.close()
        channel = Channel(self._answer, lambda: self._lost(channel))
        await asyncio.get_running_loop().create_unix_connection(lambda: channel, sock=parent)
        self._process = process
        self._channel = channel
        self.started += 1
        log.info("copy sender started", pid=process.pid)

    def _failed_start(self, reason: str) -> None:
        log.warning("copy sender unavailable, sending copies in-process", reason=reason)
        self._retry_at = time.monotonic() + self._retry_after
        self._retry_after = min(self._retry_after * 2, LAST_RETRY_SECONDS)

    def _answer(self, message: Answer) -> None:
        job_id, status, headers, body, head, error = message
        self._retry_after = FIRST_RETRY_SECONDS  # this helper works: a later death retries soon
        future = self._pending.get(job_id)
        if future is not None and not future.done():
            future.set_result(Response(status, MultiDict(headers), body, head, error))

    def _lost(self, channel: Channel) -> None:
        if channel is not self._channel:
            return
        self._channel = None
        process, self._process = self._process, None
        for future in self._pending.values():
            if not future.done():
                self.lost += 1
                future.set_result(Response(0, {}, b"", 0.0, error=HELPER_EXITED))
        if process is not None:
            self._failed_start(f"the helper (pid {process.pid}) exited")
            reaper = asyncio.ensure_future(_reap(process))
            self._reapers.add(reaper)
            reaper.add_done_callback(self._reapers.discard)

    async def stop(self) -> None:
        """Let the helper go (it exits once its socket closes) and wait for it."""
        channel, process = self._channel, self._process
        self._channel, self._process = None, None
        if channel is not None:
            channel.close()
        if process is not None:
            await _reap(process)
        await cancel_and_wait(list(self._reapers))


async def _reap(process: asyncio.subprocess.Process) -> None:
    """Wait for a helper told to end by its socket closing (killed if it has not in 5 s)."""
    await stop_process(process, timeout=5.0, terminate=False)


# -- the helper process -------------------------------------------------------------------------


async def serve_jobs(fd: int, max_inflight: int) -> None:
    """Send every copy that arrives on ``fd`` and answer it; return when the proxy closes it."""
    loop = asyncio.get_running_loop()
    closed: asyncio.Future[None] = loop.create_future()
    tasks: set[asyncio.Task[None]] = set()
    upstreams = Upstreams(Limits.from_env(os.environ), PoolSettings(max_connections=max_inflight))

    async def run(channel: Channel, job: Job) -> None:
        job_id, *fields = job
        try:
            answer = await send_copy(upstreams, Copy(*fields))  # type: ignore[arg-type]
        except Exception as exc:  # a bug here must cost one copy, not the helper
            answer = Response(0, {}, b"", 0.0, error=type(exc).__name__)
        if channel.transport is not None and not channel.transport.is_closing():
            message: Answer = (
                job_id,
                answer.status,
                list(answer.headers.items()),
                answer.body,
                answer.latency_ms,
                answer.error,
            )
            channel.send(message)

    def on_job(job: Job) -> None:
        task = loop.create_task(run(channel, job))
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    def on_lost() -> None:
        if not closed.done():
            closed.set_result(None)

    async def watch_parent(parent: int) -> None:
        while os.getppid() == parent:  # a second way out, should the socket never report
            await asyncio.sleep(PARENT_CHECK_SECONDS)
        on_lost()

    channel = Channel(on_job, on_lost)
    await loop.create_unix_connection(lambda: channel, sock=socket.socket(fileno=fd))
    watcher = loop.create_task(watch_parent(os.getppid()))
    try:
        await closed
    finally:
        watcher.cancel()
        await cancel_and_wait(list(tasks))
        upstreams.close()


def yield_to_the_proxy() -> None:
    """Run below the proxy: a lower priority (``nice``), and, where Linux offers it, the batch
    policy, under which a helper woken by a copy never preempts the process running (the proxy
    relaying a user's answer, the primary computing it); it runs at the next tick instead."""
    with contextlib.suppress(OSError):
        os.nice(NICE)
    if hasattr(os, "SCHED_BATCH"):
        with contextlib.suppress(OSError):
            os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))


def main(argv: list[str] | None = None) -> None:
    fd, max_inflight = (int(arg) for arg in (argv or sys.argv[1:]))
    yield_to_the_proxy()
    from banyan.serving import install_uvloop

    install_uvloop()
    asyncio.run(serve_jobs(fd, max_inflight))


if __name__ == "__main__":
    main()
