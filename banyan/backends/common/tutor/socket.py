"""The ``/ws/tutor/{session_id}`` protocol (JSON text frames), shared by both backends.

Client frames: ``{"type": "ask", "text", "id"?, "stamp"?}`` and ``{"type": "ping"}``. Server frames:
``{"type": "token", "turn", "text"}`` for each streamed token, ``{"type": "done", "turn",
"question", "answer"}`` when a turn is stored, ``{"type": "error", "turn", "code", "message"}``,
``{"type": "pong"}``, and ``{"type": "turn", "question", "answer"}`` when another connection to the
same session completed a turn. Turn ids are the client's ``id`` or ``t1``, ``t2``... per connection.

Turns are queued and answered in order, one at a time per connection. A malformed or unknown frame
gets an ``error`` frame and the connection stays open; a frame over the size limit closes with 1009.
When the client goes away mid-stream, the running turn is cancelled and every task is awaited.
The caller authenticates and checks the session before calling :func:`serve_tutor`.

An ask may carry a ``stamp``: the proxy's signed word on the time its turn was stored by the
other backend (a shadow copy of a turn: :mod:`banyan.stamps`, bound to method ``ASK``, the socket's
path and the turn id). A stamp that verifies stores the turn at that time, so both stores hold the
same message and session times; one that does not is answered with an ``invalid_stamp`` error and
the turn is not run.

When the app has a fan-out bus (:mod:`banyan.backends.common.fanout`), the hub also publishes each
``turn`` notice on the session's channel and relays the other replicas' notices to its own
connections, so a turn reaches every connection of the session whichever replica serves it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Hashable
from typing import Any

from aiohttp import WSMsgType, web

from banyan import stamps
from banyan.backends.common import clock, jsonbody, tokens
from banyan.backends.common.errors import ApiError
from banyan.backends.common.fanout import Bus, Message, bus_of
from banyan.backends.common.tutor.events import Done, Token, TurnRunner
from banyan.backends.common.tutor.prompt import MAX_QUESTION_CHARS
from banyan.errors import StampError
from banyan.logs import get_logger
from banyan.tasks import cancel_and_wait

log = get_logger("tutor.socket")

MAX_FRAME_BYTES = 64 * 1024
MAX_QUEUED_TURNS = 16


class TutorHub:
    """Open tutor connections per session, to tell each about the others' turns."""

    def __init__(self) -> None:
        self._sessions: dict[str, set[web.WebSocketResponse]] = {}
        self.bus: Bus | None = None
        self._remote: asyncio.Queue[tuple[str, dict[str, Any]]] = asyncio.Queue()
        self._courier: asyncio.Task[None] | None = None

    def share(self, bus: Bus) -> None:
        """Tell the other replicas on ``bus`` of this replica's turns, and hear theirs."""
        self.bus = bus

    def _channel(self, session_id: str) -> str:
        assert self.bus is not None
        return self.bus.channel("tutor", session_id)

    async def join(self, session_id: str, ws: web.WebSocketResponse) -> None:
        """:meth:`add`, subscribing to the session's channel for its first connection here."""
        first = session_id not in self._sessions
        self.add(session_id, ws)
        if first and self.bus is not None:
            await self.bus.subscribe(
                self._channel(session_id), lambda message: self._heard(session_id, message)
            )

    async def leave(self, session_id: str, ws: web.WebSocketResponse) -> None:
        """:meth:`remove`, leaving the session's channel with its last connection here."""
        self.remove(session_id, ws)
        if self.bus is not None and session_id not in self._sessions:
            await self.bus.unsubscribe(self._channel(session_id))

    def _heard(self, session_id: str, message: Message) -> None:
        try:
            frame = json.loads(message.body)
        except ValueError:
            return
        if message.kind != "turn" or not isinstance(frame, dict) or frame.get("type") != "turn":
            return
        self._remote.put_nowait((session_id, frame))
        if self._courier is None or self._courier.done():
            self._courier = asyncio.create_task(self._deliver_remote(), name="tutor-remote")

    async def _deliver_remote(self) -> None:
        while not self._remote.empty():
            session_id, frame = self._remote.get_nowait()
            await self._send_local(session_id, frame, skip=None)

    def add(self, session_id: str, ws: web.WebSocketResponse) -> None:
        self._sessions.setdefault(session_id, set()).add(ws)

    def remove(self, session_id: str, ws: web.WebSocketResponse) -> None:
        peers = self._sessions.get(session_id)
        if peers is not None:
            peers.discard(ws)
            if not peers:
                del self._sessions[session_id]

    def connections(self, session_id: str) -> int:
        return len(self._sessions.get(session_id, ()))

    async def broadcast(self, session_id: str, frame: dict[str, Any], skip: Hashable) -> None:
        """Send ``frame`` to the session's other connections, here and on other replicas."""
        if self.bus is not None:
            self.bus.publish(self._channel(session_id), "turn", json.dumps(frame).encode())
        await self._send_local(session_id, frame, skip)

    async def _send_local(
        self, session_id: str, frame: dict[str, Any], skip: Hashable | None
    ) -> None:
        for ws in list(self._sessions.get(session_id, ())):
            if ws is not skip and not ws.closed:
                with contextlib.suppress(ConnectionError, RuntimeError):
                    await ws.send_json(frame)

    async def close_all(self, code: int = 1001) -> None:
        await cancel_and_wait([self._courier])
        for peers in list(self._sessions.values()):
            for ws in list(peers):
                await ws.close(code=code, message=b"server shutting down")


def _error(turn: str | None, code: str, message: str) -> dict[str, Any]:
    return {"type": "error", "turn": turn, "code": code, "message": message}


