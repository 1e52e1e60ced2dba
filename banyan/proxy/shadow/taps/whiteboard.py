"""The whiteboard's socket (``/ws/whiteboard/<room>``): compared by document, once quiet.

The tap keeps three replicas of the room: the primary's (what the client and the primary said),
the candidate's, and what was sent to the candidate through this connection (a sync step 1 of
the candidate is answered from that, never from the primary's document, which may hold edits
that must reach the candidate in their turn).
"""

from __future__ import annotations

import contextlib
import time

import aiohttp
from aiohttp import WSMessage, WSMsgType

from banyan import ywebsocket
from banyan.parity.ws_capture import WhiteboardReplica
from banyan.proxy.fence import Release
from banyan.proxy.shadow.taps.base import CONVERGE_SECONDS, SocketTap

EMPTY_STATE = b"\x00"  # the Yjs state vector of an empty document


def asks_for_everything(frame: bytes) -> bool | None:
    """For a client's whiteboard frame: True for a sync step 1 with an empty state vector, False
    for one with a state, None for any other frame."""

    try:
        parsed = ywebsocket.parse(frame)
    except ywebsocket.ProtocolError:
        return None
    if parsed.kind != "sync_step1":
        return None
    return parsed.payload == EMPTY_STATE


class WhiteboardTap(SocketTap):
    kind = "whiteboard"

    def prepare(self) -> None:
        self.primary_board, self.candidate_board = WhiteboardReplica(), WhiteboardReplica()
        self.sent_board = WhiteboardReplica()
        # Whether the client's first sync asked for the whole room (it held nothing): then the
        # primary replica is the whole room, and the candidate's may be completed from its room.
        self.fresh_client: bool | None = None
        self.compared_board = True

    def saw_client(self, message: WSMessage) -> None:
        if message.type == WSMsgType.BINARY:
            self.primary_board.apply(message.data)
            self.candidate_board.apply(message.data)
            self.compared_board = False
            if self.fresh_client is None:
                self.fresh_client = asks_for_everything(message.data)

    def saw_primary(self, message: WSMessage) -> None:
        if message.type == WSMsgType.BINARY:
            self.primary_board.apply(message.data)
            self.compared_board = False

    async def saw_candidate(self, ws: aiohttp.ClientWebSocketResponse, message: WSMessage) -> None:
        if message.type != WSMsgType.BINARY:
            return

        self.candidate_board.apply(message.data)
        self.sent_board.apply(message.data)
        try:
            frame = ywebsocket.parse(message.data)
        except ywebsocket.ProtocolError:
            return
        if frame.kind == "sync_step1":  # answer with what this connection sent it
            answer = ywebsocket.sync_step2(self.sent_board.doc.get_update(frame.payload))
            await ws.send_bytes(answer)

    def sent(self, message: WSMessage, release: Release) -> Release | None:
        if message.type == WSMsgType.BINARY:
            self.sent_board.apply(message.data)
        return release

    async def closing(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        """Ask the candidate for whatever its room holds that this replica lacks (a sync step 1,
        as a client does), since other connections' edits may have reached the candidate's room
        before this connection joined it; only for a client that joined holding nothing, whose
        primary replica is then the whole room too."""
        if not self.fresh_client:
            return

        with contextlib.suppress(ConnectionError, RuntimeError, aiohttp.ClientError):
            await ws.send_bytes(ywebsocket.sync_step1(self.candidate_board.doc.get_state()))

    def caught_up(self) -> bool:
        return self.primary_board.json() == self.candidate_board.json()

    def quiet(self, force: bool = False) -> None:
        """Compare the two documents once the room is quiet (and they converged, or the
        candidate had its time to catch up)."""
        if self.compared_board:
            return
        quiet = time.monotonic() - self.last_frame
        if not force and quiet < self.host.quiet_seconds:
            return
        if (
            not force
            and quiet < self.host.quiet_seconds + CONVERGE_SECONDS
            and self.primary_board.json() != self.candidate_board.json()
        ):
            return  # the candidate may still be catching up: look again at the next quiet tick
        self.compared_board = True
        self.compare_json(
            self.primary_board.json(),
            self.candidate_board.json(),
            self.raw_path.split("?", 1)[0] + "#doc",
        )
