"""The live queries socket (``/ws/live``): compared by each subscription's first answer.

The errors answering unreadable frames are compared too. A subscribe, like a tutor's ask, keeps
its place in the caller's line until the candidate answered it.
"""

from __future__ import annotations

import aiohttp
from aiohttp import WSMessage, WSMsgType

from banyan.parity.ws_capture import LiveAnswers
from banyan.proxy.fence import Release
from banyan.proxy.shadow.taps.base import SocketTap


class LiveTap(SocketTap):
    kind = "live"

    def prepare(self) -> None:
        self.primary_live, self.candidate_live = LiveAnswers(), LiveAnswers()

    def saw_client(self, message: WSMessage) -> None:
        if message.type == WSMsgType.TEXT:
            self.primary_live.sent(message.data)

    def saw_primary(self, message: WSMessage) -> None:
        if message.type == WSMsgType.TEXT:
            answered = self.primary_live.feed(message.data)
            if answered is not None:
                self._compare_answer(answered)

    async def saw_candidate(self, ws: aiohttp.ClientWebSocketResponse, message: WSMessage) -> None:
        if message.type == WSMsgType.TEXT:
            answered = self.candidate_live.feed(message.data)
            if answered is not None:
                self.answered(answered)
                self._compare_answer(answered)

    def sent(self, message: WSMessage, release: Release) -> Release | None:
        """Keep a subscribe's place until the candidate answered it."""
        if message.type != WSMsgType.TEXT:
            return release
        key = self.candidate_live.sent(message.data)
        if key is None:
            return release
        self._held[key] = release
        return None

    def caught_up(self) -> bool:
        return not self.primary_live.answers

    def given_up(self) -> None:
        for key in list(self.primary_live.answers):  # the candidate never answered these
            self._compare_answer(key, final=True)

    def _compare_answer(self, key: str, *, final: bool = False) -> None:
        """Compare the two answers to one live subscribe (or unreadable frame) once both came;
        ``final``: the candidate had its chance (the socket closed), compare what there is."""
        a = self.primary_live.answers.get(key)
        b = self.candidate_live.answers.get(key)
        if a is None or (b is None and not final):
            return
        self.primary_live.answers.pop(key, None)
        self.candidate_live.answers.pop(key, None)
        self.compare_json(a, b, f"/ws/live#{key}")
