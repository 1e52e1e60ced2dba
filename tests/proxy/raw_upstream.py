"""A byte-level upstream and client for the forwarding tests.

``RawUpstream`` is a real HTTP/1.1 server on loopback (asyncio, parsed with httptools) that keeps
every request exactly as it arrived — the head's bytes, the header lines in order, the body's
bytes after framing — and answers with the bytes a test chose (``answers[path]``), so a test can
see what a proxy added, dropped or rewrote on either leg. ``raw_exchange`` sends bytes a client
library would not (absolute-form targets, no ``Accept``/``User-Agent``, repeated headers, broken
framing) and returns the answer's bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from httptools import HttpParserError, HttpRequestParser

OK = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok"


@dataclass
class RawRequest:
    method: str
    target: bytes
    head: bytes  # request line and header lines, up to the blank line, as received
    headers: list[tuple[bytes, bytes]]
    body: bytes = b""  # after framing (chunks joined)
    wire_body: bytes = b""  # as received, framing included

    def header(self, name: str) -> list[bytes]:
        wanted = name.lower().encode()
        return [v for n, v in self.headers if n.lower() == wanted]

    def names(self) -> list[str]:
        return [n.decode().lower() for n, _ in self.headers]


@dataclass
class RawUpstream:
    name: str
    requests: list[RawRequest] = field(default_factory=list)
    answers: dict[str, bytes | Callable[[RawRequest], bytes]] = field(default_factory=dict)
    close_after_answer: bool = False
    drop_second: bool = False  # close a connection at its second request, answering nothing
    connections: int = 0
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    def answer_for(self, request: RawRequest) -> bytes:
        path = request.target.split(b"?", 1)[0].decode()
        for prefix, answer in self.answers.items():
            if path.endswith(prefix) or prefix == "*":
                return answer(request) if callable(answer) else answer
        return OK

    async def wait_for(self, count: int, timeout: float = 10.0) -> list[RawRequest]:
        async with asyncio.timeout(timeout):
            while len(self.requests) < count:
                self.arrived.clear()
                await self.arrived.wait()
        return self.requests

    @contextlib.asynccontextmanager
    async def serving(self) -> AsyncIterator[str]:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(lambda: _Protocol(self), "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            server.close()
            await server.wait_closed()


class _Protocol(asyncio.Protocol):
    def __init__(self, upstream: RawUpstream) -> None:
        self.upstream = upstream
        self.parser = HttpRequestParser(self)
        self.buffer = b""
        self.transport: asyncio.Transport | None = None
        self.served = 0
        self._reset()

    def _reset(self) -> None:
        self.target = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.body: list[bytes] = []
        self.head = b""
        self.head_end = -1

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.upstream.connections += 1

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        try:
            self.parser.feed_data(data)
        except HttpParserError:
            assert self.transport is not None
            self.transport.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
            self.transport.close()

    def on_url(self, url: bytes) -> None:
        self.target += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        end = self.buffer.find(b"\r\n\r\n")
        self.head = self.buffer[: end + 4]
        self.buffer = self.buffer[end + 4 :]

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        wire = self.buffer
        self.buffer = b""
        request = RawRequest(
            self.parser.get_method().decode(),
            self.target,
            self.head,
            self.headers,
            b"".join(self.body),
            wire,
        )
        self._reset()
        upstream = self.upstream
        assert self.transport is not None
        self.served += 1
        if upstream.drop_second and self.served == 2:
            self.transport.close()  # as if it had closed while idle, just as the request came
            return
        upstream.requests.append(request)
        upstream.arrived.set()
        assert self.transport is not None
        self.transport.write(upstream.answer_for(request))
        if upstream.close_after_answer:
            self.transport.close()


async def raw_exchange(
    url: str, data: bytes, *, timeout: float = 10.0, half_close: bool = False
) -> bytes:
    """Send ``data`` to the server at ``url`` and read until it closes the connection (send
    ``Connection: close``, or a request it refuses); ``half_close`` ends the sending side after
    ``data``, as a client that gives up on its body does."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(data)
        await writer.drain()
        if half_close:
            writer.write_eof()
        async with asyncio.timeout(timeout):
            return await reader.read()
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


def split_answer(raw: bytes) -> tuple[bytes, list[tuple[bytes, bytes]], bytes]:
    """(status line, header lines, body bytes as sent) of an answer read whole."""
    head, _, body = raw.partition(b"\r\n\r\n")
    status, *lines = head.split(b"\r\n")
    headers = [(n, v) for n, _, v in (line.partition(b": ") for line in lines)]
    return status, headers, body
