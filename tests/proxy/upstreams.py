"""Test upstreams for the proxy tests: real aiohttp servers that record what they received.

``Recorder`` serves: ``/echo`` (any method; answers what it got), ``/upload`` (hashes a streamed
body without keeping it, after ``?wait=`` seconds), ``/download`` (streams N bytes), ``/sse`` (one
event per ``/ack``, proving that nothing buffers), ``/gzip`` (a compressed body), ``/hop``
(hop-by-hop headers in the answer), ``/slow`` (answers after a delay), ``/status/{code}``, and
WebSockets ``/ws/echo`` (echo, ping, close or vanish on command, subprotocols) and
``/ws/private`` (refuses the upgrade without a token).
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import json
from typing import Any

from aiohttp import WSMsgType, web

from banyan.backends.common.tutor.events import Done, Token
from banyan.backends.common.tutor.socket import TutorHub, serve_tutor
from banyan.backends.common.whiteboard.rooms import RoomManager
from banyan.backends.common.whiteboard.socket import serve_whiteboard
from banyan.backends.common.whiteboard.store import MemoryRoomStore

GZIP_BODY = gzip.compress(json.dumps({"compressed": True, "data": "x" * 500}).encode(), mtime=0)


BLOCK = bytes(range(256)) * 256  # 64 KiB


def pattern_chunks(size: int, step: int = 4 * len(BLOCK)) -> Any:
    """``size`` bytes of a fixed pattern, ``step`` at a time, never all in memory."""
    chunk = BLOCK * (step // len(BLOCK))
    sent = 0
    while sent < size:
        part = chunk[: size - sent]
        sent += len(part)
        yield part


def pattern_digest(size: int) -> str:
    digest = hashlib.sha256()
    for part in pattern_chunks(size):
        digest.update(part)
    return digest.hexdigest()


class Recorder:
    def __init__(self, name: str = "legacy") -> None:
        self.name = name
        self.requests: list[dict[str, Any]] = []
        self.acks = asyncio.Queue[int]()
        self.open_sockets = 0
        self.socket_texts: list[str] = []  # every text message /ws/echo received
        self.delay = 0.0
        self.hang = False
        self.app = web.Application(client_max_size=1024**3)
        r = self.app.router
        r.add_route("*", "/echo{tail:.*}", self.echo)
        r.add_post("/upload", self.upload)
        r.add_get("/download", self.download)
        r.add_get("/sse", self.sse)
        r.add_post("/ack", self.ack)
        r.add_get("/gzip", self.gzip)
        r.add_get("/hop", self.hop)
        r.add_get("/slow", self.slow)
        r.add_get("/status/{code}", self.status)
        r.add_get("/clock", self.clock)
        r.add_get("/ws/echo", self.ws_echo)
        r.add_get("/ws/private", self.ws_private)
        r.add_get("/ws/tutor/{sid}", self.ws_tutor)
        r.add_get("/ws/whiteboard/{room}", self.ws_whiteboard)
        self.rooms = RoomManager(MemoryRoomStore(), grace=0.2, flush_interval=0.01)
        self.answer_suffix = ""
        r.add_route("*", "/{tail:.*}", self.echo)

    async def echo(self, request: web.Request) -> web.Response:
        body = await request.read()
        if self.hang:
            await asyncio.sleep(3600)
        if self.delay:
            await asyncio.sleep(self.delay)
        seen = {
            "backend": self.name,
            "method": request.method,
            "path_qs": request.path_qs,
            "headers": {k.lower(): v for k, v in request.headers.items()},
            "body": body.decode(errors="replace"),
        }
        self.requests.append(seen)
        return web.json_response(seen)

    async def upload(self, request: web.Request) -> web.Response:
        await asyncio.sleep(float(request.query.get("wait", "0")))  # a slow reader, at first
        digest, size = hashlib.sha256(), 0
        async for chunk in request.content.iter_any():
            digest.update(chunk)
            size += len(chunk)
        return web.json_response(
            {
                "sha256": digest.hexdigest(),
                "size": size,
                "chunked": request.headers.get("Transfer-Encoding"),
            }
        )

    async def download(self, request: web.Request) -> web.StreamResponse:
        size = int(request.query.get("size", "1024"))
        response = web.StreamResponse()
        if "length" in request.query:
            response.content_length = size
        await response.prepare(request)
        for part in pattern_chunks(size):
            await response.write(part)
        await response.write_eof()
        return response

    async def sse(self, request: web.Request) -> web.StreamResponse:
        count = int(request.query.get("n", "3"))
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for i in range(count):
            await response.write(f"data: token-{i}\n\n".encode())
            if i < count - 1:
                await asyncio.wait_for(self.acks.get(), 10)
        await response.write_eof()
        return response

    async def ack(self, request: web.Request) -> web.Response:
        self.acks.put_nowait(1)
        return web.json_response({"ok": True})

    async def gzip(self, _: web.Request) -> web.Response:
        return web.Response(
            body=GZIP_BODY, headers={"Content-Encoding": "gzip", "Content-Type": "application/json"}
        )

    async def hop(self, _: web.Request) -> web.Response:
        return web.Response(
            text="hop",
            headers={
                "Connection": "X-Secret",
                "X-Secret": "1",
                "Keep-Alive": "timeout=5",
                "X-Kept": "yes",
            },
        )

    async def slow(self, request: web.Request) -> web.Response:
        await asyncio.sleep(float(request.query.get("s", "5")))
        return web.json_response({"slow": True})

    async def clock(self, _: web.Request) -> web.Response:
        import time

        return web.json_response({"now": time.time_ns(), "value": 1, "backend": "same"})

    async def status(self, request: web.Request) -> web.Response:
        code = int(request.match_info["code"])
        return web.json_response({"status": code}, status=code)

    async def ws_echo(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(protocols=("v1.banyan",), autoping=False)
        await ws.prepare(request)
        self.open_sockets += 1
        try:
            async for message in ws:
                if message.type == WSMsgType.TEXT:
                    self.socket_texts.append(message.data)
                    if message.data.startswith("close:"):
                        _, code, reason = message.data.split(":", 2)
                        await ws.close(code=int(code), message=reason.encode())
                        break
                    if message.data == "drop":  # gone without a close frame, as a crash would
                        assert request.transport is not None
                        request.transport.abort()
                        break
                    if message.data == "whoami":
                        await ws.send_str(
                            json.dumps({"backend": self.name, "protocol": ws.ws_protocol})
                        )
                        continue
                    await ws.send_str("echo:" + message.data)
                elif message.type == WSMsgType.BINARY:
                    await ws.send_bytes(message.data[::-1])
                elif message.type == WSMsgType.PING:
                    await ws.pong(message.data)
        finally:
            self.open_sockets -= 1
        return ws

    async def ws_tutor(self, request: web.Request) -> web.StreamResponse:
        """A tutor socket that answers every ask by echoing it word by word (plus a suffix)."""

        async def runner(user: str, session: str, text: str) -> Any:
            answer = text + self.answer_suffix
            for i, word in enumerate(answer.split()):
                yield Token(("" if i == 0 else " ") + word)
            yield Done({"role": "user", "content": text}, {"role": "assistant", "content": answer})

        return await serve_tutor(
            request,
            user_id="u",
            session_id=request.match_info["sid"],
            runner=runner,
            hub=TutorHub(),
        )

    async def ws_whiteboard(self, request: web.Request) -> web.StreamResponse:
        return await serve_whiteboard(request, self.rooms, request.match_info["room"])

    async def ws_private(self, request: web.Request) -> web.StreamResponse:
        token = request.query.get("token") or request.headers.get("Authorization", "")
        if not token:
            return web.json_response(
                {"error": {"code": "unauthorized", "message": "no"}}, status=401
            )
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.send_str(f"hello {token}")
        await ws.close()
        return ws


def flags_yaml(legacy: str, new: str, features: str, extra: str = "") -> str:
    head = f"version: 1\nbackends:\n  legacy: {legacy}\n  new: {new}\n"
    return f"{head}{extra}features:\n{features}default: legacy\n"
