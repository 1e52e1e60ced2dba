"""HTTP forwarding: one streamed exchange with an upstream, and what happened on it.

The request goes out as the client sent it (:class:`banyan.proxy.headers.Outbound`) over a pooled
keep-alive connection (:mod:`banyan.proxy.upstream`): a body already in hand leaves with the head
in one write, a longer one streams as it arrives, in the client's framing (``Content-Length`` as
given, chunked as given). The answer is relayed as it arrives: a small answer whose body came with
its head leaves in one write to the client; a longer one streams chunk by chunk (chunked and SSE
answers flow token by token), never held whole. Bodies can be *captured* up to a limit for shadow
comparison and write mirroring: a capture past its limit is dropped (and reported as such), the
stream itself is never slowed or cut.

Failures before the answer's head map to ``502 bad_gateway`` (cannot connect, connection lost, an
answer that is not HTTP or is over a limit) and ``504 gateway_timeout`` (connect or read timeout),
with a JSON error body naming the backend, never its address (the detail goes to the log). A
failure in the middle of an answer's body can no longer change the status, so the client
connection is closed to signal the truncation. A request the client itself broke (body cut
short, bad chunking, over a limit) gets a 4xx and is never counted against a backend.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field

from aiohttp import web
from multidict import MultiDict

from banyan.errors import (
    BadRequestBody,
    ConnectError,
    ConnectionClosed,
    ProtocolError,
    RequestFault,
    ResponseTooLarge,
    UpstreamError,
    UpstreamTimeout,
)
from banyan.proxy.headers import Outbound, answer_head, lowered
from banyan.proxy.relayed import RelayedResponse
from banyan.proxy.stamping import WriteStamp
from banyan.proxy.upstream import Body, Capture, Connection, Pool
from banyan.proxy.upstream.pool import finish

# The ways a backend fails an exchange (counted against it); "request" and "client_closed" are
# the request's or the client's doing.
UPSTREAM_FAILURES = frozenset(
    failure.kind
    for failure in (
        ConnectError,
        UpstreamTimeout,
        ConnectionClosed,
        ProtocolError,
        ResponseTooLarge,
    )
)

__all__ = [
    "UPSTREAM_FAILURES",
    "Capture",
    "Exchange",
    "error_response",
    "gateway_error",
    "relay",
    "request_body",
]


@dataclass(slots=True)
class Exchange:
    """One forwarded request as metrics, guards, shadowing and mirroring see it."""

    feature: str
    backend: str
    method: str
    path_qs: str
    request_id: str
    started: float = field(default_factory=time.perf_counter)
    status: int = 0
    error: str | None = None
    head_latency: float = 0.0  # seconds from the request reaching the proxy to the answer's head
    round_trip: float = 0.0  # seconds from the request leaving the proxy to the answer's head
    fallback: bool = False
    request_capture: Capture | None = None
    response_capture: Capture | None = None
    # kept only when the answer is captured, with lower-cased names (as parity compares them)
    response_headers: MultiDict[str] | None = None
    outbound: Outbound | None = None
    stamp: WriteStamp | None = None  # a write's time, for the primary and every copy of it

    @property
    def failed(self) -> bool:
        """For guards: the backend could not answer or answered with a 5xx."""
        return self.error in UPSTREAM_FAILURES or self.status >= 500


def error_response(status: int, code: str, message: str) -> web.Response:
    return web.Response(
        status=status,
        body=json.dumps({"error": {"code": code, "message": message}}).encode(),
        content_type="application/json",
    )


def gateway_error(exc: UpstreamError, backend: str) -> web.Response:
    """The client's answer to a failed exchange: names the backend, never its address."""
    if isinstance(exc, UpstreamTimeout):
        return error_response(504, "gateway_timeout", f"{backend} backend timed out")
    if isinstance(exc, ResponseTooLarge):
        return error_response(502, "upstream_head_too_large", f"{backend} backend: {exc.detail}")
    if isinstance(exc, ProtocolError):
        return error_response(502, "bad_gateway", f"{backend} backend sent a malformed answer")
    return error_response(502, "bad_gateway", f"{backend} backend unavailable")


def fault_response(fault: RequestFault) -> web.Response:
    return error_response(fault.status, fault.code, fault.message)


def _chunked(request: web.Request) -> bool:
    value = request.headers.get("Transfer-Encoding")
    return value is not None and "chunked" in value.lower()


def request_body(
    request: web.Request, capture_limit: int | None
) -> tuple[Body | None, Capture | None]:
    """What to send as the upstream body, and the capture recording it (if asked)."""
    capture = Capture(capture_limit) if capture_limit is not None else None
    if not request.body_exists:
        return None, capture
    chunked = _chunked(request)
    content = request.content
    if content.is_eof():  # the whole body came with the head: send it in one write
        try:
            data = content.read_nowait()
        except Exception as exc:
            raise BadRequestBody() from exc
        if capture is not None:
            capture.add(data)
        return Body.whole(data, chunked=chunked), capture
    return Body(stream=content, chunked=chunked, capture=capture), capture


async def relay(
    request: web.Request,
    pool: Pool,
    conn: Connection,
    exchange: Exchange,
    *,
    read_timeout: float,
    capture_limit: int | None = None,
    fallback: bool = False,
) -> web.StreamResponse:
    """Relay the answer on ``conn`` to the client; fills in ``exchange``; gives ``conn`` back."""
    now = time.perf_counter()
    exchange.status = conn.status
    exchange.head_latency = now - exchange.started
    exchange.round_trip = now - conn.sent_at
    head = answer_head(conn.headers, exchange.feature, exchange.backend, exchange.request_id)
    lines = head.lines + b"X-Banyan-Fallback: 1\r\n" if fallback else head.lines
    capture = None
    if capture_limit is not None:
        exchange.response_headers = lowered(conn.headers)
        capture = exchange.response_capture = Capture(capture_limit)
    response = RelayedResponse(
        conn.status,
        conn.reason,
        lines,
        content_length=head.content_length,
        has_date=head.has_date,
    )
    try:
        await response.prepare(request)
        if conn.complete:  # the whole body is here: head and body leave in one write
            body = conn.take()
            if capture is not None:
                capture.add(body)
            await response.write_eof(body)
        else:
            await _stream(response, conn, capture, read_timeout)
    except ConnectionError:
        exchange.error = "client_closed"
    except UpstreamError as exc:
        exchange.error = exc.kind
        _abort(request)
    except RequestFault:
        exchange.error = "request"
        _abort(request)
    finally:
        finish(pool, conn)
    return response


async def _stream(
    response: web.StreamResponse, conn: Connection, capture: Capture | None, read_timeout: float
) -> None:
    while True:
        chunk = await conn.next_chunk(read_timeout)
        if not chunk:
            break
        if capture is not None:
            capture.add(chunk)
        await response.write(chunk)
    await response.write_eof()


def _abort(request: web.Request) -> None:
    """Close the client connection: the only way left to say a body was cut short."""
    if request.transport is not None:
        request.transport.close()
