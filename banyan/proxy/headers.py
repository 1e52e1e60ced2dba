"""Header rules of the proxy: what a forwarded request and a relayed answer carry, and our marks.

A forwarded request is the client's, byte for byte (method, target in origin or absolute form,
every header line in order with its repetitions, the body), changed only where a proxy must:

- hop-by-hop headers (RFC 9110 §7.6.1: ``Connection`` and every header it names, ``Keep-Alive``,
  ``Proxy-*``, ``TE``, ``Trailer``, ``Transfer-Encoding``, ``Upgrade``) describe one connection and
  are never forwarded in either direction (a chunked body is re-framed as chunked);
- ``X-Forwarded-For`` gains the client's address; ``X-Forwarded-Proto`` and ``X-Forwarded-Host``
  are added when the client did not send them; ``X-Request-Id`` is added (or replaces one that is
  not sane);
- ``Host`` follows the backend's ``host`` policy: ``preserve`` (default) sends the client's,
  ``backend`` the backend URL's authority;
- a mirrored ``POST`` without ``Idempotency-Key`` gains one (``banyan/proxy/app.py``);
- a client's ``X-Banyan-Stamp`` is dropped (only the proxy stamps writes); a write gains the
  proxy's own (:mod:`banyan.proxy.stamping`).

Nothing else is added: no ``Accept``, ``User-Agent``, ``Content-Length: 0`` or ``Content-Type``.
A relayed answer loses its hop-by-hop headers, gains our three marks (``X-Banyan-Feature``,
``X-Banyan-Backend``, ``X-Request-Id``) and a ``Date`` only when the upstream sent none.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterable

from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy, MultiDict

from banyan.errors import RequestOverLimit
from banyan.proxy.limits import Limits, describe
from banyan.proxy.upstream.origin import Origin

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
_HOP = frozenset(name.encode() for name in HOP_BY_HOP)
STAMP = "x-banyan-stamp"  # the proxy's own signed header (banyan/stamps.py); never a client's
_STAMP = STAMP.encode()
# Never forwarded upstream by the WebSocket bridge: aiohttp sets Host and frames the handshake.
_REQUEST_DROP = HOP_BY_HOP | {"host", STAMP}
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

# -- request ids -------------------------------------------------------------------------------

_ids = itertools.count(1)
_prefix = [os.urandom(8).hex()]


def _reseed() -> None:  # a forked worker must not repeat its parent's ids
    _prefix[0] = os.urandom(8).hex()


os.register_at_fork(after_in_child=_reseed)


def new_request_id() -> str:
    """32 hex characters, unique: a random per-process prefix and a counter (no uuid4 per
    request: that costs a system call for randomness)."""
    return f"{_prefix[0]}{next(_ids):016x}"


def _sane(given: str | bytes) -> bool:
    if not given or len(given) > MAX_REQUEST_ID:
        return False
    text = given.decode("latin-1") if isinstance(given, bytes) else given
    return text.isprintable()


def request_id_of(request: web.Request) -> str:
    """The client's ``X-Request-Id`` when it sent a sane one, else a fresh one."""
    given = request.headers.get(REQUEST_ID)
    return given if given is not None and _sane(given) else new_request_id()


# -- the forwarded request ---------------------------------------------------------------------


class Outbound:
    """The request every backend is sent: one head per backend differs only in the ``Host`` line
    (policy ``backend``) and a backend URL's path prefix. ``before`` and ``after`` are the header
    lines around the client's ``Host`` line, already serialized."""

    __slots__ = ("after", "before", "chunked", "host", "host_name", "method", "target")

    def __init__(
        self,
        method: str,
        target: bytes,
        before: bytes,
        host_name: bytes,
        host: bytes | None,
        after: bytes,
        chunked: bool = False,
    ) -> None:
        self.chunked = chunked  # the body is framed chunked, as the client's was
        self.method = method
        self.target = target
        self.before = before
        self.host_name = host_name
        self.host = host
        self.after = after

    def add(self, name: str, value: str) -> None:
        self.after += f"{name}: {value}\r\n".encode("latin-1")

    def head(self, origin: Origin, host_policy: str = "preserve", extra: bytes = b"") -> bytes:
        """The serialized request head for a backend at ``origin``; ``extra``: serialized header
        lines for this backend only (its write stamp)."""
        host = self.host if self.host is not None and host_policy != "backend" else None
        return b"%s %s HTTP/1.1\r\n%s%s: %s\r\n%s%s\r\n" % (
            self.method.encode("ascii"),
            origin.target(self.target),
            self.before,
            self.host_name,
            origin.authority if host is None else host,
            self.after,
            extra,
        )

    def mapping(self) -> CIMultiDict[str]:
        """The forwarded headers but ``Host``, as text: for parity records and the mirror
        queue (which sends with its own client, to its own host)."""
        out: CIMultiDict[str] = CIMultiDict()
        for block in (self.before, self.after):
            for line in block.split(b"\r\n"):
                name, sep, value = line.partition(b": ")
                if sep:
                    out.add(name.decode("latin-1"), value.decode("latin-1"))
        return out


def _line(name: bytes, value: bytes) -> bytes:
    return name + b": " + value + b"\r\n"


