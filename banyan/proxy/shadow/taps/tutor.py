"""The AI Tutor's socket (``/ws/tutor/...``): compared turn by turn.

Each turn is compared once both backends finished it (assembled text, event sequence, the stored
messages). An ask sent to the candidate keeps its place in the caller's line until the candidate
finished that turn, so a read of the session's messages right after the answer never reaches the
candidate before its copy of the turn.
"""

from __future__ import annotations

import aiohttp
from aiohttp import WSMessage, WSMsgType

from banyan.parity.ws_capture import TutorTurns
from banyan.proxy.fence import Release
from banyan.proxy.shadow.taps.base import SocketTap


class TutorTap(SocketTap):
    kind = "tutor"

    def prepare(self) -> None:
        self.primary_turns, self.candidate_turns = TutorTurns(), TutorTurns()
        self._asks = 0  # turn ids, numbered as the server numbers them, for asks without one

    def saw_primary(self, message: WSMessage) -> None:
        if message.type == WSMsgType.TEXT:
            turn = self.primary_turns.feed(message.data)
            if turn is not None:
                self._compare_turn(turn.turn)

    async def saw_candidate(self, ws: aiohttp.ClientWebSocketResponse, message: WSMessage) -> None:
        if message.type == WSMsgType.TEXT:
            turn = self.candidate_turns.feed(message.data)
            if turn is not None:
                self.answered(turn.turn)
                self._compare_turn(turn.turn)

    def sent(self, message: WSMessage, release: Release) -> Release | None:
        """Keep an ask's place until the candidate finished its turn."""
        if message.type != WSMsgType.TEXT:
            return release
        from banyan.backends.common.tutor.socket import parse_frame

        parsed = parse_frame(message.data)
        if not isinstance(parsed, tuple) or parsed[0] != "ask":
            return release
        self._asks += 1
        turn = parsed[1].get("id") or f"t{self._asks}"
        self.answered(turn)  # a second ask under the same id: the first one's place goes
        self._held[turn] = release
        return None

    def caught_up(self) -> bool:
        """A turn the client left mid-stream is left at once (the candidate's copy is cut like
        the client's: nothing half is stored on either side); finished turns wait for the
        candidate's answer."""
        left = list(self.primary_turns.turns.values())
        return not left or any(not t.finished for t in left)

    def _compare_turn(self, turn_id: str) -> None:
        a, b = self.primary_turns.turns.get(turn_id), self.candidate_turns.turns.get(turn_id)
        if a is None or b is None or not a.finished or not b.finished:
            return
        self.primary_turns.pop(turn_id)
        self.candidate_turns.pop(turn_id)
        self.compare_json(a.as_json(), b.as_json(), f"{self.raw_path.split('?', 1)[0]}#turn")
