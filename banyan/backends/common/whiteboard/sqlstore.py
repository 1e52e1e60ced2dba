"""A :class:`~banyan.backends.common.whiteboard.store.RoomStore` on SQLAlchemy Core (SQLite or
PostgreSQL).

Tables (created by :func:`define_tables` on the backend's own ``MetaData``, so each backend keeps
them in its own database and migrations): ``whiteboard_updates`` (append-only Yjs updates per room,
ordered by an autoincrement id) and ``whiteboard_snapshots`` (named full-state updates). Both are
indexed by room.

:meth:`SqlRoomStore.compact` replaces exactly the rows it read, merged with the given state, in one
transaction: when replicas share a room (several processes appending to one history), a row
another replica commits meanwhile is neither lost nor deleted.
"""

from __future__ import annotations

from dataclasses import dataclass

from pycrdt import merge_updates
from sqlalchemy import (
    BigInteger,
    Column,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    delete,
    insert,
    select,
)
from sqlalchemy.ext.asyncio import AsyncEngine

from banyan.backends.common.whiteboard.store import SnapshotInfo

COMPACT_CHUNK = 500  # row ids per DELETE (SQLite limits bound parameters)


@dataclass(frozen=True, slots=True)
class WhiteboardTables:
    updates: Table
    snapshots: Table


def define_tables(metadata: MetaData, prefix: str = "") -> WhiteboardTables:
    updates = Table(
        f"{prefix}whiteboard_updates",
        metadata,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("room", String(100), nullable=False),
        Column("data", LargeBinary, nullable=False),
        Index(f"ix_{prefix}whiteboard_updates_room", "room", "id"),
    )
    snapshots = Table(
        f"{prefix}whiteboard_snapshots",
        metadata,
        Column("id", String(36), primary_key=True),
        Column("room", String(100), nullable=False),
        Column("name", String(100), nullable=False),
        Column("data", LargeBinary, nullable=False),
        Column("size", Integer, nullable=False),
        Column("created_ms", BigInteger, nullable=False),
        Column("created_by", String(36), nullable=False),
        Index(f"ix_{prefix}whiteboard_snapshots_room", "room", "created_ms"),
    )
    return WhiteboardTables(updates, snapshots)


class SqlRoomStore:
    def __init__(self, engine: AsyncEngine, tables: WhiteboardTables) -> None:
        self.engine = engine
        self.tables = tables

    async def load_updates(self, room: str) -> list[bytes]:
        t = self.tables.updates
        async with self.engine.connect() as conn:
            rows = await conn.execute(select(t.c.data).where(t.c.room == room).order_by(t.c.id))
            return [bytes(r[0]) for r in rows]

    async def append_updates(self, room: str, updates: list[bytes]) -> None:
        if not updates:
            return
        async with self.engine.begin() as conn:
            await conn.execute(
                insert(self.tables.updates), [{"room": room, "data": u} for u in updates]
            )

    async def compact(self, room: str, state: bytes) -> None:
        t = self.tables.updates
        async with self.engine.begin() as conn:
            rows = list(await conn.execute(select(t.c.id, t.c.data).where(t.c.room == room)))
            merged = merge_updates(state, *(bytes(r[1]) for r in rows)) if rows else state
            ids = [r[0] for r in rows]
            for start in range(0, len(ids), COMPACT_CHUNK):
                await conn.execute(delete(t).where(t.c.id.in_(ids[start : start + COMPACT_CHUNK])))
            await conn.execute(insert(t).values(room=room, data=merged))

    async def save_snapshot(self, info: SnapshotInfo, state: bytes) -> SnapshotInfo:
        t = self.tables.snapshots
        async with self.engine.begin() as conn:
            existing = (await conn.execute(select(t).where(t.c.id == info.id))).mappings().first()
            if existing is not None:
                return _info(existing)
            await conn.execute(
                insert(t).values(
                    id=info.id,
                    room=info.room,
                    name=info.name,
                    data=state,
                    size=info.size,
                    created_ms=info.created_ms,
                    created_by=info.created_by,
                )
            )
        return info

    async def list_snapshots(self, room: str) -> list[SnapshotInfo]:
        t = self.tables.snapshots
        async with self.engine.connect() as conn:
            rows = (
                await conn.execute(
                    select(t).where(t.c.room == room).order_by(t.c.created_ms, t.c.id)
                )
            ).mappings()
            return [_info(r) for r in rows]

    async def get_snapshot(self, room: str, snapshot_id: str) -> tuple[SnapshotInfo, bytes] | None:
        t = self.tables.snapshots
        async with self.engine.connect() as conn:
            row = (
                (await conn.execute(select(t).where(t.c.id == snapshot_id, t.c.room == room)))
                .mappings()
                .first()
            )
        return (_info(row), bytes(row["data"])) if row is not None else None


def _info(row: object) -> SnapshotInfo:
    r = dict(row)  # type: ignore[call-overload]
    return SnapshotInfo(
        id=r["id"],
        room=r["room"],
        name=r["name"],
        created_ms=int(r["created_ms"]),
        size=int(r["size"]),
        created_by=r["created_by"],
    )
