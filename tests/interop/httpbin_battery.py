"""A battery of safe requests over httpbin's deterministic endpoints, and a byte-level client.

Each request is written by hand (no client library adds ``Accept``, ``User-Agent`` or anything
else): repeated headers, absolute-form targets, compressed and binary bodies, redirects, cookies,
ranges, streams, conditional requests, a 12 KB answer header. ``direct_form`` is the same request
as the proxy forwards it (the client's lines, then ``X-Forwarded-*``), so the direct answer and
the proxied answer can be compared byte for byte.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field

from httptools import HttpResponseParser

HOST = "httpbin.example"
BIG = "b" * 12 * 1024

# (method, target, extra header lines)
BATTERY: list[tuple[str, str, tuple[str, ...]]] = [
    ("GET", "/get", ()),
    ("GET", "/get?a=1&b=2", ()),
    ("GET", "/get?a=1&a=2&c=%2F%20x", ()),
    ("GET", "/get", ("X-Rep: one", "X-Rep: two")),
    ("GET", "/get", ("Cookie: a=1", "Cookie: b=2")),
    ("GET", "/get", ("X-Forwarded-For: 10.0.0.1",)),
    ("GET", "/headers", ()),
    ("GET", "/headers", ("Accept: application/json", "User-Agent: interop/1.0")),
    ("GET", "/user-agent", ()),
    ("GET", "/user-agent", ("User-Agent: curl/8.0",)),
    ("GET", "/ip", ()),
    ("GET", "/anything", ()),
    ("GET", "/anything/deep/path?q=1", ("Accept-Language: de",)),
    ("GET", f"http://{HOST}/anything/absolute?x=1", ()),
    ("GET", f"http://{HOST}/get?absolute=yes", ()),
    ("GET", "/gzip", ("Accept-Encoding: gzip",)),
    ("GET", "/gzip", ()),
    ("GET", "/deflate", ("Accept-Encoding: deflate",)),
    ("GET", "/brotli", ("Accept-Encoding: br",)),
    ("GET", "/json", ()),
    ("GET", "/html", ()),
    ("GET", "/xml", ()),
    ("GET", "/robots.txt", ()),
    ("GET", "/deny", ()),
    ("GET", "/encoding/utf8", ()),
    ("GET", "/base64/SGVsbG8sIGJhbnlhbiE=", ()),
    ("GET", "/bytes/0?seed=1", ()),
    ("GET", "/bytes/1024?seed=1", ()),
    ("GET", "/bytes/102400?seed=7", ()),
    ("GET", "/stream-bytes/5000?seed=3&chunk_size=100", ()),
    ("GET", "/stream/5", ()),
    ("GET", "/stream/1", ("X-Rep: a", "X-Rep: b")),
    ("GET", "/range/1024", ("Range: bytes=0-99",)),
    ("GET", "/range/1024", ("Range: bytes=1000-",)),
    ("GET", "/range/26", ()),
    ("GET", "/status/200", ()),
    ("GET", "/status/204", ()),
    ("GET", "/status/404", ()),
    ("GET", "/status/418", ()),
    ("GET", "/status/503", ()),
    ("GET", "/redirect/3", ()),
    ("GET", "/relative-redirect/2", ()),
    ("GET", "/absolute-redirect/2", ()),
    ("GET", "/redirect-to?url=/get", ()),
    ("GET", "/redirect-to?url=http%3A%2F%2Fexample.com%2F&status_code=307", ()),
    ("GET", "/cookies", ("Cookie: a=1; b=2",)),
    ("GET", "/cookies/set?a=1&b=2&c=3", ()),
    ("GET", "/cookies/set/k/v", ()),
    ("GET", "/cookies/delete?a", ("Cookie: a=1",)),
    ("GET", "/response-headers?X-A=1&X-A=2", ()),
    ("GET", f"/response-headers?X-Big={BIG}", ()),
    ("GET", "/etag/abc", ()),
    ("GET", "/etag/abc", ('If-None-Match: "abc"',)),
    ("GET", "/cache/60", ()),
    ("GET", "/cache", ("If-Modified-Since: Mon, 01 Jan 2024 00:00:00 GMT",)),
    ("GET", "/image/png", ()),
    ("GET", "/image/jpeg", ()),
    ("GET", "/image/svg", ()),
    ("GET", "/image/webp", ()),
    ("GET", "/links/5/2", ()),
    ("GET", "/forms/post", ()),
    ("GET", "/basic-auth/user/passwd", ("Authorization: Basic dXNlcjpwYXNzd2Q=",)),
    ("GET", "/basic-auth/user/passwd", ()),
    ("GET", "/bearer", ("Authorization: Bearer t0k3n",)),
    ("GET", "/hidden-basic-auth/user/passwd", ()),
    ("GET", "/delay/0", ()),
    ("GET", "/drip?numbytes=5&duration=0&delay=0&code=200", ()),
    ("HEAD", "/get", ()),
    ("HEAD", "/bytes/100?seed=1", ()),
    (
        "OPTIONS",
        "/get",
        ("Origin: http://front.example", "Access-Control-Request-Method: GET"),
    ),
]
UNSAFE: list[tuple[str, str, tuple[str, ...]]] = [
    ("POST", "/post", ("Content-Type: application/json", "Content-Length: 8")),
    ("PUT", "/put", ("Content-Length: 0",)),
    ("PATCH", "/patch", ("Content-Length: 0",)),
    ("DELETE", "/delete", ()),
]


def client_form(method: str, target: str, lines: tuple[str, ...], rid: str) -> bytes:
    """The request as a client sends it to the proxy."""
    fields = [f"Host: {HOST}", *lines, f"X-Request-Id: {rid}"]
    body = b'{"a": 1}' if method == "POST" else b""
    return _encode(method, target, fields) + body


def direct_form(method: str, target: str, lines: tuple[str, ...], rid: str) -> bytes:
    """The request as the proxy forwards it: the client's lines, then ``X-Forwarded-*``."""
    prior = [line.split(": ", 1)[1] for line in lines if line.startswith("X-Forwarded-For:")]
    kept = [line for line in lines if not line.startswith("X-Forwarded-For:")]
    fields = [
        f"Host: {HOST}",
        *kept,
        f"X-Request-Id: {rid}",
        "X-Forwarded-For: " + ", ".join([*prior, "127.0.0.1"]),
        "X-Forwarded-Proto: http",
        f"X-Forwarded-Host: {HOST}",
    ]
    return _encode(method, target, fields)


