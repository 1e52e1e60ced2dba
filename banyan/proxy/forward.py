"""HTTP forwarding: one streamed exchange with an upstream, and what happened on it.

The request body is streamed to the upstream as it arrives (``Content-Length`` kept when the client
sent one, chunked otherwise) and the response body is streamed back chunk by chunk as it arrives,
so chunked and SSE answers flow token by token; neither is ever held whole in memory. Bodies can
be *captured* up to a limit for shadow comparison and write mirroring: a capture past its limit is
dropped (and reported as such), the stream itself is never slowed or cut.

Failures before the response head map to ``502 bad_gateway`` (cannot connect, connection lost) and
``504 gateway_timeout`` (connect or read timeout) with a JSON error body; a failure in the middle of
a response body can no longer change the status, so the client connection is closed to signal the
truncation.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aiohttp
import yarl
from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy

from banyan.proxy.flags import BackendSpec
from banyan.proxy.headers import downstream_headers, mark


class UpstreamError(Exception):
    """The upstream could not be used; ``kind`` is ``connect``, ``timeout`` or ``closed``."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.detail = detail

    @property
    def status(self) -> int:
        return 504 if self.kind == "timeout" else 502


class Capture:
    """Bytes of a body up to ``limit``; past it, nothing (``overflow`` says so)."""

    __slots__ = ("limit", "overflow", "parts", "size")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.parts: list[bytes] = []
        self.size = 0
        self.overflow = False

    def add(self, chunk: bytes) -> None:
        if self.overflow:
            return
        self.size += len(chunk)
        if self.size > self.limit:
            self.overflow = True
            self.parts = []
        else:
            self.parts.append(chunk)

    def value(self) -> bytes | None:
        return None if self.overflow else b"".join(self.parts)


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
    head_latency: float = 0.0
    fallback: bool = False
    request_capture: Capture | None = None
    response_capture: Capture | None = None
    response_headers: CIMultiDictProxy[str] | None = None

    @property
    def failed(self) -> bool:
        """For guards: the backend could not answer or answered with a 5xx."""
        return self.error in ("connect", "timeout", "closed") or self.status >= 500


def error_response(status: int, code: str, message: str) -> web.Response:
    return web.Response(
        status=status,
        body=json.dumps({"error": {"code": code, "message": message}}).encode(),
        content_type="application/json",
    )


def gateway_error(exc: UpstreamError, backend: str) -> web.Response:
    if exc.kind == "timeout":
        return error_response(504, "gateway_timeout", f"{backend} backend timed out")
    return error_response(502, "bad_gateway", f"{backend} backend unavailable ({exc.detail})")


def timeout_of(spec: BackendSpec) -> aiohttp.ClientTimeout:
    return aiohttp.ClientTimeout(
        total=None, sock_connect=spec.connect_timeout, sock_read=spec.read_timeout
    )


async def _stream(content: aiohttp.StreamReader, capture: Capture) -> AsyncIterator[bytes]:
    async for chunk in content.iter_any():
        capture.add(chunk)
        yield chunk


def request_body(
    request: web.Request, capture_limit: int | None
) -> tuple[aiohttp.StreamReader | AsyncIterator[bytes] | None, Capture | None]:
    """What to send as the upstream body, and the capture recording it (if asked)."""
    if not request.body_exists:
        return None, (Capture(capture_limit) if capture_limit is not None else None)
    if capture_limit is None:
        return request.content, None
    capture = Capture(capture_limit)
    return _stream(request.content, capture), capture


async def open_upstream(
    session: aiohttp.ClientSession,
    method: str,
    url: str | yarl.URL,
    headers: CIMultiDict[str],
    body: aiohttp.StreamReader | AsyncIterator[bytes] | bytes | None,
    timeout: aiohttp.ClientTimeout,
) -> aiohttp.ClientResponse:
    """Send the request and wait for the response head; map failures to :class:`UpstreamError`."""
    try:
        return await session.request(
            method,
            url,
            headers=headers,
            data=body,
            allow_redirects=False,
            timeout=timeout,
            skip_auto_headers=("Accept-Encoding", "User-Agent", "Content-Type"),
        )
    except aiohttp.ClientConnectorError as exc:
        raise UpstreamError("connect", str(exc.os_error or exc)) from exc
    except (aiohttp.ServerTimeoutError, TimeoutError) as exc:
        raise UpstreamError("timeout", "no answer in time") from exc
    except (aiohttp.ClientError, OSError) as exc:
        raise UpstreamError("closed", type(exc).__name__) from exc


async def relay(
    request: web.Request,
    upstream: aiohttp.ClientResponse,
    exchange: Exchange,
    *,
    capture_limit: int | None = None,
    extra_headers: dict[str, str] | None = None,
) -> web.StreamResponse:
    """Stream ``upstream``'s answer to the client; fills in ``exchange``."""
    exchange.status = upstream.status
    exchange.head_latency = time.perf_counter() - exchange.started
    exchange.response_headers = upstream.headers
    response = web.StreamResponse(status=upstream.status, reason=upstream.reason)
    response.headers.extend(downstream_headers(upstream.headers))
    mark(response.headers, exchange.feature, exchange.backend, exchange.request_id)
    if extra_headers:
        response.headers.update(extra_headers)
    capture = Capture(capture_limit) if capture_limit is not None else None
    exchange.response_capture = capture
    try:
        await response.prepare(request)
        async for chunk in upstream.content.iter_any():
            if capture is not None:
                capture.add(chunk)
            await response.write(chunk)
        await response.write_eof()
    except ConnectionError:
        if request.transport is None or request.transport.is_closing():
            exchange.error = "client_closed"
        else:
            exchange.error = "closed"
            _abort(request)
    except (aiohttp.ServerTimeoutError, TimeoutError):
        exchange.error = "timeout"
        _abort(request)
    except (aiohttp.ClientError, OSError):
        exchange.error = "closed"
        _abort(request)
    finally:
        upstream.release()
    return response


def _abort(request: web.Request) -> None:
    """Close the client connection: the only way left to say a body was cut short."""
    if request.transport is not None:
        request.transport.close()
