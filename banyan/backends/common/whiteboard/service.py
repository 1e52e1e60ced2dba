"""The whiteboard's HTTP face, shared by both backends: read a room, save, list and restore
snapshots — each returning the contract's JSON (docs/api.md, "Whiteboard").

A backend authenticates the caller, then calls these with its :class:`RoomManager` and store.
Snapshot ids honour ``Idempotency-Key`` (``kind`` ``snapshot``); names are 1..100 characters.
A snapshot stores the room's content canonically (:func:`snapshot.canonical_update`), and a
stamped restore writes its edit as a Yjs client derived from the write's seed, so a restore
mirrored to the other store makes the same edit there.
"""

from __future__ import annotations

import re
from typing import Any

from banyan.backends.common import ids, validate
from banyan.backends.common.clock import iso, now_ms, write_seed
from banyan.backends.common.errors import NotFound
from banyan.backends.common.whiteboard.rooms import RoomManager
from banyan.backends.common.whiteboard.snapshot import canonical_update, doc_to_json
from banyan.backends.common.whiteboard.store import RoomStore, SnapshotInfo

ROOM_NAME = re.compile(r"[A-Za-z0-9_.-]{1,100}")
SNAPSHOT_BODY = validate.obj({"name": validate.string(min_len=1, max_len=100)})


def check_room(name: str) -> str:
    if not ROOM_NAME.fullmatch(name):
        raise NotFound("no such room")
    return name


def snapshot_json(info: SnapshotInfo) -> dict[str, Any]:
    return {
        "id": info.id,
        "room": info.room,
        "name": info.name,
        "created_at": iso(info.created_ms),
        "size": info.size,
    }


async def read_room(rooms: RoomManager, name: str) -> dict[str, Any]:
    room = await rooms.open(check_room(name))
    return {"room": room.name, "doc": doc_to_json(room.doc)}


async def room_update(rooms: RoomManager, name: str) -> bytes:
    room = await rooms.open(check_room(name))
    return room.doc.get_update()


async def save_snapshot(
    rooms: RoomManager,
    store: RoomStore,
    name: str,
    body: Any,
    *,
    user_id: str,
    idempotency_key: str | None,
) -> SnapshotInfo:
    fields = SNAPSHOT_BODY(body)
    room = await rooms.open(check_room(name))
    await room.flush()
    state = canonical_update(room.doc)
    info = SnapshotInfo(
        id=ids.new_id("snapshot", user_id, idempotency_key),
        room=room.name,
        name=fields["name"],
        created_ms=now_ms(),
        size=len(state),
        created_by=user_id,
    )
    return await store.save_snapshot(info, state)


async def list_snapshots(store: RoomStore, name: str) -> dict[str, Any]:
    items = await store.list_snapshots(check_room(name))
    return {"items": [snapshot_json(i) for i in items]}


async def restore_snapshot(
    rooms: RoomManager, store: RoomStore, name: str, snapshot_id: str
) -> dict[str, Any]:
    found = await store.get_snapshot(check_room(name), snapshot_id)
    if found is None:
        raise NotFound("no such snapshot")
    room = await rooms.open(name)
    seed = write_seed()
    room.restore(found[1], client_id=int(seed[:8], 16) if seed else None)
    await room.flush()
    return {"room": room.name, "doc": doc_to_json(room.doc)}
