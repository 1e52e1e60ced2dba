"""Lossless rollback for the live tutor: turns answered over ``/ws/tutor/{id}`` are mirrored.

HTTP writes of a ``writes: mirror`` feature are re-applied to the other store by the durable mirror
queue (:mod:`banyan.proxy.mirror`). A tutor turn over the WebSocket is a write too — the backend
stores the question and the answer as two messages — but it crosses the proxy as frames. This tap
watches the frames the serving backend sends; each ``done`` frame becomes two message appends on
the other store (``POST /api/sessions/{id}/messages``, question then answer, in the order the
turns ended) with the ``Idempotency-Key`` the backends store a turn's message under (the
application's ``turn_key``, :mod:`banyan.application`) and a ``mirror`` stamp at the message's
``created_at``, acting for the socket's user: the other store then holds the very messages — same
ids, fingerprints and times — and a retried delivery stores nothing twice. A message without a
``seq`` (an older backend) falls back to a key made of its id, and one without a readable time
to the queue's own clock.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from typing import Any

from aiohttp import WSMsgType
from aiohttp.http_websocket import WSMessage

from banyan.application import plugged
from banyan.isotime import iso_ms
from banyan.jsondepth import loads_shallow
from banyan.logs import get_logger
from banyan.proxy.routing import user_from_authorization
from banyan.proxy.stamping import Stamper, WriteStamp, acting_user

log = get_logger("banyan.proxy.turn_mirror")

Submit = Callable[..., None]


def tutor_session(path: str) -> str | None:
    """The session of a turns socket at ``path`` (the application's ``socket``), else None."""
    socket = plugged().socket(path)
    return socket.key if socket is not None and socket.kind == "turns" else None


def credentials(headers: Mapping[str, str], query: Mapping[str, str]) -> str | None:
    """The caller's ``Authorization`` value: the header, or a bearer built from ``?token=``."""
    header = headers.get("Authorization")
    if header:
        return header
    token = query.get("token")
    return f"Bearer {token}" if token else None


class TurnMirrorTap:
    """A frame tap (:class:`banyan.proxy.websocket.FrameTap`) that mirrors finished tutor turns."""

    def __init__(
        self,
        *,
        feature: str,
        target: str,
        session_id: str,
        authorization: str,
        submit: Submit,
        hold: Callable[[], Callable[[], None]],
        stamper: Stamper | None = None,
    ) -> None:
        self.feature = feature
        self.target = target
        self.session_id = session_id
        self.path = plugged().turn_messages_path(session_id)
        self.authorization = authorization
        self.user = user_from_authorization(authorization, None)
        self.stamper = stamper
        self.submit = submit
        self.hold = hold
        self.mirrored = 0

    def from_client(self, message: WSMessage) -> None:
        return None

    def from_upstream(self, message: WSMessage) -> None:
        self.write_turn(message, time.perf_counter())

    def write_turn(self, message: WSMessage, arrived: float) -> None:
        """Mirror the turn finished by the ``done`` frame ``message`` (other frames are not
        turns), placed in the user's line at ``arrived`` (a ``time.perf_counter()`` reading)."""
        if message.type != WSMsgType.TEXT:
            return
        try:
            frame = loads_shallow(message.data)
        except ValueError:
            return
        if not isinstance(frame, dict) or frame.get("type") != "done":
            return
        for part in ("question", "answer"):
            stored = frame.get(part)
            if isinstance(stored, dict):
                self._mirror(stored, arrived)

    def _mirror(self, stored: dict[str, Any], arrived: float) -> None:
        role, content, message_id = stored.get("role"), stored.get("content"), stored.get("id")
        if not (isinstance(role, str) and isinstance(content, str) and message_id):
            log.warning("turn_mirror_skipped", feature=self.feature, reason="malformed message")
            return
        seq = stored.get("seq")
        key = (
            plugged().turn_key(self.session_id, seq)
            if type(seq) is int
            else f"tutor-turn:{message_id}"
        )
        ms = iso_ms(stored.get("created_at"))
        stamp = None
        if self.stamper is not None and self.stamper.enabled and ms is not None:
            stamp = WriteStamp(ms, "POST", key, acting_user(self.user))
        self.submit(
            feature=self.feature,
            target=self.target,
            method="POST",
            path_qs=self.path,
            headers={
                "Authorization": self.authorization,
                "Content-Type": "application/json",
                "Idempotency-Key": key,
            },
            body=json.dumps({"role": role, "content": content}).encode(),
            idempotency_key=key,
            release=self.hold(),
            stamp=stamp,
            arrived=arrived,
        )
        self.mirrored += 1

    async def close(self) -> None:
        return None
