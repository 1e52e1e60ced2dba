"""The whiteboard's HTTP answers both backends give alike, on top of :mod:`.service`.

- :func:`read_format` checks ``?format=`` (``json`` or ``update``);
- :func:`create_snapshot` saves a named snapshot and tells whether it was an ``Idempotency-Key``
  replay: the same key with the same name in the same room is a replay (201 and
  ``Idempotent-Replayed: true``), with another name or in another room ``409
  idempotency_conflict``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiohttp import web

from banyan.backends.common import ids
from banyan.backends.common.errors import Conflict, ValidationError
from banyan.backends.common.whiteboard import service
from banyan.backends.common.whiteboard.rooms import RoomManager
from banyan.backends.common.whiteboard.store import RoomStore, SnapshotInfo

FORMATS = ("json", "update")


def read_format(query: Mapping[str, str]) -> str:
    fmt = query.get("format", "json")
    if fmt not in FORMATS:
        raise ValidationError("format: must be one of " + ", ".join(FORMATS))
    return fmt


def _conflict() -> Conflict:
    return Conflict(
        "this Idempotency-Key was used with a different request body",
        code="idempotency_conflict",
    )


async def create_snapshot(
    rooms: RoomManager,
    store: RoomStore,
    room: str,
    body: Any,
    *,
    user_id: str,
    idempotency_key: str | None,
) -> tuple[SnapshotInfo, bool]:
    """Save a snapshot; ``(snapshot, replayed)``."""
    fields = service.SNAPSHOT_BODY(body)
    service.check_room(room)
    if idempotency_key is not None:
        found = await store.get_snapshot(room, ids.derived_id("snapshot", user_id, idempotency_key))
        if found is not None:
            if found[0].name != fields["name"]:
                raise _conflict()
            return found[0], True
    info = await service.save_snapshot(
        rooms, store, room, fields, user_id=user_id, idempotency_key=idempotency_key
    )
    if info.room != room:  # the key made a snapshot in another room
        raise _conflict()
    return info, False


async def room_response(rooms: RoomManager, room: str, fmt: str) -> web.Response:
    if fmt == "update":
        return web.Response(
            body=await service.room_update(rooms, room), content_type="application/octet-stream"
        )
    return web.json_response(await service.read_room(rooms, room))
