"""A fault-injecting front for a backend: forwards HTTP and WebSockets, answers 503 on a switch.

The drill points the flag file's ``new`` URL at this front, so every request the proxy sends to the
new backend passes through it. While ``fault`` is set, requests whose path it matches are answered
``503 unavailable`` without reaching the backend (nothing is written), as an overloaded or broken
deployment would; everything else is forwarded untouched. ``hits`` counts the injected answers.
This is the drill's only fake, and it fakes nothing of Banyan: it stands for the network and the
deployment in front of the real new backend.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

import aiohttp
from aiohttp import WSMsgType, web

HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailers",
    "transfer-encoding",
    "upgrade",
    "host",
    "content-length",
}
WS_SKIP = HOP_BY_HOP | {
    "sec-websocket-key",
    "sec-websocket-version",
    "sec-websocket-extensions",
    "sec-websocket-accept",
    "sec-websocket-protocol",
}


class FaultFront:
    def __init__(self, target: str) -> None:
        self.target = target.rstrip("/")
        self.fault: Callable[[str], bool] | None = None
        self.hits = 0
        self.session: aiohttp.ClientSession | None = None
        self.app = web.Application(client_max_size=64 * 1024 * 1024)
        self.app.router.add_route("*", "/{tail:.*}", self.handle)
        self.app.on_startup.append(self._start)
        self.app.on_cleanup.append(self._stop)

    async def _start(self, _: web.Application) -> None:
        self.session = aiohttp.ClientSession(auto_decompress=False)

    async def _stop(self, _: web.Application) -> None:
        if self.session is not None:
            await self.session.close()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if self.fault is not None and self.fault(request.path):
            self.hits += 1
            return web.json_response(
                {"error": {"code": "unavailable", "message": "injected fault"}}, status=503
            )
        if request.headers.get("Upgrade", "").lower() == "websocket":
            return await self._websocket(request)
        return await self._http(request)

    async def _http(self, request: web.Request) -> web.StreamResponse:
        assert self.session is not None
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        body = await request.read()
        async with self.session.request(
            request.method,
            self.target + request.raw_path,
            headers=headers,
            data=body or None,
            allow_redirects=False,
        ) as upstream:
            payload = await upstream.read()
            out = {k: v for k, v in upstream.headers.items() if k.lower() not in HOP_BY_HOP}
            return web.Response(status=upstream.status, headers=out, body=payload)

    async def _websocket(self, request: web.Request) -> web.StreamResponse:
        assert self.session is not None
        headers = {k: v for k, v in request.headers.items() if k.lower() not in WS_SKIP}
        url = "ws" + self.target.removeprefix("http") + request.raw_path
        try:
            upstream = await self.session.ws_connect(url, headers=headers, autoping=False)
        except aiohttp.WSServerHandshakeError as exc:
            return web.Response(status=exc.status, text=exc.message)
        client = web.WebSocketResponse(autoping=False)
        await client.prepare(request)

        async def pump(
            source: aiohttp.ClientWebSocketResponse | web.WebSocketResponse,
            sink: aiohttp.ClientWebSocketResponse | web.WebSocketResponse,
        ) -> None:
            async for message in source:
                if message.type == WSMsgType.TEXT:
                    await sink.send_str(message.data)
                elif message.type == WSMsgType.BINARY:
                    await sink.send_bytes(message.data)
                elif message.type == WSMsgType.PING:
                    await sink.ping(message.data)
                elif message.type == WSMsgType.PONG:
                    await sink.pong(message.data)
            code = source.close_code or 1000
            await sink.close(code=code)

        tasks = [
            asyncio.ensure_future(pump(client, upstream)),
            asyncio.ensure_future(pump(upstream, client)),
        ]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            await upstream.close()
            await client.close()
        return client
