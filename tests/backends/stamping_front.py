"""A stand-in for the proxy in front of both backends, stamping and mirroring as the proxy will.

Every write goes to the primary backend with a ``primary`` stamp, then (serially) to the other
backend with the same body, the same ``Idempotency-Key`` (one is added to a POST without one, as
the proxy does), the same ``X-Request-Id`` and a ``mirror`` stamp of the same time acting for the
request's user — at once, or later (``defer``: a mirror queue still holding it). A tutor turn over
the socket is mirrored as two message appends keyed ``ids.turn_key(session, seq)``, stamped with
the stored messages' time; whiteboard edits by pushing the editor's document to the other store
(what the proxy's board mirror does). Reads go to the primary. ``flip()`` swaps the backends, as a
flag change does.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import httpx
import jwt
from pycrdt import Doc

from banyan import stamps
from banyan.backends.common import ids
from banyan.backends.common.clock import parse_iso, wall_ms
from banyan.backends.common.whiteboard.client import WhiteboardClient


def sub_of(token: str | None) -> str | None:
    """The JWT ``sub`` of a token, unverified (the proxy reads it the same way)."""
    if token is None:
        return None
    claims = jwt.decode(token, options={"verify_signature": False})
    return str(claims["sub"])


@dataclass(slots=True)
class Copy:
    """A write on its way to the other store."""

    backend: str
    method: str
    target: str
    headers: dict[str, str]
    body: bytes
    stamp: str


@dataclass
class StampingFront:
    http: httpx.AsyncClient
    urls: dict[str, str]  # backend name -> base URL
    secret: str
    primary: str = "legacy"
    queued: list[Copy] = field(default_factory=list)
    delivered: list[httpx.Response] = field(default_factory=list)

    @property
    def other(self) -> str:
        return "new" if self.primary == "legacy" else "legacy"

    def flip(self) -> None:
        self.primary = self.other

    async def read(self, target: str, token: str) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"}
        return await self.http.get(self.urls[self.primary] + target, headers=headers)

    async def write(
        self,
        method: str,
        target: str,
        *,
        token: str | None = None,
        body: Any = None,
        content: bytes | None = None,
        content_type: str = "application/json",
        key: str | None = None,
        defer: bool = False,
    ) -> httpx.Response:
        """Send a write to the primary; when it succeeds, mirror it to the other store."""
        headers = {"X-Request-Id": uuid.uuid4().hex, "Content-Type": content_type}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        if key is None and method == "POST":
            key = uuid.uuid4().hex
        if key is not None:
            headers["Idempotency-Key"] = key
        raw = content if content is not None else b"" if body is None else json.dumps(body).encode()
        ms = wall_ms()
        answer = await self._send(self.primary, method, target, headers, raw, ms=ms, mirror=False)
        if answer.is_success:
            stamp = self._stamp(method, target, headers, ms, mirror=True, user=sub_of(token))
            copy = Copy(self.other, method, target, headers, raw, stamp)
            if defer:
                self.queued.append(copy)
            else:
                await self.deliver_one(copy)
        return answer

    async def deliver(self) -> list[httpx.Response]:
        """Deliver the deferred copies in order (the mirror queue catching up)."""
        copies, self.queued = self.queued, []
        return [await self.deliver_one(copy) for copy in copies]

    async def deliver_one(self, copy: Copy) -> httpx.Response:
        headers = {**copy.headers, stamps.HEADER: copy.stamp}
        answer = await self.http.request(
            copy.method, self.urls[copy.backend] + copy.target, headers=headers, content=copy.body
        )
        self.delivered.append(answer)
        return answer

    def _stamp(
        self,
        method: str,
        target: str,
        headers: dict[str, str],
        ms: int,
        *,
        mirror: bool,
        user: str | None = None,
    ) -> str:
        key = stamps.binding_key(headers)
        return stamps.make_stamp(
            secret=self.secret,
            method=method,
            target=target,
            key=key,
            ms=ms,
            mirror=mirror,
            user=user,
        )

    async def _send(
        self,
        backend: str,
        method: str,
        target: str,
        headers: dict[str, str],
        raw: bytes,
        *,
        ms: int,
        mirror: bool,
    ) -> httpx.Response:
        stamp = self._stamp(method, target, headers, ms, mirror=mirror)
        return await self.http.request(
            method,
            self.urls[backend] + target,
            headers={**headers, stamps.HEADER: stamp},
            content=raw,
        )

    # -- sockets -------------------------------------------------------------------------------

    async def tutor_turn(self, session_id: str, token: str, text: str) -> dict[str, Any]:
        """Ask over the primary's tutor socket; mirror the stored turn as two appends."""
        url = self.urls[self.primary].replace("http", "ws") + f"/ws/tutor/{session_id}"
        async with (
            aiohttp.ClientSession() as session,
            session.ws_connect(url, params={"token": token}) as ws,
        ):
            await ws.send_json({"type": "ask", "text": text})
            while True:
                frame = await asyncio.wait_for(ws.receive_json(), 30)
                if frame["type"] in ("done", "error"):
                    break
        assert frame["type"] == "done", frame
        for part in ("question", "answer"):
            message = frame[part]
            headers = {
                "X-Request-Id": uuid.uuid4().hex,
                "Content-Type": "application/json",
                "Authorization": f"Bearer {token}",
                "Idempotency-Key": ids.turn_key(session_id, message["seq"]),
            }
            target = f"/api/sessions/{session_id}/messages"
            ms = parse_iso(message["created_at"])
            stamp = self._stamp("POST", target, headers, ms, mirror=True, user=sub_of(token))
            body = json.dumps({"role": message["role"], "content": message["content"]}).encode()
            copied = await self.deliver_one(Copy(self.other, "POST", target, headers, body, stamp))
            assert copied.status_code == 201 and copied.json()["id"] == message["id"], copied.text
        return frame

    async def board_edit(self, room: str, token: str, change: Callable[[Doc], None]) -> None:
        """Edit a room through the primary's socket, then push the editor's document to the
        other store and wait until both stores read the same room."""
        async with aiohttp.ClientSession() as session:
            editor = WhiteboardClient()
            await editor.connect(session, self._socket(self.primary, room), params={"token": token})
            await editor.wait_synced()
            await editor.edit(change)
            await self._same_room(self.primary, room, token, editor.json())
            copy: Doc = Doc()
            copy.apply_update(editor.doc.get_update())
            pusher = WhiteboardClient(copy)
            await pusher.connect(session, self._socket(self.other, room), params={"token": token})
            await pusher.wait_synced()
            await self._same_room(self.other, room, token, editor.json())
            await pusher.close()
            await editor.close()

    def _socket(self, backend: str, room: str) -> str:
        return self.urls[backend].replace("http", "ws") + f"/ws/whiteboard/{room}"

    async def _same_room(self, backend: str, room: str, token: str, wanted: Any) -> None:
        headers = {"Authorization": f"Bearer {token}"}
        for _ in range(250):
            got = await self.http.get(
                self.urls[backend] + f"/api/whiteboard/{room}", headers=headers
            )
            if got.json()["doc"] == wanted:
                return
            await asyncio.sleep(0.02)
        raise AssertionError(f"{backend} never showed room {room} as {wanted}")
