"""Tests for the SQL room store (SQLite and PostgreSQL) and the whiteboard service functions."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from pycrdt import Doc, Map, Text
from sqlalchemy import MetaData
from sqlalchemy.ext.asyncio import create_async_engine

from banyan.backends.common.errors import NotFound, ValidationError
from banyan.backends.common.whiteboard import service
from banyan.backends.common.whiteboard.rooms import RoomManager
from banyan.backends.common.whiteboard.sqlstore import SqlRoomStore, define_tables
from banyan.backends.common.whiteboard.store import SnapshotInfo
from banyan.backends.new.functions.whiteboard import RuntimeRoomStore
from banyan.backends.new.runtime import schema
from banyan.backends.new.runtime.engine import Runtime, make_engine
from banyan.backends.new.runtime.registry import registry
from banyan.pg import postgres_available, temp_database


@pytest.fixture(params=["sqlite", "postgresql", "new-runtime"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Any]:
    async def build(url: str) -> tuple[SqlRoomStore, object]:
        engine = create_async_engine(url)
        metadata = MetaData()
        tables = define_tables(metadata)
        async with engine.begin() as conn:
            await conn.run_sync(metadata.create_all)
        return SqlRoomStore(engine, tables), engine

    if request.param == "new-runtime":  # the new backend's store: the same rules as functions
        runtime = Runtime(make_engine(f"sqlite+aiosqlite:///{tmp_path / 'new.db'}"), registry)
        await schema.migrate(runtime.engine)
        yield RuntimeRoomStore(runtime)
        await runtime.engine.dispose()
        return
    if request.param == "sqlite":
        sql, _ = await build(f"sqlite+aiosqlite:///{tmp_path / 'wb.db'}")
        yield sql
        await sql.engine.dispose()
        return
    if not await postgres_available():
        pytest.skip(
            "PostgreSQL not reachable at 127.0.0.1:5432: whiteboard store runs on SQLite only"
        )
    async with temp_database("wb") as url:
        sql, _ = await build(url)
        yield sql
        await sql.engine.dispose()


def update_with(name: str) -> bytes:
    doc: Doc = Doc()
    doc.get("shapes", type=Map)[name] = {"kind": "rect"}
    return doc.get_update()


async def test_updates_append_load_and_compact(store: SqlRoomStore) -> None:
    await store.append_updates("r1", [update_with("a"), update_with("b")])
    await store.append_updates("r1", [])
    await store.append_updates("r2", [update_with("c")])
    assert len(await store.load_updates("r1")) == 2
    merged = Doc()
    for item in await store.load_updates("r1"):
        merged.apply_update(item)
    await store.compact("r1", merged.get_update())
    assert len(await store.load_updates("r1")) == 1
    assert len(await store.load_updates("r2")) == 1 and await store.load_updates("none") == []


async def test_compact_keeps_rows_it_was_not_given(store: SqlRoomStore) -> None:
    """Another replica appended "late" after this one read the history: compacting with a state
    that lacks it keeps it (the store merges what it deletes)."""
    await store.append_updates("r1", [update_with("a"), update_with("late")])
    mine: Doc = Doc()
    mine.apply_update(update_with("a"))
    mine.apply_update(update_with("b"))
    await store.compact("r1", mine.get_update())
    stored = await store.load_updates("r1")
    assert len(stored) == 1
    merged: Doc = Doc()
    merged.apply_update(stored[0])
    assert set(merged.get("shapes", type=Map).keys()) == {"a", "b", "late"}


async def test_snapshots_are_idempotent_by_id(store: SqlRoomStore) -> None:
    info = SnapshotInfo("00000000-0000-4000-8000-000000000001", "r1", "first", 5, 3, "u1")
    assert await store.save_snapshot(info, b"abc") == info
    again = SnapshotInfo(info.id, "r1", "other name", 9, 1, "u1")
    assert await store.save_snapshot(again, b"x") == info
    assert await store.list_snapshots("r1") == [info]
    assert await store.get_snapshot("r1", info.id) == (info, b"abc")
    assert await store.get_snapshot("r2", info.id) is None


def edit(room: Any, change: Any) -> None:
    """Change the room as a client would: on its own replica, sent as an update."""
    client: Doc = Doc()
    client.apply_update(room.doc.get_update())
    before = client.get_state()
    change(client.get("notes", type=Text))
    assert room.apply(client.get_update(before)) is not None


async def test_service_reads_saves_lists_and_restores(store: SqlRoomStore) -> None:
    rooms = RoomManager(store, grace=0.05, flush_interval=0.01)
    room = await rooms.open("lesson-1")
    edit(room, lambda notes: notes.insert(0, "v1"))
    saved = await service.save_snapshot(
        rooms, store, "lesson-1", {"name": "v1"}, user_id="u1", idempotency_key="k"
    )
    assert saved.id == service.ids.derived_id("snapshot", "u1", "k")
    replay = await service.save_snapshot(
        rooms, store, "lesson-1", {"name": "v1"}, user_id="u1", idempotency_key="k"
    )
    assert replay == saved
    edit(room, lambda notes: notes.insert(2, " and more"))
    assert (await service.read_room(rooms, "lesson-1"))["doc"]["notes"] == "v1 and more"
    listed = await service.list_snapshots(store, "lesson-1")
    assert listed["items"][0]["name"] == "v1" and listed["items"][0]["created_at"].endswith("Z")
    restored = await service.restore_snapshot(rooms, store, "lesson-1", saved.id)
    assert restored == {"room": "lesson-1", "doc": {"notes": "v1"}}
    assert isinstance(await service.room_update(rooms, "lesson-1"), bytes)
    with pytest.raises(NotFound):
        await service.restore_snapshot(rooms, store, "lesson-1", "nope")
    with pytest.raises(NotFound):
        await service.read_room(rooms, "bad name!")
    with pytest.raises(ValidationError, match="name: is required"):
        await service.save_snapshot(
            rooms, store, "lesson-1", {}, user_id="u1", idempotency_key=None
        )
    await rooms.close()
    again = RoomManager(store)
    assert (await service.read_room(again, "lesson-1"))["doc"] == {"notes": "v1"}
    await again.close()
