"""Plain WebSocket tunnels: after both handshakes, bytes go through as they come.

A socket nothing needs to read (not shadowed, not mirrored) is not parsed into messages and framed
again: once the upstream answered ``101`` and the client got its own ``101``, what arrives from
one side is written to the other side's transport from the connection's data callback — no task,
no message objects, no WebSocket reader or writer per side (nginx does the same). Frames pass
unchanged: a client's masked frames are valid from the proxy acting as a client, the upstream's
unmasked frames are valid towards the client. The handshake is the client's own: its key, version
and subprotocols go upstream and the upstream's accept and chosen subprotocol come back; no
extension is offered, so nothing is compressed.

The tunnel still knows where frames begin and end (it reads each frame's few header bytes) so
that it can speak itself, between two frames: ``1012`` on a flip with ``websocket: reconnect``,
``1001`` at shutdown, and ``1001 peer went away`` to one side when the other vanished without a
close frame. When one side's transport holds more than its high-water mark, the other side is
not read until it drains.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from typing import Any

import aiohttp
from aiohttp import WSCloseCode, web
from aiohttp.base_protocol import BaseProtocol
from aiohttp.http_writer import StreamWriter
from multidict import CIMultiDict

from banyan.proxy.forward import error_response
from banyan.proxy.headers import mark

CLOSE_WAIT = 10.0  # seconds a tunnel told to close waits for both connections before aborting
_CLOSE = 0x8


def _header_size(head: bytes) -> int | None:
    """The size of the frame header starting ``head``, once enough of it is there to tell."""
    if len(head) < 2:
        return None
    length = head[1] & 0x7F
    size = 2 + (2 if length == 126 else 8 if length == 127 else 0) + (4 if head[1] & 0x80 else 0)
    return size if len(head) >= size else None


def _payload_size(head: bytes) -> int:
    length = head[1] & 0x7F
    if length == 126:
        return int.from_bytes(head[2:4], "big")
    if length == 127:
        return int.from_bytes(head[2:10], "big")
    return length


class FrameCursor:
    """Where one direction's byte stream is, frame-wise: inside a header, inside a payload, or
    between two frames; and whether a close frame went by."""

    __slots__ = ("closed", "head", "remaining")

    def __init__(self) -> None:
        self.head = b""
        self.remaining = 0
        self.closed = False

    @property
    def at_boundary(self) -> bool:
        return not self.remaining and not self.head

    def walk(self, data: bytes, *, until_boundary: bool = False) -> int:
        """Move over ``data``; return how much of it was walked (all of it, or with
        ``until_boundary`` only up to the end of the frame in progress)."""
        i, n = 0, len(data)
        while i < n:
            if until_boundary and self.at_boundary:
                return i
            if self.remaining:
                step = min(self.remaining, n - i)
                self.remaining -= step
                i += step
                continue
            head = self.head + data[i : i + 14 - len(self.head)]
            size = _header_size(head)
            if size is None:  # the rest of ``data`` is an unfinished header
                self.head = head
                return n
            i += size - len(self.head)
            self.head = b""
            self.remaining = _payload_size(head)
            if head[0] & 0x0F == _CLOSE:
                self.closed = True
        return i


def close_frame(code: int, reason: str, *, masked: bool) -> bytes:
    """A close frame; ``masked`` as a client must send it."""
    payload = code.to_bytes(2, "big") + reason.encode()[:123]
    if not masked:
        return bytes((0x80 | _CLOSE, len(payload))) + payload
    key = os.urandom(4)
    hidden = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    return bytes((0x80 | _CLOSE, 0x80 | len(payload))) + key + hidden


class _Direction:
    """One way through the tunnel. aiohttp's protocol of the ``source`` side hands it every chunk
    it reads (it stands in as that protocol's payload parser)."""

    __slots__ = ("cursor", "drain", "lost", "masked", "say", "silent", "sink", "source", "tunnel")

    def __init__(
        self, tunnel: Tunnel, source: BaseProtocol, sink: BaseProtocol, *, masked: bool
    ) -> None:
        self.tunnel = tunnel
        self.source = source
        self.sink = sink
        self.masked = masked  # frames written to ``sink`` must be masked (towards the upstream)
        self.cursor = FrameCursor()
        self.say: bytes | None = None  # a close frame to put in at the next frame boundary
        self.silent = False  # the tunnel spoke this way: what the source sends now is dropped
        self.lost = False  # the source's connection is gone
        self.drain: asyncio.Task[None] | None = None

    def feed_data(self, data: bytes) -> tuple[bool, bytes]:
        self.tunnel.forward(self, data)
        return False, b""

    def feed_eof(self) -> None:
        self.tunnel.source_lost(self)


class Tunnel:
    """A client connection and an upstream connection joined byte for byte."""

    __slots__ = ("backend", "done", "down", "feature", "up", "upstream_response")

    def __init__(
        self,
        feature: str,
        backend: str,
        client: BaseProtocol,
        upstream: BaseProtocol,
        upstream_response: aiohttp.ClientResponse,
    ) -> None:
        self.feature = feature
        self.backend = backend
        self.up = _Direction(self, client, upstream, masked=True)
        self.down = _Direction(self, upstream, client, masked=False)
        self.upstream_response = upstream_response
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    # -- the data path ---------------------------------------------------------------------------

    def forward(self, way: _Direction, data: bytes) -> None:
        sink = way.sink.transport
        if way.silent or sink is None or not data:
            return
        if way.say is None:
            way.cursor.walk(data)
            sink.write(data)
        else:
            upto = way.cursor.walk(data, until_boundary=True)
            if upto:
                sink.write(data[:upto])
            if way.cursor.at_boundary:
                self._speak(way)
        if way.sink.writing_paused and way.drain is None:
            way.source.pause_reading()
            way.drain = asyncio.ensure_future(self._resume_when_drained(way))

    async def _resume_when_drained(self, way: _Direction) -> None:
        try:
            await StreamWriter(way.sink, asyncio.get_running_loop()).drain()
        except (ConnectionError, RuntimeError):
            return
        finally:
            way.drain = None
        if way.source.transport is not None:
            way.source.resume_reading(resume_parser=False)

    def source_lost(self, way: _Direction) -> None:
        """The connection ``way`` reads from is gone: end the other one too — with a close frame
        of the tunnel's own when the gone side left without one and a frame boundary allows."""
        if way.lost:
            return
        way.lost = True
        sink = way.sink.transport
        if sink is not None and not way.silent:
            if not way.cursor.closed and way.cursor.at_boundary:
                code = WSCloseCode.GOING_AWAY
                sink.write(close_frame(code, "peer went away", masked=way.masked))
            way.silent = True
            sink.close()
        if self.up.lost and self.down.lost and not self.done.done():
            self.done.set_result(None)

    # -- the tunnel speaking ---------------------------------------------------------------------

    def _speak(self, way: _Direction) -> None:
        """Put the close frame waiting in ``way`` on its sink; once both ways have spoken, close
        both connections (a side still finishing a frame the other way is not cut short)."""
        frame, way.say = way.say, None
        sink = way.sink.transport
        way.silent = True
        if sink is not None and frame is not None:
            sink.write(frame)
        if self.up.silent and self.down.silent:
            for each in (self.up, self.down):
                if each.sink.transport is not None:
                    each.sink.transport.close()

    async def close(self, code: int, reason: str) -> None:
        """Tell both sides ``code`` (each between two frames), close both connections, and wait
        for them to end (aborting them after ``CLOSE_WAIT``)."""
        for way in (self.up, self.down):
            if not way.silent and way.say is None:
                way.say = close_frame(code, reason, masked=way.masked)
                if way.cursor.at_boundary:
                    self._speak(way)
        try:
            await asyncio.wait_for(asyncio.shield(self.done), CLOSE_WAIT)
        except TimeoutError:
            self.abort()

    def abort(self) -> None:
        for protocol in (self.up.source, self.down.source):
            if protocol.transport is not None:
                protocol.transport.abort()

    def release(self) -> None:
        """Let go of everything (both connections closed or closing)."""
        for way in (self.up, self.down):
            if way.drain is not None:
                way.drain.cancel()
            if way.source.transport is not None:
                way.source.transport.close()
        self.upstream_response.close()


class TunnelResponse(web.StreamResponse):
    """The ``101`` a tunnel answers with. After it the connection belongs to the tunnel: there is
    no end of body to write."""

    def __init__(self, headers: CIMultiDict[str]) -> None:
        super().__init__(status=101, headers=headers)
        self.force_close()

    async def write_eof(self, data: bytes = b"") -> None:
        return None


def _is_handshake(request: web.Request) -> bool:
    values = ",".join(request.headers.getall("Connection", []))
    connection = {t.strip().lower() for t in values.split(",")}
    return (
        "upgrade" in connection
        and request.headers.get("Upgrade", "").lower() == "websocket"
        and request.headers.get("Sec-WebSocket-Version") == "13"
        and bool(request.headers.get("Sec-WebSocket-Key"))
    )


def _handshake_headers(request: web.Request, headers: CIMultiDict[str]) -> CIMultiDict[str]:
    out = CIMultiDict(headers)
    out["Upgrade"] = "websocket"
    out["Connection"] = "Upgrade"
    out["Sec-WebSocket-Version"] = "13"
    out["Sec-WebSocket-Key"] = request.headers["Sec-WebSocket-Key"]
    if "Sec-WebSocket-Protocol" in request.headers:
        out["Sec-WebSocket-Protocol"] = request.headers["Sec-WebSocket-Protocol"]
    return out


async def open_tunnel(
    request: web.Request,
    session: aiohttp.ClientSession,
    url: str,
    headers: CIMultiDict[str],
    *,
    feature: str,
    backend: str,
    request_id: str,
    timeout: float,
) -> tuple[web.StreamResponse, Tunnel | None]:
    """Hand the client's handshake upstream; answer its ``101`` (or its refusal) to the client."""

    def refusal(status: int, code: str, message: str) -> tuple[web.StreamResponse, None]:
        answer = error_response(status, code, message)
        mark(answer.headers, feature, backend, request_id)
        return answer, None

    if not _is_handshake(request):
        return refusal(400, "bad_request", "not a WebSocket handshake (RFC 6455, version 13)")
    try:
        upstream = await asyncio.wait_for(
            session.get(url, headers=_handshake_headers(request, headers), read_until_eof=False),
            timeout,
        )
    except TimeoutError:
        return refusal(504, "gateway_timeout", f"{backend} backend timed out")
    except (aiohttp.ClientError, OSError) as exc:
        return refusal(502, "bad_gateway", f"{backend} backend unavailable ({exc})")
    connection = upstream.connection
    if (
        upstream.status != 101
        or upstream.headers.get("Upgrade", "").lower() != "websocket"
        or connection is None
        or connection.protocol is None
    ):
        status = upstream.status
        upstream.close()
        status = status if 400 <= status < 600 else 502
        code = {401: "unauthorized", 403: "forbidden", 404: "not_found"}
        message = f"{backend} backend refused the WebSocket upgrade ({upstream.status})"
        return refusal(status, code.get(status, "upgrade_refused"), message)
    return await _answer(request, upstream, connection.protocol, feature, backend, request_id)


async def _answer(
    request: web.Request,
    upstream: aiohttp.ClientResponse,
    upstream_protocol: Any,
    feature: str,
    backend: str,
    request_id: str,
) -> tuple[web.StreamResponse, Tunnel]:
    answer: CIMultiDict[str] = CIMultiDict(Upgrade="websocket", Connection="Upgrade")
    for name in ("Sec-WebSocket-Accept", "Sec-WebSocket-Protocol"):
        if name in upstream.headers:
            answer[name] = upstream.headers[name]
    response = TunnelResponse(answer)
    mark(response.headers, feature, backend, request_id)
    try:
        await response.prepare(request)
    except (ConnectionError, RuntimeError):
        upstream.close()
        raise
    tunnel = Tunnel(feature, backend, request.protocol, upstream_protocol, upstream)
    upstream_protocol.set_parser(tunnel.down, None)  # what the upstream sent after its 101 first
    request.protocol.set_parser(tunnel.up)  # type: ignore[arg-type]
    for way in (tunnel.down, tunnel.up):  # a side gone before its parser was set tells no one
        if way.source.transport is None:
            tunnel.source_lost(way)
    return response, tunnel


async def run_tunnel(tunnel: Tunnel, registry: Any) -> None:
    """Hold ``tunnel`` open (tracked in ``registry``) until both of its connections ended."""
    registry.add(tunnel)
    try:
        await tunnel.done
    finally:
        with contextlib.suppress(ConnectionError, RuntimeError):
            tunnel.release()
        registry.discard(tunnel)
