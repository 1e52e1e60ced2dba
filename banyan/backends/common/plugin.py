"""The AI Tutor as the proxy sees it: its :class:`banyan.application.Application`.

Plugged in through the ``banyan.application`` entry point (``pyproject.toml``): the proxy reads
the tutor socket's asks, the key a turn's messages are stored under, the whiteboard's document
shape and the user a registration creates from here, without importing the backends.
"""

from __future__ import annotations

import json

from banyan import ydoc
from banyan.application import Application, Socket
from banyan.backends.common import ids
from banyan.backends.common.tutor.socket import parse_frame
from banyan.backends.common.whiteboard.snapshot import SCHEMA

REGISTER_PATH = "/api/auth/register"
TUTOR, WHITEBOARD, LIVE = "/ws/tutor/", "/ws/whiteboard/", "/ws/live"
ROOM_PATHS = ("/api/whiteboard/", WHITEBOARD)


class AiTutor:
    name = "ai-tutor"
    document_schema: ydoc.Schema = SCHEMA

    def socket(self, path: str) -> Socket | None:
        if path == LIVE:
            return Socket("subscriptions")
        for prefix, kind in ((TUTOR, "turns"), (WHITEBOARD, "document")):
            key = path.removeprefix(prefix)
            if path.startswith(prefix) and key and "/" not in key:
                return Socket("turns" if kind == "turns" else "document", key)
        return None

    def shared_line(self, path: str) -> str | None:
        for prefix in ROOM_PATHS:
            if path.startswith(prefix):
                return "whiteboard:" + path.removeprefix(prefix).split("/", 1)[0]
        return None

    def turn_messages_path(self, session: str) -> str:
        return f"/api/sessions/{session}/messages"

    def ask_turn(self, frame: str, asked: int) -> str | None:
        parsed = parse_frame(frame)
        if not isinstance(parsed, tuple) or parsed[0] != "ask":
            return None
        turn = parsed[1].get("id")
        return turn if isinstance(turn, str) else f"t{asked}"

    def turn_key(self, session: str, seq: int) -> str:
        return ids.turn_key(session, seq)

    def registered_user(self, path: str, body: bytes) -> str | None:
        if path.split("?", 1)[0] != REGISTER_PATH:
            return None
        try:
            document = json.loads(body)
        except ValueError:
            return None
        email = document.get("email") if isinstance(document, dict) else None
        return ids.user_id_for(email) if isinstance(email, str) and email else None


AI_TUTOR: Application = AiTutor()  # checked against the interface by mypy
