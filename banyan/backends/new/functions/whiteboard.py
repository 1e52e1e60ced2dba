"""The whiteboard as functions.

Storage: the room store the live rooms write behind to is made of functions too —
``whiteboard.updates`` (query), ``whiteboard.append`` and ``whiteboard.compact`` (mutations),
``whiteboard.saveSnapshot`` (mutation), ``whiteboard.snapshotsOf`` and ``whiteboard.snapshot``
(queries) — wrapped as a :class:`RuntimeRoomStore` for the shared room engine. The HTTP face:
``whiteboard.snapshots.list`` (query), ``whiteboard.snapshots.create`` and
``whiteboard.snapshots.restore`` (actions: they need the live room, then call the store's
functions). The app's :class:`RoomManager` is ``runtime.settings["whiteboard.rooms"]``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pycrdt import merge_updates
from sqlalchemy import delete, insert, select

from banyan.backends.common import idempotency
from banyan.backends.common import validate as v
from banyan.backends.common.whiteboard import service
from banyan.backends.common.whiteboard.http import create_snapshot
from banyan.backends.common.whiteboard.rooms import RoomManager
from banyan.backends.common.whiteboard.sqlstore import COMPACT_CHUNK
from banyan.backends.common.whiteboard.store import SnapshotInfo
from banyan.backends.new.functions.common import CALLER, KEY, OPTIONAL_KEY, anything
from banyan.backends.new.runtime.context import ActionCtx, MutationCtx, QueryCtx
from banyan.backends.new.runtime.http import Reply
from banyan.backends.new.runtime.registry import action, mutation, query
from banyan.backends.new.runtime.schema import whiteboard

if TYPE_CHECKING:
    from banyan.backends.new.runtime.engine import Runtime

ROOMS_SETTING = "whiteboard.rooms"
ROOM = {"room": v.string(max_len=100)}
updates, snapshots = whiteboard.updates, whiteboard.snapshots


def _info(row: Any) -> SnapshotInfo:
    return SnapshotInfo(
        id=row["id"],
        room=row["room"],
        name=row["name"],
        created_ms=int(row["created_ms"]),
        size=int(row["size"]),
        created_by=row["created_by"],
    )


# -- the room store --------------------------------------------------------------------------


@query("whiteboard.updates", ROOM)
async def load_updates(ctx: QueryCtx, args: dict[str, Any]) -> list[bytes]:
    rows = await ctx.read(
        select(updates.c.data).where(updates.c.room == args["room"]).order_by(updates.c.id)
    )
    return [bytes(r[0]) for r in rows]


@mutation("whiteboard.append", {**ROOM, "updates": anything()})
async def append_updates(ctx: MutationCtx, args: dict[str, Any]) -> None:
    if args["updates"]:
        rows = [{"room": args["room"], "data": u} for u in args["updates"]]
        await ctx.write(insert(updates).values(rows))


@mutation("whiteboard.compact", {**ROOM, "state": anything()})
async def compact(ctx: MutationCtx, args: dict[str, Any]) -> None:
    """Replace the rows read with one merged update; a row another replica added meanwhile is
    merged in when read here, never deleted unread (the same rule as the SQL room store)."""
    room = args["room"]
    rows = list(await ctx.read(select(updates.c.id, updates.c.data).where(updates.c.room == room)))
    state: bytes = args["state"]
    merged = merge_updates(state, *(bytes(r[1]) for r in rows)) if rows else state
    ids = [r[0] for r in rows]
    for start in range(0, len(ids), COMPACT_CHUNK):
        await ctx.write(delete(updates).where(updates.c.id.in_(ids[start : start + COMPACT_CHUNK])))
    await ctx.write(insert(updates).values(room=room, data=merged))


@mutation("whiteboard.saveSnapshot", {"info": anything(), "state": anything()})
async def save_snapshot(ctx: MutationCtx, args: dict[str, Any]) -> SnapshotInfo:
    info: SnapshotInfo = args["info"]
    existing = (await ctx.read(select(snapshots).where(snapshots.c.id == info.id))).mappings()
    found = existing.first()
    if found is not None:
        return _info(found)
    await ctx.write(
        insert(snapshots).values(
            id=info.id,
            room=info.room,
            name=info.name,
            data=args["state"],
            size=info.size,
            created_ms=info.created_ms,
            created_by=info.created_by,
        )
    )
    return info


@query("whiteboard.snapshotsOf", ROOM)
async def snapshots_of(ctx: QueryCtx, args: dict[str, Any]) -> list[SnapshotInfo]:
    rows = await ctx.read(
        select(snapshots)
        .where(snapshots.c.room == args["room"])
        .order_by(snapshots.c.created_ms, snapshots.c.id)
    )
    return [_info(r) for r in rows.mappings()]


@query("whiteboard.snapshot", {**ROOM, "id": v.string()})
async def snapshot(ctx: QueryCtx, args: dict[str, Any]) -> tuple[SnapshotInfo, bytes] | None:
    found = (
        (
            await ctx.read(
                select(snapshots).where(
                    snapshots.c.id == args["id"], snapshots.c.room == args["room"]
                )
            )
        )
        .mappings()
        .first()
    )
    return (_info(found), bytes(found["data"])) if found is not None else None


class RuntimeRoomStore:
    """The :class:`~banyan.backends.common.whiteboard.store.RoomStore` of the new backend: functions."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    async def load_updates(self, room: str) -> list[bytes]:
        found: list[bytes] = await self.runtime.run_query(
            "whiteboard.updates", {"room": room}, None
        )
        return found

    async def append_updates(self, room: str, batch: list[bytes]) -> None:
        await self.runtime.run_mutation("whiteboard.append", {"room": room, "updates": batch}, None)

    async def compact(self, room: str, state: bytes) -> None:
        await self.runtime.run_mutation("whiteboard.compact", {"room": room, "state": state}, None)

    async def save_snapshot(self, info: SnapshotInfo, state: bytes) -> SnapshotInfo:
        saved: SnapshotInfo = await self.runtime.run_mutation(
            "whiteboard.saveSnapshot", {"info": info, "state": state}, None
        )
        return saved

    async def list_snapshots(self, room: str) -> list[SnapshotInfo]:
        found: list[SnapshotInfo] = await self.runtime.run_query(
            "whiteboard.snapshotsOf", {"room": room}, None
        )
        return found

    async def get_snapshot(self, room: str, snapshot_id: str) -> tuple[SnapshotInfo, bytes] | None:
        found: tuple[SnapshotInfo, bytes] | None = await self.runtime.run_query(
            "whiteboard.snapshot", {"room": room, "id": snapshot_id}, None
        )
        return found


