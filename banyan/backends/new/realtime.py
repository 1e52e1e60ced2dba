"""The new backend's streaming and socket routes, in front of its functions.

The function router answers JSON; these routes need more, so they are plain aiohttp handlers that
authenticate like the router and then call functions: ``POST /api/sessions/{id}/ask`` (JSON or
SSE, the action ``tutor.turn``), ``/ws/tutor/{session_id}`` (each turn is a ``tutor.turn``),
``/ws/whiteboard/{room}`` and ``GET /api/whiteboard/{room}`` (the live room, JSON or a Yjs
update). :func:`install` also gives the runtime its model client and its whiteboard rooms, and
ties both to the app's lifecycle.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import WSCloseCode, web

from banyan.backends.common import idempotency, rules
from banyan.backends.common.model_client import install_llm
from banyan.backends.common.tutor.events import TurnEvent, answer_http
from banyan.backends.common.tutor.socket import TutorHub, serve_tutor
from banyan.backends.common.validate import read_json
from banyan.backends.common.whiteboard import service
from banyan.backends.common.whiteboard.http import read_format, room_response
from banyan.backends.common.whiteboard.rooms import RoomManager
from banyan.backends.common.whiteboard.socket import serve_whiteboard
from banyan.backends.new.functions.tutor import LLM_SETTING, Turn
from banyan.backends.new.functions.whiteboard import ROOMS_SETTING, RuntimeRoomStore
from banyan.backends.new.runtime.engine import Runtime
from banyan.backends.new.runtime.http import identify


def install(app: web.Application, runtime: Runtime, *, whiteboard_grace: float = 10.0) -> None:
    runtime.settings[LLM_SETTING] = install_llm(app)
    rooms = RoomManager(RuntimeRoomStore(runtime), grace=whiteboard_grace)
    runtime.settings[ROOMS_SETTING] = rooms
    routes = _Routes(runtime, rooms)
    app.on_shutdown.append(routes.close_sockets)
    app.on_cleanup.append(routes.persist_rooms)
    r = app.router
    r.add_post("/api/sessions/{id}/ask", routes.ask)
    r.add_get("/ws/tutor/{session_id}", routes.tutor_socket)
    r.add_get("/ws/whiteboard/{room}", routes.whiteboard_socket)
    r.add_get("/api/whiteboard/{room}", routes.read_room)


class _Routes:
    """The handlers, sharing the runtime, the whiteboard rooms, the tutor sockets' hub and the
    open whiteboard sockets (closed at shutdown)."""

    def __init__(self, runtime: Runtime, rooms: RoomManager) -> None:
        self.runtime = runtime
        self.rooms = rooms
        self.hub = TutorHub()
        self.boards: set[web.WebSocketResponse] = set()

    async def turn(
        self, caller: dict[str, object], session_id: str, text: str, key: str | None = None
    ) -> Turn:
        args: dict[str, object] = {"id": session_id, "text": text, "caller": caller}
        if key is not None:
            args["idempotency_key"] = key
        result: Turn = await self.runtime.run_action("tutor.turn", args, str(caller["id"]))
        return result

    async def ask(self, request: web.Request) -> web.StreamResponse:
        runtime = self.runtime
        caller = await identify(runtime, request)
        key = idempotency.key_from(request.headers)
        fields = rules.ASK(await read_json(request))
        session_id = request.match_info["id"]
        await runtime.run_query("sessions.get", {"id": session_id, "caller": caller}, caller["id"])
        started = await self.turn(caller, session_id, fields["text"], key)
        headers = idempotency.REPLAYED if started.replayed else None
        return await answer_http(request, started.events, headers=headers)

    async def tutor_socket(self, request: web.Request) -> web.StreamResponse:
        runtime = self.runtime
        caller = await identify(runtime, request, query_token=True)
        session_id = request.match_info["session_id"]
        await runtime.run_query("sessions.get", {"id": session_id, "caller": caller}, caller["id"])

        async def runner(_user: str, sid: str, text: str) -> AsyncIterator[TurnEvent]:
            started = await self.turn(caller, sid, text)
            async for event in started.events:
                yield event

        return await serve_tutor(
            request, user_id=caller["id"], session_id=session_id, runner=runner, hub=self.hub
        )

    async def whiteboard_socket(self, request: web.Request) -> web.StreamResponse:
        await identify(self.runtime, request, query_token=True)
        room = service.check_room(request.match_info["room"])  # 404 before the upgrade
        return await serve_whiteboard(request, self.rooms, room, sockets=self.boards)

    async def read_room(self, request: web.Request) -> web.Response:
        await identify(self.runtime, request)
        return await room_response(
            self.rooms, request.match_info["room"], read_format(request.query)
        )

    async def close_sockets(self, _: web.Application) -> None:
        await self.hub.close_all()
        for ws in list(self.boards):
            await ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutting down")

    async def persist_rooms(self, _: web.Application) -> None:
        await self.rooms.close()
