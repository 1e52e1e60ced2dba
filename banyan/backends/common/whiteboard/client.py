"""A small y-websocket client over aiohttp: one pycrdt document per simulated user.

Used by the contract suite, the benchmarks and the parity shadow to speak to a whiteboard exactly
as the browser's ``y-websocket`` provider does: sync step 1 on connect, answer the server's step 1
with step 2 (which carries any edits made while offline), then exchange incremental updates and
awareness.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from typing import Any

import aiohttp
from pycrdt import Doc

from banyan import ywebsocket
from banyan.backends.common.whiteboard import awareness
from banyan.backends.common.whiteboard.snapshot import doc_to_json


class WhiteboardClient:
    def __init__(self, doc: Doc | None = None, *, client_id: int | None = None) -> None:
        self.doc: Doc = doc if doc is not None else Doc()
        self.client_id = client_id if client_id is not None else self.doc.client_id
        self.peers: dict[int, Any] = {}
        self.synced = asyncio.Event()
        self.received = 0
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._reader: asyncio.Task[None] | None = None
        self._clock = 0
        self.close_code: int | None = None
        self._changed = asyncio.Condition()

    @property
    def connected(self) -> bool:
        return self._ws is not None and not self._ws.closed

    async def connect(self, session: aiohttp.ClientSession, url: str, **kwargs: Any) -> None:
        """Open the socket and start syncing (``await wait_synced()`` to know when done)."""
        self.synced.clear()
        self._ws = await session.ws_connect(url, **kwargs)
        await self._ws.send_bytes(ywebsocket.sync_step1(self.doc.get_state()))
        self._reader = asyncio.create_task(self._read(self._ws))

    async def wait_synced(self, timeout: float = 5.0) -> None:
        await asyncio.wait_for(self.synced.wait(), timeout)

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        async for message in ws:
            if message.type != aiohttp.WSMsgType.BINARY:
                continue
            frame = ywebsocket.parse(message.data)
            if frame.kind == "sync_step1":
                await ws.send_bytes(ywebsocket.sync_step2(self.doc.get_update(frame.payload)))
            elif frame.kind in ("sync_step2", "update"):
                self.doc.apply_update(frame.payload)
                if frame.kind == "sync_step2":
                    self.synced.set()
            elif frame.kind == "awareness":
                for client_id, _, state in awareness.decode(frame.payload):
                    if state == "null":
                        self.peers.pop(client_id, None)
                    else:
                        self.peers[client_id] = json.loads(state)
            self.received += 1
            async with self._changed:
                self._changed.notify_all()
        self.close_code = ws.close_code

    async def edit(self, change: Callable[[Doc], None]) -> bytes:
        """Apply ``change`` locally and, when connected, send the resulting update."""
        before = self.doc.get_state()
        change(self.doc)
        diff = self.doc.get_update(before)
        if self.connected and diff != ywebsocket.EMPTY_UPDATE:
            assert self._ws is not None
            await self._ws.send_bytes(ywebsocket.update(diff))
        return diff

    async def set_presence(self, state: dict[str, Any] | None) -> None:
        self._clock += 1
        body = "null" if state is None else json.dumps(state, separators=(",", ":"))
        update = awareness.encode([(self.client_id, self._clock, body)])
        assert self._ws is not None
        await self._ws.send_bytes(ywebsocket.awareness(update))

    async def wait_for(
        self, predicate: Callable[[WhiteboardClient], bool], timeout: float = 5.0
    ) -> None:
        """Wait until ``predicate(self)`` holds, re-checking after each received frame."""

        async def check() -> None:
            async with self._changed:
                await self._changed.wait_for(lambda: predicate(self))

        await asyncio.wait_for(check(), timeout)

    def json(self) -> dict[str, Any]:
        return doc_to_json(self.doc)

    async def close(self) -> None:
        if self._ws is not None:
            await self._ws.close()
        if self._reader is not None:
            with contextlib.suppress(asyncio.CancelledError, aiohttp.ClientError):
                await self._reader
        self._ws = None

    async def drop(self) -> None:
        """Lose the connection abruptly (no close handshake), as a network failure would."""
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, aiohttp.ClientError):
                await self._reader
        if self._ws is not None:
            transport = (
                self._ws._response.connection.transport if self._ws._response.connection else None
            )
            if transport is not None:
                transport.abort()
            await self._ws.close()
        self._ws = None
