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

from banyan.proxy.forward import error_response
from banyan.proxy.headers import mark

MAX_MESSAGE_BYTES = 16 * 1024 * 1024


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

    async def close(self, code: int, reason: str) -> None:
        """Close both sides (used on flips with the ``reconnect`` policy and at shutdown)."""
        message = reason.encode()
        await asyncio.gather(
            self.client.close(code=code, message=message),
            self.upstream.close(code=code, message=message),
            return_exceptions=True,
        )


class BridgeRegistry:
    def __init__(self) -> None:
        self._open: set[Bridge] = set()

    def __len__(self) -> int:
        return len(self._open)

    def add(self, bridge: Bridge) -> None:
        self._open.add(bridge)

    def discard(self, bridge: Bridge) -> None:
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
) -> tuple[web.StreamResponse, Bridge | None]:
    """Open the upstream socket; answer the upgrade (or the refusal) to the client."""
    try:
        upstream = await session.ws_connect(
            url,
            headers=headers,
            protocols=offered_protocols(request),
            autoping=False,
            autoclose=False,
            max_msg_size=MAX_MESSAGE_BYTES,
            timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=10.0),
            compress=0,
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
                tap(message)
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


async def run_bridge(
    bridge: Bridge,
    registry: BridgeRegistry,
    *,
    tap: FrameTap | None = None,
    on_close: Callable[[], Awaitable[None]] | None = None,
) -> None:
    """Pump both ways until one side ends, then close the other and clean up."""
    registry.add(bridge)
    client, upstream = bridge.client, bridge.upstream
    to_upstream = asyncio.ensure_future(_pump(client, upstream, tap.from_client if tap else None))
    to_client = asyncio.ensure_future(_pump(upstream, client, tap.from_upstream if tap else None))
    try:
        done, _ = await asyncio.wait({to_upstream, to_client}, return_when=asyncio.FIRST_COMPLETED)
        first = done.pop()
        try:
            closed_with = first.result()
        except (ConnectionError, RuntimeError, aiohttp.ClientError):
            closed_with = None
        code, reason = closed_with or (WSCloseCode.GOING_AWAY, "peer went away")
        other_side = upstream if first is to_upstream else client
        this_side = client if first is to_upstream else upstream
        with contextlib.suppress(ConnectionError, RuntimeError, aiohttp.ClientError):
            await other_side.close(code=code, message=reason.encode())
        with contextlib.suppress(ConnectionError, RuntimeError, aiohttp.ClientError):
            await this_side.close(code=code, message=reason.encode())
    finally:
        for task in (to_upstream, to_client):
            task.cancel()
        for task in (to_upstream, to_client):
            with contextlib.suppress(
                asyncio.CancelledError, ConnectionError, RuntimeError, aiohttp.ClientError
            ):
                await task
        with contextlib.suppress(ConnectionError, RuntimeError, aiohttp.ClientError):
            await upstream.close()
        registry.discard(bridge)
        if tap is not None:
            await tap.close()
        if on_close is not None:
            await on_close()
