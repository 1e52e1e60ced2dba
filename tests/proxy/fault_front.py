"""A fault front for parity tests: an HTTP front of a real backend that alters chosen answers.

``FaultFront(upstream, faults)`` relays every request to ``upstream`` unchanged, except that an
answer to a request matching a :class:`Fault` (method and a path regex) is rewritten: its status
replaced, a header set, or JSON fields changed, added or removed at simple paths (``$.a.b``,
``$.items[0].c``). WebSockets are relayed too; a fault with ``method="WS"`` rewrites the JSON text
frames of type ``frame_type`` the backend sends on matching paths, or with a ``status`` refuses the
upgrade with it. It stands in for a candidate
backend with known differences, so a test can check that shadow mode reports each one at its
exact place and nothing else. Injected faults only: it lives in tests/, never in the product.
"""

from __future__ import annotations

import asyncio
import json
import re
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

HOP = frozenset(
    {"connection", "keep-alive", "transfer-encoding", "content-length", "host", "upgrade"}
)
REMOVE = object()  # a Fault.fields value: delete the field


@dataclass(frozen=True)
class Fault:
    method: str
    path: str  # regex, fully matched against the request path (no query)
    status: int | None = None
    headers: dict[str, str] = field(default_factory=dict)
    fields: dict[str, Any] = field(default_factory=dict)  # "$.a[0].b" -> value | REMOVE
    frame_type: str | None = None  # method "WS": the server frames ({"type": ...}) rewritten
    delay: float = 0.0  # seconds a matching request is held before it is relayed

    def matches(self, method: str, path: str) -> bool:
        return method == self.method and re.fullmatch(self.path, path) is not None


def _steps(path: str) -> list[str | int]:
    steps: list[str | int] = []
    for name, index in re.findall(r"\.([A-Za-z_][A-Za-z0-9_]*)|\[(\d+)\]", path.removeprefix("$")):
        steps.append(name if name else int(index))
    return steps


def set_field(document: Any, path: str, value: Any) -> None:
    """Set (or, with :data:`REMOVE`, delete) the field at ``path`` of ``document``."""
    *parents, last = _steps(path)
    node = document
    for step in parents:
        node = node[step]
    if value is REMOVE:
        del node[last]
    else:
        node[last] = value


class FaultFront:
    def __init__(self, upstream: str, faults: list[Fault]) -> None:
        self.upstream = upstream.rstrip("/")
        self.faults = faults
        self.applied: list[tuple[str, str]] = []  # (method, path) of each altered answer
        self.relayed: list[tuple[str, str]] = []  # (method, path) in the order the backend got them
        self.session: aiohttp.ClientSession | None = None
        self.app = web.Application()
        self.app.router.add_route("*", "/{tail:.*}", self.relay)
        self.app.on_cleanup.append(self._close)

    async def _close(self, _: web.Application) -> None:
        if self.session is not None:
            await self.session.close()

    async def relay(self, request: web.Request) -> web.StreamResponse:
        if self.session is None:
            self.session = aiohttp.ClientSession(auto_decompress=False)
        if request.headers.get("Upgrade", "").lower() == "websocket":
            return await self.relay_socket(request)
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP}
        fault = next((f for f in self.faults if f.matches(request.method, request.path)), None)
        body_in = await request.read()
        if fault is not None and fault.delay:
            await asyncio.sleep(fault.delay)
        self.relayed.append((request.method, request.path))
        async with self.session.request(
            request.method,
            self.upstream + request.path_qs,
            headers=headers,
            data=body_in or None,
            allow_redirects=False,
        ) as answer:
            status, body = answer.status, await answer.read()
            out = {k: v for k, v in answer.headers.items() if k.lower() not in HOP}
        if fault is not None:
            self.applied.append((request.method, request.path))
            status = fault.status or status
            out.update(fault.headers)
            if fault.fields:
                document = json.loads(body)
                for path, value in fault.fields.items():
                    set_field(document, path, value)
                body = json.dumps(document).encode()
        return web.Response(status=status, headers=out, body=body)

    async def relay_socket(self, request: web.Request) -> web.StreamResponse:
        assert self.session is not None
        fault = next((f for f in self.faults if f.matches("WS", request.path)), None)
        if fault is not None and fault.status is not None:
            self.applied.append(("WS", request.path))
            return web.json_response({"error": {"code": "injected"}}, status=fault.status)
        headers = {k: v for k, v in request.headers.items() if k.lower() == "authorization"}
        client = web.WebSocketResponse()
        await client.prepare(request)
        async with self.session.ws_connect(self.upstream + request.path_qs, headers=headers) as up:

            async def to_upstream() -> None:
                async for message in client:
                    if message.type == aiohttp.WSMsgType.TEXT:
                        await up.send_str(message.data)
                    elif message.type == aiohttp.WSMsgType.BINARY:
                        await up.send_bytes(message.data)
                await up.close()

            pump = asyncio.ensure_future(to_upstream())
            async for message in up:
                if message.type == aiohttp.WSMsgType.TEXT:
                    await client.send_str(self._rewrite(fault, request.path, message.data))
                elif message.type == aiohttp.WSMsgType.BINARY:
                    await client.send_bytes(message.data)
            pump.cancel()
        await client.close()
        return client

    def _rewrite(self, fault: Fault | None, path: str, text: str) -> str:
        if fault is None:
            return text
        frame = json.loads(text)
        if not isinstance(frame, dict) or frame.get("type") != fault.frame_type:
            return text
        self.applied.append(("WS", path))
        for where, value in fault.fields.items():
            set_field(frame, where, value)
        return json.dumps(frame)
