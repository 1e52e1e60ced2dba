"""Header rules of the proxy: hop-by-hop stripping, ``X-Forwarded-*``, request ids, our marks.

Hop-by-hop headers (RFC 9110 §7.6.1: ``Connection`` and every header it names, ``Keep-Alive``,
``Proxy-*``, ``TE``, ``Trailer``, ``Transfer-Encoding``, ``Upgrade``) describe one connection and
are never forwarded in either direction. ``Host`` becomes the upstream's. ``Content-Encoding`` and
the body are passed untouched, so compressed bodies stay compressed byte for byte.
"""

from __future__ import annotations

import uuid

from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
    }
)
# Never forwarded upstream: aiohttp sets Host from the URL and frames the body itself.
_REQUEST_DROP = HOP_BY_HOP | {"host"}
_WS_HANDSHAKE = frozenset(
    {
        "sec-websocket-key",
        "sec-websocket-version",
        "sec-websocket-extensions",
        "sec-websocket-protocol",
        "sec-websocket-accept",
        "content-length",
    }
)

FEATURE = "X-Banyan-Feature"
BACKEND = "X-Banyan-Backend"
REQUEST_ID = "X-Request-Id"
FALLBACK = "X-Banyan-Fallback"
MAX_REQUEST_ID = 200


def request_id_of(request: web.Request) -> str:
    """The client's ``X-Request-Id`` when it sent a sane one, else a fresh uuid4 hex."""
    given = request.headers.get(REQUEST_ID)
    if given and len(given) <= MAX_REQUEST_ID and given.isprintable():
        return given
    return uuid.uuid4().hex


def _connection_tokens(headers: CIMultiDictProxy[str] | CIMultiDict[str]) -> set[str]:
    tokens: set[str] = set()
    for value in headers.getall("Connection", []):
        tokens.update(t.strip().lower() for t in value.split(",") if t.strip())
    return tokens


def upstream_headers(
    request: web.Request, request_id: str, *, websocket: bool = False
) -> CIMultiDict[str]:
    """Headers to send upstream for ``request``."""
    drop = _REQUEST_DROP | _connection_tokens(request.headers)
    if websocket:
        drop = drop | _WS_HANDSHAKE
    out: CIMultiDict[str] = CIMultiDict()
    for name, value in request.headers.items():
        if name.lower() not in drop:
            out.add(name, value)
    peer = request.remote or ""
    prior = request.headers.get("X-Forwarded-For")
    out["X-Forwarded-For"] = f"{prior}, {peer}" if prior else peer
    out["X-Forwarded-Proto"] = request.headers.get("X-Forwarded-Proto") or request.scheme
    out["X-Forwarded-Host"] = request.headers.get("X-Forwarded-Host") or request.host
    out[REQUEST_ID] = request_id
    return out


def downstream_headers(upstream: CIMultiDictProxy[str]) -> CIMultiDict[str]:
    """Headers of an upstream response as the client should get them."""
    drop = HOP_BY_HOP | _connection_tokens(upstream)
    out: CIMultiDict[str] = CIMultiDict()
    for name, value in upstream.items():
        if name.lower() not in drop:
            out.add(name, value)
    return out


def mark(
    headers: CIMultiDict[str] | CIMultiDictProxy[str] | dict[str, str],
    feature: str,
    backend: str,
    request_id: str,
) -> None:
    """Set the three headers every proxy answer carries."""
    headers[FEATURE] = feature  # type: ignore[index]
    headers[BACKEND] = backend  # type: ignore[index]
    headers[REQUEST_ID] = request_id  # type: ignore[index]