def _encode(method: str, target: str, fields: list[str]) -> bytes:
    head = f"{method} {target} HTTP/1.1\r\n" + "".join(f"{f}\r\n" for f in fields)
    return (head + "\r\n").encode()


@dataclass
class Answer:
    status_line: bytes
    headers: list[tuple[bytes, bytes]]
    body: bytes  # after framing
    chunked: bool = False

    def header(self, name: bytes) -> list[bytes]:
        return [v for n, v in self.headers if n.lower() == name.lower()]


@dataclass
class _Reading:
    head_request: bool
    status: bytes = b""
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    body: list[bytes] = field(default_factory=list)
    done: bool = False

    def on_status(self, status: bytes) -> None:
        self.status += status

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        if self.head_request:
            self.done = True

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        self.done = True


class RawClient:
    """One keep-alive connection; :meth:`ask` sends bytes and reads one whole answer."""

    def __init__(self, url: str) -> None:
        host, port = url.removeprefix("http://").rsplit(":", 1)
        self.host, self.port = host, int(port)
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def ask(self, data: bytes, *, head_request: bool = False) -> Answer:
        if self.writer is None or self.writer.is_closing():
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        self.writer.write(data)
        reading = _Reading(head_request)
        parser = HttpResponseParser(reading)
        version = b""
        async with asyncio.timeout(15):
            while not reading.done:
                received = await self.reader.read(65536)
                if not received:
                    break
                parser.feed_data(received)
                version = parser.get_http_version().encode()
        if not reading.done or not parser.should_keep_alive():
            await self.close()
        status = b"HTTP/" + version + b" " + str(parser.get_status_code()).encode()
        framing = [v.lower() for n, v in reading.headers if n.lower() == b"transfer-encoding"]
        body = b"".join(reading.body)
        chunked = b"chunked" in b",".join(framing)
        return Answer(status + b" " + reading.status, reading.headers, body, chunked)

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(ConnectionError):
                await self.writer.wait_closed()
            self.writer = None
