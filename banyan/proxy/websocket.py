"""The WebSocket bridge: one client socket joined to one upstream socket.

The upstream socket is opened first, with the client's auth (header, cookie or ``?token=``) and
offered subprotocols, so an upstream refusal (401, 403, 404...) reaches the client as that HTTP
status instead of a 101. Then two pumps copy frames both ways as they come — text, binary, ping,
pong — and a close from either side is passed on with its code and reason. When either side goes
away, the other is closed and both pumps are awaited: no task or socket outlives the bridge.

Open bridges are tracked per feature so a flag flip with ``websocket: reconnect`` can close them
with 1012 (service restart), telling clients to reconnect to the new choice.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Protocol

import aiohttp
from aiohttp import WSCloseCode, WSMessage, WSMsgType, web
from multidict import CIMultiDict

from banyan.logs import get_logger
from banyan.proxy.forward import error_response
from banyan.proxy.headers import mark

MAX_MESSAGE_BYTES = 16 * 1024 * 1024
CLOSE_WAIT = 30.0  # seconds a closing bridge waits for its second pump (each close waits <= 10 s)

log = get_logger("proxy")


class FrameTap(Protocol):
    """Sees every data frame crossing a bridge (used by WebSocket shadowing)."""

    def from_client(self, message: WSMessage) -> None: ...

    def from_upstream(self, message: WSMessage) -> None: ...

    async def close(self) -> None: ...


class Bridge:
    def __init__(
        self,
        feature: str,
        backend: str,
        client: web.WebSocketResponse,
        upstream: aiohttp.ClientWebSocketResponse,
    ) -> None:
        self.feature = feature
        self.backend = backend
        self.client = client
        self.upstream = upstream
        self.ended_by: str | None = None  # "client" or "upstream": the side that ended first

    async def close(self, code: int, reason: str) -> None:
        """Close both sides (used on flips with the ``reconnect`` policy and at shutdown)."""
        message = reason.encode()
        await asyncio.gather(
            self.client.close(code=code, message=message),
            self.upstream.close(code=code, message=message),
            return_exceptions=True,
        )


class Link(Protocol):
    """An open socket through the proxy: a :class:`Bridge`, or a tunnel
    (:mod:`banyan.proxy.tunnel`)."""

    feature: str

    async def close(self, code: int, reason: str) -> None: ...


class BridgeRegistry:
    """Open sockets by feature (flips with ``websocket: reconnect`` and shutdown close them)."""

    def __init__(self) -> None:
        self._open: set[Link] = set()

    def __len__(self) -> int:
        return len(self._open)

    def add(self, bridge: Link) -> None:
        self._open.add(bridge)

    def discard(self, bridge: Link) -> None:
        self._open.discard(bridge)

    def count(self, feature: str) -> int:
        return sum(1 for b in self._open if b.feature == feature)

    async def close_feature(
        self, feature: str, code: int = 1012, reason: str = "flag changed"
    ) -> int:
        chosen = [b for b in self._open if b.feature == feature]
        await asyncio.gather(*(b.close(code, reason) for b in chosen))
        return len(chosen)

    async def close_all(
        self, code: int = WSCloseCode.GOING_AWAY, reason: str = "proxy shutting down"
    ) -> None:
        await asyncio.gather(*(b.close(code, reason) for b in list(self._open)))


def offered_protocols(request: web.Request) -> tuple[str, ...]:
    raw = request.headers.get("Sec-WebSocket-Protocol", "")
    return tuple(p.strip() for p in raw.split(",") if p.strip())


async def open_bridge(
    request: web.Request,
    session: aiohttp.ClientSession,
    url: str,
    headers: CIMultiDict[str],
    *,
    feature: str,
    backend: str,
    request_id: str,
    timeout: float,
) -> tuple[web.StreamResponse, Bridge | None]:
    """Open the upstream socket (its handshake within ``timeout``); answer the upgrade (or the
    refusal) to the client."""
    try:
        upstream = await asyncio.wait_for(
            session.ws_connect(
                url,
                headers=headers,
                protocols=offered_protocols(request),
                autoping=False,
                autoclose=False,
                max_msg_size=MAX_MESSAGE_BYTES,
                timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=10.0),
                compress=0,
            ),
            timeout,
        )
    except aiohttp.WSServerHandshakeError as exc:
        status = exc.status if 400 <= exc.status < 600 else 502
        refusal = error_response(
            status,
            {401: "unauthorized", 403: "forbidden", 404: "not_found"}.get(
                status, "upgrade_refused"
            ),
            f"{backend} backend refused the WebSocket upgrade ({exc.status})",
        )
        mark(refusal.headers, feature, backend, request_id)
        return refusal, None
    except (aiohttp.ClientConnectorError, aiohttp.ClientOSError) as exc:
        refusal = error_response(502, "bad_gateway", f"{backend} backend unavailable ({exc})")
        mark(refusal.headers, feature, backend, request_id)
        return refusal, None
    except TimeoutError:
        refusal = error_response(504, "gateway_timeout", f"{backend} backend timed out")
        mark(refusal.headers, feature, backend, request_id)
        return refusal, None
    client = web.WebSocketResponse(
        protocols=(upstream.protocol,) if upstream.protocol else (),
        autoping=False,
        autoclose=False,
        max_msg_size=MAX_MESSAGE_BYTES,
        compress=False,
    )
    mark(client.headers, feature, backend, request_id)
    try:
        await client.prepare(request)
    except (ConnectionError, RuntimeError):
        await upstream.close()
        raise
    return client, Bridge(feature, backend, client, upstream)


async def _pump(
    source: web.WebSocketResponse | aiohttp.ClientWebSocketResponse,
    sink: web.WebSocketResponse | aiohttp.ClientWebSocketResponse,
    tap: Callable[[WSMessage], None] | None,
) -> tuple[int, str] | None:
    """Copy frames until ``source`` closes; return the close code and reason it sent, if any."""
    while True:
        message = await source.receive()
        kind = message.type
        if kind in (WSMsgType.TEXT, WSMsgType.BINARY):
            if tap is not None:
                try:
                    tap(message)
                except Exception:  # comparing is never worth the user's socket
                    log.exception("socket_tap_failed")
                    tap = None
            if sink.closed:
                return None
            if kind == WSMsgType.TEXT:
                await sink.send_str(message.data)
            else:
                await sink.send_bytes(message.data)
        elif kind == WSMsgType.PING:
            await sink.ping(message.data)
        elif kind == WSMsgType.PONG:
            await sink.pong(message.data)
        elif kind == WSMsgType.CLOSE:
            return int(message.data or WSCloseCode.OK), str(message.extra or "")
        else:  # CLOSING, CLOSED, ERROR
            return None


_PUMP_ERRORS = (ConnectionError, RuntimeError, aiohttp.ClientError)


def _close_args(closed_with: tuple[int, str] | None) -> tuple[int, bytes]:
    code, reason = closed_with or (WSCloseCode.GOING_AWAY, "peer went away")
    return code, reason.encode()


async def _upstream_to_client(bridge: Bridge, tap: Callable[[WSMessage], None] | None) -> None:
    """Copy the upstream's frames to the client; if the upstream ends first, close the client with
    its code (which also ends the client-side pump), then the upstream."""
    try:
        closed_with = await _pump(bridge.upstream, bridge.client, tap)
    except _PUMP_ERRORS:
        closed_with = None
    if bridge.ended_by is not None:  # the client ended first; the bridge is closing both sides
        return
    bridge.ended_by = "upstream"
    code, reason = _close_args(closed_with)
    with contextlib.suppress(*_PUMP_ERRORS):
        await bridge.client.close(code=code, message=reason)
    with contextlib.suppress(*_PUMP_ERRORS):
        await bridge.upstream.close(code=code, message=reason)


async def run_bridge(
    bridge: Bridge,
    registry: BridgeRegistry,
    *,
    tap: FrameTap | None = None,
    on_close: Callable[[], Awaitable[None]] | None = None,
) -> None:
    """Pump both ways until one side ends, then close the other and clean up.

    The client-to-upstream pump runs in the caller's task and only the other one in a task of its
    own: an open socket costs one task less (memory per socket is what bounds a proxy holding
    thousands). Whichever side ends first closes the other with its code; closing a socket wakes
    the pump reading it."""
    registry.add(bridge)
    client, upstream = bridge.client, bridge.upstream
    to_client = asyncio.ensure_future(
        _upstream_to_client(bridge, tap.from_upstream if tap else None)
    )
    try:
        try:
            closed_with = await _pump(client, upstream, tap.from_client if tap else None)
        except _PUMP_ERRORS:
            closed_with = None
        if bridge.ended_by is None:
            bridge.ended_by = "client"
            code, reason = _close_args(closed_with)
            with contextlib.suppress(*_PUMP_ERRORS):
                await upstream.close(code=code, message=reason)
            with contextlib.suppress(*_PUMP_ERRORS):
                await client.close(code=code, message=reason)
        # it is closing the client (the upstream ended) or sees the upstream closed: let it end
        await asyncio.wait({to_client}, timeout=CLOSE_WAIT)
    finally:
        to_client.cancel()
        with contextlib.suppress(asyncio.CancelledError, *_PUMP_ERRORS):
            await to_client
        with contextlib.suppress(*_PUMP_ERRORS):
            await upstream.close()
        registry.discard(bridge)
        if tap is not None:
            await tap.close()
        if on_close is not None:
            await on_close()
