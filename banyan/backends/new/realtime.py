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
    hub = TutorHub()
    boards: set[web.WebSocketResponse] = set()

    async def turn(
        caller: dict[str, object], session_id: str, text: str, key: str | None = None
    ) -> Turn:
        args: dict[str, object] = {"id": session_id, "text": text, "caller": caller}
        if key is not None:
            args["idempotency_key"] = key
        result: Turn = await runtime.run_action("tutor.turn", args, str(caller["id"]))
        return result

    async def ask(request: web.Request) -> web.StreamResponse:
        caller = await identify(runtime, request)
        key = idempotency.key_from(request.headers)
        fields = rules.ASK(await read_json(request))
        session_id = request.match_info["id"]
        await runtime.run_query("sessions.get", {"id": session_id, "caller": caller}, caller["id"])
        started = await turn(caller, session_id, fields["text"], key)
        headers = idempotency.REPLAYED if started.replayed else None
        return await answer_http(request, started.events, headers=headers)

    async def tutor_socket(request: web.Request) -> web.StreamResponse:
        caller = await identify(runtime, request, query_token=True)
        session_id = request.match_info["session_id"]
        await runtime.run_query("sessions.get", {"id": session_id, "caller": caller}, caller["id"])

        async def runner(_user: str, sid: str, text: str) -> AsyncIterator[TurnEvent]:
            started = await turn(caller, sid, text)
            async for event in started.events:
                yield event

        return await serve_tutor(
            request, user_id=caller["id"], session_id=session_id, runner=runner, hub=hub
        )

    async def whiteboard_socket(request: web.Request) -> web.StreamResponse:
        await identify(runtime, request, query_token=True)
        room = service.check_room(request.match_info["room"])  # 404 before the upgrade
        return await serve_whiteboard(request, rooms, room, sockets=boards)

    async def read_room(request: web.Request) -> web.Response:
        await identify(runtime, request)
        return await room_response(rooms, request.match_info["room"], read_format(request.query))

    async def close_sockets(_: web.Application) -> None:
        await hub.close_all()
        for ws in list(boards):
            await ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutting down")

    async def persist_rooms(_: web.Application) -> None:
        await rooms.close()

    app.on_shutdown.append(close_sockets)
    app.on_cleanup.append(persist_rooms)
    r = app.router
    r.add_post("/api/sessions/{id}/ask", ask)
    r.add_get("/ws/tutor/{session_id}", tutor_socket)
    r.add_get("/ws/whiteboard/{room}", whiteboard_socket)
    r.add_get("/api/whiteboard/{room}", read_room)
