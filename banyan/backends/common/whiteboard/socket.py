"""The ``/ws/whiteboard/{room}`` WebSocket handler, shared by both backends.

The caller authenticates the request (before the upgrade) and passes the room manager. Each
connection gets an outbox drained by its own writer task, so a slow client never stalls the room;
one whose outbox overflows is closed with 1013 (try again later) and resynchronises on reconnect.
Text frames are refused with 1003; malformed binary frames close with 1002.
"""

from __future__ import annotations

import asyncio
import contextlib

from aiohttp import WSCloseCode, WSMsgType, web

from banyan.backends.common.whiteboard.rooms import RoomManager
from banyan.logs import get_logger
from banyan.ywebsocket import ProtocolError

log = get_logger("whiteboard.socket")

MAX_FRAME_BYTES = 4 * 1024 * 1024
OUTBOX_LIMIT = 1000


class SocketPeer:
    """A WebSocket as a room peer: ``send`` queues, a writer task delivers in order."""

    def __init__(self, ws: web.WebSocketResponse, *, limit: int = OUTBOX_LIMIT) -> None:
        self.ws = ws
        self._outbox: asyncio.Queue[bytes | None] = asyncio.Queue(limit)
        self._writer = asyncio.create_task(self._deliver())
        self.overflowed = False
        self._closer: asyncio.Future[bool] | None = None

    def send(self, frame: bytes) -> None:
        if self.overflowed:
            return
        try:
            self._outbox.put_nowait(frame)
        except asyncio.QueueFull:
            self.overflowed = True
            self._closer = asyncio.ensure_future(
                self.ws.close(code=WSCloseCode.TRY_AGAIN_LATER, message=b"slow")
            )

    async def _deliver(self) -> None:
        while (frame := await self._outbox.get()) is not None:
            if self.ws.closed:
                return
            try:
                await self.ws.send_bytes(frame)
            except (ConnectionError, RuntimeError):
                return

    async def close(self) -> None:
        with contextlib.suppress(asyncio.QueueFull):
            self._outbox.put_nowait(None)
        try:
            await asyncio.wait_for(self._writer, 2.0)
        except (TimeoutError, asyncio.CancelledError):
            self._writer.cancel()

    def __hash__(self) -> int:
        return id(self)


async def serve_whiteboard(
    request: web.Request,
    rooms: RoomManager,
    room_name: str,
    *,
    heartbeat: float = 20.0,
    sockets: set[web.WebSocketResponse] | None = None,
) -> web.WebSocketResponse:
    """Upgrade and serve one whiteboard connection until either side closes. ``sockets``, when
    given, holds the connection while it is open (so the app can close it at shutdown)."""
    ws = web.WebSocketResponse(heartbeat=heartbeat, max_msg_size=MAX_FRAME_BYTES)
    await ws.prepare(request)
    if sockets is not None:
        sockets.add(ws)
    peer = SocketPeer(ws)
    room = await rooms.join(room_name, peer)
    try:
        async for message in ws:
            if message.type == WSMsgType.BINARY:
                try:
                    room.receive(peer, message.data)
                except ProtocolError as exc:
                    log.warning("whiteboard_protocol_error", room=room_name, reason=str(exc))
                    await ws.close(code=WSCloseCode.PROTOCOL_ERROR, message=str(exc).encode())
                    break
            elif message.type == WSMsgType.TEXT:
                await ws.close(code=WSCloseCode.UNSUPPORTED_DATA, message=b"binary frames only")
                break
            elif message.type == WSMsgType.ERROR:
                break
    finally:
        if sockets is not None:
            sockets.discard(ws)
        await rooms.leave(room, peer)
        await peer.close()
        if not ws.closed:
            await ws.close()
    return ws
