"""CORS at the edge: the proxy, not the backends, speaks CORS when the flag file has a ``cors``
block.

- A preflight (``OPTIONS`` with ``Origin`` and ``Access-Control-Request-Method``) is answered by
  the proxy itself and never forwarded: ``204`` with the allowed methods, headers and ``max_age``
  for an allowed origin, ``403 cors_origin_not_allowed`` (JSON, no CORS headers) for another.
- Every other answer to an allowed origin gets ``Access-Control-Allow-Origin`` (the origin, or
  ``*``), ``Access-Control-Allow-Credentials`` when configured, ``Access-Control-Expose-Headers``
  naming the proxy's marks (so a page can read ``X-Banyan-Backend``) and ``Vary: Origin`` — the
  backends' answers, streamed ones included, and the errors the proxy makes itself (502/503/504,
  4xx refusals, admin answers) alike, through aiohttp's ``on_response_prepare`` signal.
- ``Access-Control-*`` headers a backend sends are dropped, so an answer looks the same whichever
  backend served it.

Without a ``cors`` block nothing here touches an answer (a backend's own CORS headers pass as
they always did). Requests the proxy cannot even parse (:mod:`banyan.proxy.front`) are answered
before any application code runs and carry no CORS headers.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from banyan.proxy.flags import CorsConfig
from banyan.proxy.forward import error_response
from banyan.proxy.relayed import RelayedResponse

METHODS = "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"
EXPOSED = "X-Banyan-Backend, X-Banyan-Feature, X-Banyan-Fallback, X-Request-Id, Retry-After"
PREFLIGHT_VARY = "Origin, Access-Control-Request-Method, Access-Control-Request-Headers"

CorsSource = Callable[[], CorsConfig | None]


def allowed_origin(cors: CorsConfig, origin: str | None) -> str | None:
    """The ``Access-Control-Allow-Origin`` value for ``origin``, or None when it is not allowed."""
    if not origin:
        return None
    if cors.allow_origins == ("*",):
        return "*"  # the schema refuses '*' with credentials, so '*' is always valid here
    return origin if origin.lower() in cors.allow_origins else None


def is_preflight(request: web.Request) -> bool:
    return (
        request.method == "OPTIONS"
        and "Origin" in request.headers
        and "Access-Control-Request-Method" in request.headers
    )


def preflight(cors: CorsConfig, request: web.Request) -> web.Response:
    """The proxy's own answer to a preflight (the common headers are added on prepare)."""
    if allowed_origin(cors, request.headers.get("Origin")) is None:
        return error_response(
            403,
            "cors_origin_not_allowed",
            "this origin is not in the proxy's cors.allow_origins",
        )
    response = web.Response(status=204)
    response.headers["Access-Control-Allow-Methods"] = METHODS
    if cors.allow_headers == ("*",):
        # a literal '*' would not cover Authorization: name what the browser asked for instead
        asked = request.headers.get("Access-Control-Request-Headers", "").strip()
        if asked:
            response.headers["Access-Control-Allow-Headers"] = asked
    elif cors.allow_headers:
        response.headers["Access-Control-Allow-Headers"] = ", ".join(cors.allow_headers)
    response.headers["Access-Control-Max-Age"] = str(cors.max_age)
    response.headers["Vary"] = PREFLIGHT_VARY
    return response


def response_hook(
    source: CorsSource,
) -> Callable[[web.Request, web.StreamResponse], Awaitable[None]]:
    """An ``on_response_prepare`` handler adding the CORS headers of the flags in force."""

    async def on_prepare(request: web.Request, response: web.StreamResponse) -> None:
        cors = source()
        if cors is None or response.status == 101:
            return
        if isinstance(response, RelayedResponse):
            response.drop_headers(b"access-control-")
        headers = response.headers
        if cors.allow_origins != ("*",) and "Vary" not in headers:
            headers["Vary"] = "Origin"  # the answer depends on the origin: caches must know
        allow = allowed_origin(cors, request.headers.get("Origin"))
        if allow is None:
            return
        headers["Access-Control-Allow-Origin"] = allow
        if cors.allow_credentials:
            headers["Access-Control-Allow-Credentials"] = "true"
        if not is_preflight(request):
            headers["Access-Control-Expose-Headers"] = EXPOSED

    return on_prepare