def outbound_of(request: web.Request, request_id: str, limits: Limits) -> Outbound:
    """The request to forward for ``request`` (raises :class:`RequestOverLimit` over a limit)."""
    raw = request.raw_headers
    dropped = _dropped_names(raw, limits)
    before: list[bytes] = []
    after: list[bytes] = []
    into = before
    host_name, host = b"Host", None
    prior_for: list[bytes] = []
    has_proto = has_host = has_id = chunked = False
    for name, value in raw:
        lowered = name.lower()
        if lowered in dropped or lowered.startswith(b"proxy-"):
            if lowered == b"transfer-encoding" and b"chunked" in value.lower():
                chunked = True  # the body is re-framed chunk by chunk: say so again
            continue
        if lowered == _STAMP:
            continue
        if lowered == b"host":
            if host is None:
                host_name, host, into = name, value, after
            continue
        if lowered == b"x-forwarded-for":
            prior_for.append(value)
            continue
        if lowered == b"x-request-id":
            if has_id or value.decode("latin-1") != request_id:
                continue  # not sane (replaced below) or repeated
            has_id = True
        elif lowered == b"x-forwarded-proto":
            has_proto = True
        elif lowered == b"x-forwarded-host":
            has_host = True
        into.append(_line(name, value))
    if chunked:
        into.append(b"Transfer-Encoding: chunked\r\n")
    peer = (request.remote or "").encode("latin-1")
    after.append(_line(b"X-Forwarded-For", b", ".join([*prior_for, peer]) if prior_for else peer))
    if not has_proto:
        after.append(_line(b"X-Forwarded-Proto", request.scheme.encode("latin-1")))
    if not has_host:
        after.append(_line(b"X-Forwarded-Host", (host or request.host.encode("latin-1"))))
    if not has_id:
        after.append(_line(b"X-Request-Id", request_id.encode("latin-1")))
    target = request.raw_path.encode("utf-8", "surrogateescape")
    return Outbound(
        request.method, target, b"".join(before), host_name, host, b"".join(after), chunked
    )


def _dropped_names(raw: Iterable[tuple[bytes, bytes]], limits: Limits) -> frozenset[bytes]:
    """The lower-case names not forwarded: hop-by-hop ones and those ``Connection`` names;
    :class:`RequestOverLimit` (431) when the headers are over ``max_header_bytes``."""
    dropped = _HOP
    total = 0
    for name, value in raw:
        total += len(name) + len(value) + 4
        if len(name) == 10 and name.lower() == b"connection":
            dropped = dropped | {t.strip().lower() for t in value.split(b",")}
    if total > limits.max_header_bytes:
        raise RequestOverLimit(
            431,
            "request_headers_too_large",
            f"the request's headers ({total} bytes) are over "
            f"{describe('max_header_bytes', limits.max_header_bytes)}",
        )
    return dropped


def upstream_headers(
    request: web.Request, request_id: str, *, websocket: bool = False
) -> CIMultiDict[str]:
    """Headers to send upstream for ``request`` through an aiohttp client (the WebSocket
    bridge); plain HTTP requests are forwarded by :func:`outbound_of`."""
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


def _connection_tokens(headers: CIMultiDictProxy[str] | CIMultiDict[str]) -> set[str]:
    tokens: set[str] = set()
    for value in headers.getall("Connection", []):
        tokens.update(t.strip().lower() for t in value.split(",") if t.strip())
    return tokens


# -- the relayed answer ------------------------------------------------------------------------

_OURS = frozenset({b"x-banyan-feature", b"x-banyan-backend", b"x-request-id", b"x-banyan-fallback"})


class AnswerHead:
    """An upstream answer's header lines as the client gets them (serialized), and what the
    framing needs to know of them."""

    __slots__ = ("content_length", "has_date", "lines")

    def __init__(self, lines: bytes, has_date: bool, content_length: int | None) -> None:
        self.lines = lines
        self.has_date = has_date
        self.content_length = content_length


def answer_head(
    raw: list[tuple[bytes, bytes]], feature: str, backend: str, request_id: str
) -> AnswerHead:
    """Relay ``raw`` (the upstream's header lines) without hop-by-hop headers, with our marks."""
    dropped = _HOP
    for name, value in raw:
        if len(name) == 10 and name.lower() == b"connection":
            dropped = dropped | {t.strip().lower() for t in value.split(b",")}
    parts: list[bytes] = []
    has_date = False
    length: int | None = None
    for name, value in raw:
        lowered = name.lower()
        if lowered in dropped or lowered in _OURS or lowered.startswith(b"proxy-"):
            continue
        if lowered == b"date":
            has_date = True
        elif lowered == b"content-length" and length is None:
            length = int(value)
        parts.append(name + b": " + value + b"\r\n")
    parts.append(marks(feature, backend, request_id))
    return AnswerHead(b"".join(parts), has_date, length)


def marks(feature: str, backend: str, request_id: str) -> bytes:
    return (
        f"X-Banyan-Feature: {feature}\r\nX-Banyan-Backend: {backend}\r\n"
        f"X-Request-Id: {request_id}\r\n"
    ).encode("latin-1")


def lowered(raw: list[tuple[bytes, bytes]]) -> MultiDict[str]:
    """Raw header lines as a text multidict with lower-cased names (every repetition kept): an
    answer as parity compares it."""
    return MultiDict([(n.decode("latin-1").lower(), v.decode("latin-1")) for n, v in raw])


def downstream_headers(upstream: CIMultiDictProxy[str] | CIMultiDict[str]) -> CIMultiDict[str]:
    """Headers of an upstream answer (as text) as the client should get them."""
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
