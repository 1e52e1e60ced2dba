"""The proxy's server side: aiohttp's HTTP server set up as a forwarding proxy needs it.

- Request bodies are left as they came: no ``Content-Encoding`` decoding (a gzip body is forwarded
  gzip, byte for byte, with its header).
- Request heads are held to the proxy's :class:`~banyan.proxy.limits.Limits`.
- A request aiohttp cannot parse never reaches the proxy's handler; aiohttp would answer it with
  plain text and log a traceback quoting the request's bytes, credentials included. Here it gets
  ``400`` (malformed), ``414`` (target over the limit) or ``431`` (headers over a limit) with the
  proxy's JSON error body naming the limit, and one log line without the request's bytes.

:class:`ProxyRunner` is what :func:`banyan.serving.start_site` uses for the proxy's application
(``app[RUNNER]``).
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import BadHttpMessage, HttpProcessingError, LineTooLong
from aiohttp.web_protocol import RequestHandler

from banyan.client_timeouts import GuardedAppRunner, GuardedServer, SlowClientGuard
from banyan.logs import get_logger
from banyan.proxy.limits import Limits, describe

log = get_logger("banyan.proxy.front")


def refusal(status: int, code: str, message: str) -> web.Response:
    response = web.Response(
        status=status,
        body=json.dumps({"error": {"code": code, "message": message}}).encode(),
        content_type="application/json",
    )
    response.force_close()
    return response


def classify(exc: BaseException | None, limits: Limits, field_size: int) -> tuple[int, str, str]:
    """(status, code, message) for a request aiohttp's parser refused."""
    if isinstance(exc, LineTooLong):
        if exc.args[1] == field_size:
            limit = describe("max_field_bytes", limits.max_field_bytes)
            return 431, "request_header_too_large", f"a request header line is over {limit}"
        return (
            414,
            "request_target_too_long",
            f"the request target is over {describe('max_target_bytes', limits.max_target_bytes)}",
        )
    if isinstance(exc, BadHttpMessage) and "Too many headers" in str(exc.message):
        return (
            431,
            "too_many_request_headers",
            f"the request has over {describe('max_headers', limits.max_headers)} header lines",
        )
    return 400, "bad_request", f"not a valid HTTP/1.1 request: {reason_of(exc)}"


def reason_of(exc: BaseException | None) -> str:
    """What aiohttp found wrong, without the request bytes it quotes after the first line."""
    text = str(exc.message or "") if isinstance(exc, HttpProcessingError) else str(exc or "")
    first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    return first.rstrip(":")[:200]


class ProxyRequestHandler(SlowClientGuard):
    """aiohttp's connection handler with the proxy's answers to requests it cannot parse (and,
    from :class:`~banyan.client_timeouts.SlowClientGuard`, the client read timeouts)."""

    __slots__ = ()

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        limits: Limits = getattr(self._manager, "limits", Limits())
        if status == 400:
            status, code, text = classify(exc, limits, self.max_field_size)
            log.warning(
                "bad_request",
                status=status,
                code=code,
                reason=reason_of(exc),
                client=request.remote,
            )
        elif status == 504:
            code, text = "gateway_timeout", "the proxy timed out handling the request"
            log.warning("handler_timeout", client=request.remote)
        else:
            code, text = "internal_error", "the proxy failed to handle the request"
            log.error("handler_failed", client=request.remote, exc_info=exc)
        if request.writer.output_size > 0:
            raise ConnectionError("the answer had started: the connection can only be closed")
        return refusal(status, code, text)


class ProxyServer(GuardedServer):
    """aiohttp's low-level server making :class:`ProxyRequestHandler` connections."""

    limits: Limits

    def __call__(self) -> RequestHandler:
        return ProxyRequestHandler(self, loop=self._loop, **self._kwargs)


class ProxyRunner(GuardedAppRunner):
    """An application runner whose server is a :class:`ProxyServer` held to ``limits`` (and to
    the client ``timeouts`` every Banyan server has)."""

    def __init__(self, app: web.Application, *, limits: Limits, **kwargs: Any) -> None:
        # aiohttp tells a long target from a long header line by the limit it reports: keep the
        # two apart (a target one byte over an equal limit is refused by the proxy's handler)
        same = limits.max_target_bytes == limits.max_field_bytes
        kwargs.update(
            auto_decompress=False,
            max_line_size=limits.max_target_bytes + (1 if same else 0),
            max_field_size=limits.max_field_bytes,
            max_headers=limits.max_headers,
        )
        super().__init__(app, **kwargs)
        self.limits = limits

    async def setup(self) -> None:
        await super().setup()
        server = self.server
        assert server is not None
        server.__class__ = ProxyServer
        server.limits = self.limits  # type: ignore[attr-defined]