def parse_frame(raw: str) -> tuple[str, dict[str, Any]] | dict[str, Any]:
    """Validate a client frame: ``(type, frame)`` when good, else the error frame to send."""
    try:
        frame = jsonbody.loads(raw, subject="frame", root="frame")
    except ApiError as exc:
        return _error(None, exc.code, exc.message)
    if not isinstance(frame, dict):
        return _error(None, "validation_error", "frame: must be a JSON object")
    kind = frame.get("type")
    if kind == "ping":
        return "ping", frame
    if kind != "ask":
        return _error(None, "unknown_type", "type: must be one of ask, ping")
    text = frame.get("text")
    turn = frame.get("id")
    if turn is not None and (not isinstance(turn, str) or not 1 <= len(turn) <= 100):
        return _error(None, "validation_error", "id: must be a string of 1 to 100 characters")
    if not isinstance(text, str):
        return _error(turn, "validation_error", "text: must be a string")
    if not text.strip():
        return _error(turn, "validation_error", "text: must not be empty")
    if len(text) > MAX_QUESTION_CHARS:
        return _error(
            turn, "validation_error", f"text: must be at most {MAX_QUESTION_CHARS} characters"
        )
    stamp = frame.get("stamp")
    if stamp is not None and (not isinstance(stamp, str) or len(stamp) > stamps.MAX_HEADER_CHARS):
        return _error(turn, "validation_error", "stamp: must be a stamp string")
    return "ask", frame


def ask_time(request: web.Request, turn: str, stamp: str | None) -> int | None:
    """The time an ask's verified ``stamp`` gives its turn (None without one); ApiError
    ``invalid_stamp`` when it does not verify for this socket and turn."""
    if stamp is None:
        return None
    try:
        verified = stamps.read_stamp(
            stamp,
            secret=tokens.secret(),
            method=stamps.ASK,
            target=request.raw_path.split("?", 1)[0],
            key=turn,
            now_ms=clock.wall_ms(),
        )
    except StampError as exc:
        log.warning("stamp_refused", reason=exc.reason, path=request.path, turn=turn)
        raise InvalidAskStamp(f"stamp is {exc.reason}: {exc}") from None
    return None if verified is None else verified.ms


class InvalidAskStamp(ApiError):
    status, code = 400, "invalid_stamp"


TurnQueue = asyncio.Queue[tuple[str, str, int | None]]  # (turn, text, its time or None)


async def serve_tutor(
    request: web.Request,
    *,
    user_id: str,
    session_id: str,
    runner: TurnRunner,
    hub: TutorHub,
    heartbeat: float = 20.0,
) -> web.WebSocketResponse:
    ws = web.WebSocketResponse(heartbeat=heartbeat, max_msg_size=MAX_FRAME_BYTES)
    await ws.prepare(request)
    if hub.bus is None and (bus := bus_of(request.app)) is not None:
        hub.share(bus)
    await hub.join(session_id, ws)
    turns: TurnQueue = asyncio.Queue(MAX_QUEUED_TURNS)
    worker = asyncio.create_task(
        _answer_turns(ws, turns, runner, hub, user_id, session_id),
        name=f"tutor-turns:{session_id}",
    )
    counter = 0
    try:
        async for message in ws:
            if message.type == WSMsgType.TEXT:
                counter = await _take_text(request, ws, message.data, turns, counter)
            elif message.type == WSMsgType.BINARY:
                await ws.send_json(_error(None, "validation_error", "frames must be JSON text"))
            elif message.type == WSMsgType.ERROR:
                break
    finally:
        await cancel_and_wait([worker])
        await hub.leave(session_id, ws)
        if not ws.closed:
            await ws.close()
    return ws


async def _take_text(
    request: web.Request, ws: web.WebSocketResponse, data: str, turns: TurnQueue, counter: int
) -> int:
    """One text frame: an error or a pong answered, or an ask queued (``counter`` names a turn
    sent without an id); the asks counted so far."""
    parsed = parse_frame(data)
    if isinstance(parsed, dict):
        await ws.send_json(parsed)
        return counter
    kind, frame = parsed
    if kind == "ping":
        await ws.send_json({"type": "pong"})
        return counter
    counter += 1
    turn = frame.get("id") or f"t{counter}"
    try:
        at = ask_time(request, turn, frame.get("stamp"))
    except ApiError as exc:
        await ws.send_json(_error(turn, exc.code, exc.message))
        return counter
    try:
        turns.put_nowait((turn, frame["text"].strip(), at))
    except asyncio.QueueFull:
        await ws.send_json(
            _error(turn, "too_many_turns", f"at most {MAX_QUEUED_TURNS} queued turns")
        )
    return counter


async def _answer_turns(
    ws: web.WebSocketResponse,
    turns: TurnQueue,
    runner: TurnRunner,
    hub: TutorHub,
    user_id: str,
    session_id: str,
) -> None:
    """Answer queued turns one at a time (each at its stamp's time when it has one): tokens and
    the final answer to this socket, the finished turn to the session's other sockets."""

    async def run_one(turn: str, text: str) -> None:
        async for event in runner(user_id, session_id, text):
            if isinstance(event, Token):
                await ws.send_json({"type": "token", "turn": turn, "text": event.text})
            elif isinstance(event, Done):
                done = {"question": event.question, "answer": event.answer}
                await ws.send_json({"type": "done", "turn": turn, **done})
                await hub.broadcast(session_id, {"type": "turn", **done}, skip=ws)

    while True:
        turn, text, at = await turns.get()
        try:
            with clock.frozen_at(at) if at is not None else contextlib.nullcontext():
                await run_one(turn, text)
        except ApiError as exc:
            await ws.send_json(_error(turn, exc.code, exc.message))
        except (ConnectionError, RuntimeError):
            return  # the client went away while we were writing
