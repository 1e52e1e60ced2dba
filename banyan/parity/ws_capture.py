"""What a WebSocket conversation looks like to each backend, captured for comparison.

The proxy tees the client's frames to a candidate connection; these classes turn the two frame
streams into comparable JSON documents, which then go through the ordinary structural comparison
(so ignores, masks and learned noise apply to WebSockets too):

- :class:`TutorTurns` assembles each tutor turn: the sequence of event types (runs of ``token``
  collapsed to one), the text assembled from the tokens, and the ``done`` or ``error`` frame.
- :class:`WhiteboardReplica` keeps a replica of the document as the client would see it from one
  backend: updates the backend sends plus updates the client sends; it is compared as JSON once
  the room is quiet.
- :class:`LiveAnswers` keeps what a ``/ws/live`` connection answered to each of the client's
  subscribes (and its errors to unreadable frames), for comparison answer by answer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pycrdt import Doc

from banyan import ydoc, ywebsocket
from banyan.application import plugged
from banyan.jsondepth import loads_shallow


@dataclass
class Turn:
    turn: str
    events: list[str] = field(default_factory=list)
    text: str = ""
    done: dict[str, Any] | None = None
    error: dict[str, Any] | None = None

    @property
    def finished(self) -> bool:
        return self.done is not None or self.error is not None

    def as_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"events": self.events, "text": self.text}
        if self.done is not None:
            body["question"] = self.done.get("question")
            body["answer"] = self.done.get("answer")
        if self.error is not None:
            body["error"] = {"code": self.error.get("code"), "message": self.error.get("message")}
        return body


class TutorTurns:
    """Server frames of one tutor connection, grouped into turns."""

    def __init__(self) -> None:
        self.turns: dict[str, Turn] = {}
        self.order: list[str] = []

    def feed(self, raw: str) -> Turn | None:
        """Take one server text frame; return the turn it finished, if it finished one."""
        try:
            frame = loads_shallow(raw)
        except ValueError:
            return None
        if not isinstance(frame, dict) or not isinstance(frame.get("turn"), str):
            return None
        kind = frame.get("type")
        turn_id = frame["turn"]
        turn = self.turns.get(turn_id)
        if turn is None:
            turn = self.turns[turn_id] = Turn(turn_id)
            self.order.append(turn_id)
        if kind == "token":
            if not turn.events or turn.events[-1] != "token":
                turn.events.append("token")
            turn.text += str(frame.get("text", ""))
            return None
        if kind == "done":
            turn.events.append("done")
            turn.done = frame
            return turn
        if kind == "error":
            turn.events.append("error")
            turn.error = frame
            return turn
        return None

    def pop(self, turn_id: str) -> Turn | None:
        return self.turns.pop(turn_id, None)


class WhiteboardReplica:
    """The document one backend would give the client, rebuilt from the frames."""

    def __init__(self) -> None:
        self.doc: Doc = Doc()
        self.frames = 0

    def apply(self, data: bytes) -> None:
        """Take a binary frame from either side; document changes are applied, the rest ignored."""
        try:
            frame = ywebsocket.parse(data)
        except ywebsocket.ProtocolError:
            return
        if frame.kind in ("sync_step2", "update") and frame.payload != ywebsocket.EMPTY_UPDATE:
            try:
                self.doc.apply_update(frame.payload)
            except Exception:  # a garbage update is the backend's problem, not the replica's
                return
            self.frames += 1

    def json(self) -> dict[str, Any]:
        return ydoc.doc_to_json(self.doc, plugged().document_schema)


class LiveAnswers:
    """What one ``/ws/live`` connection answered to the client's frames, keyed for comparison.

    A subscription's answer is the first frame naming its id after the client subscribed (its
    ``result`` or ``error``), keyed ``"<id>#<n>"`` (``n`` counts the client's subscribes with that
    id); later pushes are not answers (their timing is each backend's own). Frames naming no
    subscription (errors of unreadable frames) are keyed by their order, ``"#<k>"``. Pongs are
    left out."""

    def __init__(self) -> None:
        self.waiting: dict[str, str] = {}  # subscription id -> key of its pending answer
        self.asked: dict[str, int] = {}
        self.answers: dict[str, dict[str, Any]] = {}
        self.plain = 0

    def sent(self, raw: str) -> str | None:
        """Take one client frame (as it reaches this backend); return the key of the answer it
        asks for, when it is a subscribe."""
        try:
            frame = loads_shallow(raw)
        except ValueError:
            return None
        if not isinstance(frame, dict) or frame.get("type") != "subscribe":
            return None
        sub = frame.get("id")
        if not isinstance(sub, str):
            return None
        self.asked[sub] = self.asked.get(sub, 0) + 1
        self.waiting[sub] = key = f"{sub}#{self.asked[sub]}"
        return key

    def feed(self, raw: str) -> str | None:
        """Take one server frame; return the key it answered, if it answered one."""
        try:
            frame = loads_shallow(raw)
        except ValueError:
            return None
        if not isinstance(frame, dict) or frame.get("type") == "pong":
            return None
        sub = frame.get("id")
        if isinstance(sub, str):
            key = self.waiting.pop(sub, None)
            if key is None or frame.get("type") not in ("result", "error"):
                return None
        elif frame.get("type") == "error":
            self.plain += 1
            key = f"#{self.plain}"
        else:
            return None
        self.answers[key] = frame
        return key
