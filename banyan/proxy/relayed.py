"""An aiohttp response whose head is the upstream's, byte for byte, as the proxy relays it.

aiohttp's own responses add ``Server``, a default ``Content-Type`` and re-serialize every header
from text (a non-UTF-8 byte would change). :class:`RelayedResponse` writes the status line and the
header lines it is given (already serialized by :func:`banyan.proxy.headers.answer_head`), adding
only what framing the connection to the client needs (``Transfer-Encoding: chunked`` for a body
of unknown length, ``Connection``) and a ``Date`` when the upstream sent none. The head waits in
the writer until the first body bytes, so a small answer leaves in one socket write.

This leans on two private attributes of aiohttp's ``StreamWriter`` (the buffered head); the
forwarding tests check the exact bytes a client receives, so a change there fails loudly.
"""

from __future__ import annotations

import time
from email.utils import formatdate

from aiohttp import web
from aiohttp.abc import AbstractStreamWriter
from aiohttp.http_writer import HttpVersion10, HttpVersion11

_date_cache: list[tuple[int, bytes]] = [(0, b"")]


def http_date() -> bytes:
    """The current time as an HTTP ``Date`` value, formatted once a second."""
    now = int(time.time())
    cached = _date_cache[0]
    if cached[0] != now:
        cached = (now, formatdate(now, usegmt=True).encode("ascii"))
        _date_cache[0] = cached
    return cached[1]


class RelayedResponse(web.StreamResponse):
    """A response with a ready-made head; the body is written as it comes (``write``,
    ``write_eof``), framed by ``content_length`` when known, else chunked (HTTP/1.1) or ended by
    closing the connection (HTTP/1.0)."""

    def __init__(
        self,
        status: int,
        reason: bytes,
        lines: bytes,
        *,
        content_length: int | None,
        has_date: bool,
    ) -> None:
        super().__init__(status=status)
        self._raw_reason = reason
        self._lines = lines
        self._length = content_length
        self._has_date = has_date

    def drop_headers(self, prefix: bytes) -> None:
        """Leave out the relayed header lines whose lower-cased name starts with ``prefix``."""
        kept = [
            line
            for line in self._lines.split(b"\r\n")
            if line and not line.lower().startswith(prefix)
        ]
        self._lines = b"".join(line + b"\r\n" for line in kept)

    async def _start(self, request: web.BaseRequest) -> AbstractStreamWriter:
        self._req = request
        await request._prepare_hook(self)  # on_response_prepare handlers (CORS) run here too
        writer = request._payload_writer
        self._payload_writer = writer
        keep_alive = request.keep_alive if self._keep_alive is None else self._keep_alive
        version = request.version
        extra = b""
        if not self._must_be_empty_body:
            if self._length is not None:
                writer.length = self._length
            elif version >= HttpVersion11:
                writer.enable_chunking()
                extra += b"Transfer-Encoding: chunked\r\n"
            else:
                keep_alive = False  # an HTTP/1.0 client learns the end from the close
        if not self._has_date:
            extra += b"Date: " + http_date() + b"\r\n"
        for name, value in self.headers.items():  # what a prepare handler added
            extra += f"{name}: {value}\r\n".encode("latin-1")
        if not keep_alive and version == HttpVersion11:
            extra += b"Connection: close\r\n"
        elif keep_alive and version == HttpVersion10:
            extra += b"Connection: keep-alive\r\n"
        self._keep_alive = keep_alive
        head = b"HTTP/%d.%d %d %s\r\n%s%s\r\n" % (
            version[0],
            version[1],
            self.status,
            self._raw_reason,
            self._lines,
            extra,
        )
        writer._headers_buf = head  # type: ignore[attr-defined]
        writer._headers_written = False  # type: ignore[attr-defined]
        return writer
