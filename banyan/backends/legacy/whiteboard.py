"""The collaborative whiteboard on the legacy backend: ``/ws/whiteboard/{room}`` and the
``/api/whiteboard/**`` REST face, over the shared engine (:mod:`banyan.backends.common.whiteboard`).

Rooms live in a :class:`RoomManager` whose store is the legacy database (tables
``whiteboard_updates`` and ``whiteboard_snapshots``, created by migration 2). A room is loaded from
the store before its first client is served and unloaded ``grace`` seconds after its last one
leaves; at shutdown open sockets are closed (1001) and every room is persisted.
"""

from __future__ import annotations

from aiohttp import WSCloseCode, web
from sqlalchemy import MetaData

from banyan.backends.common import idempotency
from banyan.backends.common.validate import read_json
from banyan.backends.common.whiteboard import service
from banyan.backends.common.whiteboard.http import create_snapshot, read_format, room_response
from banyan.backends.common.whiteboard.rooms import RoomManager
from banyan.backends.common.whiteboard.socket import serve_whiteboard
from banyan.backends.common.whiteboard.sqlstore import SqlRoomStore, define_tables
from banyan.backends.legacy.auth import authenticate
from banyan.backends.legacy.state import STATE

metadata = MetaData()
tables = define_tables(metadata)

ROOMS: web.AppKey[RoomManager] = web.AppKey("legacy_whiteboard_rooms", RoomManager)
SOCKETS: web.AppKey[set[web.WebSocketResponse]] = web.AppKey("legacy_whiteboard_sockets")


def rooms_of(request: web.Request) -> RoomManager:
    return request.app[ROOMS]


async def whiteboard_socket(request: web.Request) -> web.StreamResponse:
    await authenticate(request, query_token=True)
    room = service.check_room(request.match_info["room"])  # 404 before the upgrade
    return await serve_whiteboard(request, rooms_of(request), room, sockets=request.app[SOCKETS])


async def read_room(request: web.Request) -> web.Response:
    await authenticate(request)
    fmt = read_format(request.query)
    return await room_response(rooms_of(request), request.match_info["room"], fmt)


async def list_snapshots(request: web.Request) -> web.Response:
    await authenticate(request)
    store = rooms_of(request).store
    return web.json_response(await service.list_snapshots(store, request.match_info["room"]))


async def save_snapshot(request: web.Request) -> web.Response:
    user, _ = await authenticate(request)
    key = idempotency.key_from(request.headers)
    body = await read_json(request)
    rooms = rooms_of(request)
    info, replayed = await create_snapshot(
        rooms, rooms.store, request.match_info["room"], body, user_id=user.id, idempotency_key=key
    )
    headers = idempotency.REPLAYED if replayed else None
    return web.json_response(service.snapshot_json(info), status=201, headers=headers)


async def restore_snapshot(request: web.Request) -> web.Response:
    await authenticate(request)
    rooms = rooms_of(request)
    body = await service.restore_snapshot(
        rooms, rooms.store, request.match_info["room"], request.match_info["id"]
    )
    return web.json_response(body)


def add_routes(app: web.Application, *, grace: float = 10.0) -> None:
    st = app[STATE]
    rooms = app[ROOMS] = RoomManager(SqlRoomStore(st.db.engine, tables), grace=grace)
    sockets: set[web.WebSocketResponse] = set()
    app[SOCKETS] = sockets

    async def close_sockets(_: web.Application) -> None:
        for ws in list(sockets):
            await ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutting down")

    async def persist_rooms(_: web.Application) -> None:
        await rooms.close()

    app.on_shutdown.append(close_sockets)
    app.on_cleanup.append(persist_rooms)
    r = app.router
    r.add_get("/ws/whiteboard/{room}", whiteboard_socket)
    r.add_get("/api/whiteboard/{room}", read_room)
    r.add_get("/api/whiteboard/{room}/snapshots", list_snapshots)
    r.add_post("/api/whiteboard/{room}/snapshots", save_snapshot)
    r.add_post("/api/whiteboard/{room}/snapshots/{id}/restore", restore_snapshot)
