"""Lossless rollback for the whiteboard: a room edited on one backend is kept on the other too.

With ``writes: mirror``, every whiteboard socket the serving backend holds gets a companion socket
to the same room on the other backend, opened once the caller's own writes on their way there have
landed (a new user's registration). The tap rebuilds the client's view of the document from the
frames both ways (its own edits and everything the serving backend sent it) and pushes it to the
other backend as ordinary Yjs updates: the difference since the last push, every ``interval``
seconds while something changed, and once more when the socket closes. It answers the other
backend's sync step 1 with what that backend lacks. Updates are CRDT operations, so pushing the
same content twice, or edits the other backend already has, changes nothing; a frame the tap
missed is still in the next difference. If the other backend cannot be reached the tap retries
until ``linger`` seconds after the client left, then logs the loss of its copy (the client's own
replica still holds the edits, and a y-websocket client resends them when it reconnects after a
rollback).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Mapping

import aiohttp
from aiohttp import WSMsgType
from aiohttp.http_websocket import WSMessage

from banyan import ywebsocket
from banyan.logs import get_logger
from banyan.parity.ws_capture import WhiteboardReplica
from banyan.tasks import cancel_and_wait

log = get_logger("banyan.proxy.board_mirror")


class BoardMirrorTap:
    """A frame tap (:class:`banyan.proxy.websocket.FrameTap`) that copies a room to another
    backend."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        url: str,
        headers: Mapping[str, str],
        *,
        feature: str,
        ready: Callable[[], Awaitable[object]] | None = None,
        interval: float = 0.5,
        retry: float = 1.0,
        linger: float = 5.0,
    ) -> None:
        self.session = session
        self.url = url
        self.headers = dict(headers)
        self.feature = feature
        self.interval = interval
        self.retry = retry
        self.linger = linger
        self.ready = ready
        self.closed_at: float | None = None
        self.replica = WhiteboardReplica()
        self.changed = asyncio.Event()
        self.closing = asyncio.Event()
        self.pushes = 0
        self._task = asyncio.ensure_future(self._run())

    def from_client(self, message: WSMessage) -> None:
        self._take(message)

    def from_upstream(self, message: WSMessage) -> None:
        self._take(message)

    def _take(self, message: WSMessage) -> None:
        if message.type != WSMsgType.BINARY:
            return
        before = self.replica.frames
        self.replica.apply(message.data)
        if self.replica.frames != before:
            self.changed.set()

    def _given_up(self) -> bool:
        return self.closed_at is not None and time.monotonic() - self.closed_at > self.linger

    async def _run(self) -> None:
        if self.ready is not None:
            await self.ready()  # the caller's writes to the target (its registration) land first
        while not self._given_up():
            try:
                async with self.session.ws_connect(
                    self.url, headers=self.headers, timeout=aiohttp.ClientWSTimeout(ws_close=2)
                ) as ws:
                    await self._mirror(ws)
                return
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                status = getattr(exc, "status", None)
                log.warning(
                    "board_mirror_unavailable",
                    feature=self.feature,
                    error=type(exc).__name__,
                    status=status,
                )
                await asyncio.sleep(self.retry)
        log.error("board_mirror_gave_up", feature=self.feature, url=self.url.split("?", 1)[0])

    async def _mirror(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        reader = asyncio.ensure_future(self._answer(ws))
        pushed = b"\x00"  # the empty state vector: the first push carries everything
        try:
            while True:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.closing.wait(), self.interval)
                if self.changed.is_set() or self.closing.is_set():
                    self.changed.clear()
                    doc = self.replica.doc
                    await ws.send_bytes(ywebsocket.update(doc.get_update(pushed)))
                    pushed = doc.get_state()
                    self.pushes += 1
                if self.closing.is_set():
                    return
        finally:
            await cancel_and_wait([reader])

    async def _answer(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        """Answer the other backend's sync step 1 as the client would: with what it lacks."""
        async for message in ws:
            if message.type != WSMsgType.BINARY:
                continue
            try:
                frame = ywebsocket.parse(message.data)
            except ywebsocket.ProtocolError:
                continue
            if frame.kind == "sync_step1":
                await ws.send_bytes(
                    ywebsocket.sync_step2(self.replica.doc.get_update(frame.payload))
                )

    async def close(self) -> None:
        self.closing.set()
        self.closed_at = time.monotonic()
        try:
            await asyncio.wait_for(asyncio.shield(self._task), self.linger + 2)
        except TimeoutError:
            await cancel_and_wait([self._task])
        except asyncio.CancelledError:
            self._task.cancel()  # the caller is going away: no waiting for the task here