# -- the HTTP face ---------------------------------------------------------------------------


def rooms_of(runtime: Runtime) -> RoomManager:
    rooms: RoomManager = runtime.settings[ROOMS_SETTING]
    return rooms


@query("whiteboard.snapshots.list", {"room": v.string(), **CALLER})
async def list_snapshots(ctx: QueryCtx, args: dict[str, Any]) -> dict[str, Any]:
    service.check_room(args["room"])
    return {"items": [service.snapshot_json(i) for i in await snapshots_of(ctx, args)]}


@action(
    "whiteboard.snapshots.create",
    {"room": v.string(), "name": v.string(), **CALLER, **KEY},
    OPTIONAL_KEY,
)
async def create(ctx: ActionCtx, args: dict[str, Any]) -> Reply:
    rooms = rooms_of(ctx.runtime)
    info, replayed = await create_snapshot(
        rooms,
        rooms.store,
        args["room"],
        {"name": args["name"]},
        user_id=args["caller"]["id"],
        idempotency_key=args.get("idempotency_key"),
    )
    headers = dict(idempotency.REPLAYED) if replayed else {}
    return Reply(service.snapshot_json(info), 201, headers)


@action("whiteboard.snapshots.restore", {"room": v.string(), "id": v.string(), **CALLER})
async def restore(ctx: ActionCtx, args: dict[str, Any]) -> dict[str, Any]:
    rooms = rooms_of(ctx.runtime)
    return await service.restore_snapshot(rooms, rooms.store, args["room"], args["id"])
