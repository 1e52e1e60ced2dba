"""The AI Tutor's socket (``/ws/tutor/...``): compared turn by turn.

Each turn is compared once both backends finished it (assembled text, event sequence, the stored
messages). An ask sent to the candidate keeps its place in the caller's line until the candidate
finished that turn, so a read of the session's messages right after the answer never reaches the
candidate before its copy of the turn. The next ask, through this socket or another, waits for it
as a write's copy does (up to ``WRITE_COPY_WAIT``): answered without the turn before it, the
candidate would store another answer. One sent later anyway is not compared.

A turn is a write: when writes are stamped, an ask reaches the candidate once the primary stored
its turn, with a ``stamp`` at the primary's time (:mod:`banyan.stamps`), so both stores hold the
same message and session times (``banyan data verify`` finds no difference). An ask whose turn the
primary never finished (the client left mid-stream) is not sent at all: nothing is stored on
either side; one the primary refused (an error frame) is sent as it came.

A turn the primary stored and the candidate never finished (it lags past ``converge_seconds``
once the client left and its socket is closed mid-turn, which stores nothing; or its socket
failed) is written through to the candidate's store instead, from the primary's ``done`` frame,
as :mod:`banyan.proxy.turn_mirror` mirrors a socket that is not compared: the stores still hold
the same turns, and the user's later writes, which waited for this ask, still come after it.
"""

from __future__ import annotations

import asyncio
import json
import time

import aiohttp
from aiohttp import WSMessage, WSMsgType

from banyan.application import plugged
from banyan.isotime import iso_ms
from banyan.jsondepth import loads_shallow
from banyan.logs import get_logger
from banyan.parity.ws_capture import TutorTurns
from banyan.proxy.fence import WRITE_COPY_WAIT, Release
from banyan.proxy.shadow.taps.base import SocketTap

log = get_logger("banyan.proxy.shadow")

LEFT = -1  # the primary never finished the turn: the candidate is not asked
REFUSED = -2  # the primary answered the ask with an error: the candidate is asked unstamped


class TutorTap(SocketTap):
    kind = "tutor"
    converge_seconds = 10.0  # the candidate starts a turn when the primary finished it
    # An ask is a write whose answer depends on every earlier turn of the session: it waits for
    # the caller's earlier copies (a turn still streaming on the candidate through another
    # socket, a turn written through) as an HTTP write's copy does, not a read's 2 s.
    patience = WRITE_COPY_WAIT

    def prepare(self) -> None:
        self.primary_turns, self.candidate_turns = TutorTurns(), TutorTurns()
        self._asks = 0  # turn ids, numbered as the server numbers them, for asks without one
        self._turn_of: dict[int, str] = {}  # a client ask (by identity) -> its turn id
        self._stored: dict[str, asyncio.Future[int]] = {}  # turn id -> the primary's outcome
        self._sending: str | None = None
        # turn id -> the primary's done frame and when it came, until the candidate finished it
        self._unstored: dict[str, tuple[WSMessage, float]] = {}
        self._late: set[str] = set()  # turns asked before the caller's earlier copies arrived

    def saw_client(self, message: WSMessage) -> None:
        """Number the client's asks as the server does and await the primary's outcome."""
        if message.type != WSMsgType.TEXT:
            return
        turn = plugged().ask_turn(message.data, self._asks + 1)
        if turn is None:
            return
        self._asks += 1
        self._turn_of[id(message)] = turn
        self._stored[turn] = asyncio.get_running_loop().create_future()

    def saw_primary(self, message: WSMessage) -> None:
        if message.type == WSMsgType.TEXT:
            self._primary_outcome(message)
            turn = self.primary_turns.feed(message.data)
            if turn is not None:
                self._compare_turn(turn.turn)

    def _primary_outcome(self, message: WSMessage) -> None:
        try:
            frame = loads_shallow(message.data)
        except ValueError:
            return
        if not isinstance(frame, dict) or frame.get("type") not in ("done", "error"):
            return
        turn = str(frame.get("turn"))
        if frame["type"] == "done" and isinstance(frame.get("turn"), str):
            self._unstored[turn] = (message, time.perf_counter())
        waiting = self._stored.get(turn)
        if waiting is None or waiting.done():
            return
        question = frame.get("question")
        at = iso_ms(question.get("created_at")) if isinstance(question, dict) else None
        waiting.set_result(REFUSED if at is None else at)

    async def outgoing(self, message: WSMessage) -> str | None:
        """An ask waits for the primary's turn and carries its time (see the module docstring)."""
        self._sending = turn = self._turn_of.pop(id(message), None)
        if turn is None or not self.host.stamps_asks:
            return str(message.data)  # not an ask, or writes are not stamped
        at = await self._stored[turn]
        if at == LEFT:
            return None
        if at == REFUSED:
            return str(message.data)
        path = self.raw_path.split("?", 1)[0]
        frame = json.loads(message.data)
        frame["stamp"] = self.host.ask_stamp(at, path, turn)
        return json.dumps(frame)

    async def close(self) -> None:
        for waiting in self._stored.values():  # the socket is over: unfinished turns are left
            if not waiting.done():
                waiting.set_result(LEFT)
        await super().close()

    async def saw_candidate(self, ws: aiohttp.ClientWebSocketResponse, message: WSMessage) -> None:
        if message.type == WSMsgType.TEXT:
            turn = self.candidate_turns.feed(message.data)
            if turn is not None:
                self._unstored.pop(turn.turn, None)
                self.answered(turn.turn)
                self._compare_turn(turn.turn)

    def sent_late(self, message: WSMessage) -> None:
        turn = self._turn_of.get(id(message))
        if turn is not None:
            self._late.add(turn)

    def sent(self, message: WSMessage, release: Release) -> Release | None:
        """Keep an ask's place until the candidate finished its turn."""
        turn, self._sending = self._sending, None
        if message.type != WSMsgType.TEXT or turn is None:
            return release
        self._stored.pop(turn, None)
        self.answered(turn)  # a second ask under the same id: the first one's place goes
        self._held[turn] = release
        return None

    def left_behind(self) -> None:
        """Write through the turns the candidate did not finish (see the module docstring)."""
        if self.fallback is not None:
            return  # its socket never opened: the whole socket is written through already
        left, self._unstored = list(self._unstored.values()), {}
        tap = self.write_through_tap()  # also the turns of a client still there, from now on
        if tap is None or not left:
            return
        for done, arrived in left:
            tap.write_turn(done, arrived)
        log.warning("shadow_turns_written_through", feature=self.feature.name, turns=len(left))

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
        if turn_id in self._late:  # its answer read a session without the caller's earlier turns
            self._late.discard(turn_id)
            self.host.skip(self.feature.name, self.endpoint, "earlier_writes_late")
            return
        self.compare_json(a.as_json(), b.as_json(), f"{self.raw_path.split('?', 1)[0]}#turn")
