"""Whiteboard rooms in the data tools: merged as documents by backfill, compared by verify."""

from __future__ import annotations

import io

from pycrdt import Doc, Map, Text
from sqlalchemy import MetaData, Table, insert, select

from banyan.backends.datatools.backfill import TableResult, backfill
from banyan.backends.datatools.stores import open_engine
from banyan.backends.datatools.verify import verify
from tests.backends.datatools.conftest import Stores


async def _append(url: str, room: str, update: bytes) -> None:
    engine = open_engine(url)
    async with engine.begin() as conn:
        table = await conn.run_sync(
            lambda c: Table("whiteboard_updates", MetaData(), autoload_with=c)
        )
        await conn.execute(insert(table).values(room=room, data=update))
    await engine.dispose()


async def _rows(url: str) -> int:
    engine = open_engine(url)
    async with engine.connect() as conn:
        table = await conn.run_sync(
            lambda c: Table("whiteboard_updates", MetaData(), autoload_with=c)
        )
        count = len((await conn.execute(select(table.c.id))).all())
    await engine.dispose()
    return count


def _rooms(results: list[TableResult]) -> tuple[int, int]:
    room = next(r for r in results if r.table == "whiteboard_updates (rooms)")
    return room.read, room.inserted


async def test_rooms_merge_and_compare(stores: Stores) -> None:
    board: Doc = Doc()
    shapes = board.get("shapes", type=Map)
    shapes["a"] = {"kind": "rect", "x": 1}
    await _append(stores.legacy, "r1", board.get_update())
    state = board.get_state()
    shapes["b"] = {"kind": "circle", "x": 2}
    await _append(stores.legacy, "r1", board.get_update(state))
    notes: Doc = Doc()
    notes.get("notes", type=Text).insert(0, "hello")
    await _append(stores.legacy, "r2", notes.get_update())

    assert _rooms(await backfill(stores.legacy, stores.new, stream=io.StringIO())) == (2, 2)
    assert _rooms(await backfill(stores.legacy, stores.new, stream=io.StringIO())) == (2, 0)
    rooms = next(r for r in await verify(stores.legacy, stores.new) if "rooms" in r.table)
    assert rooms.difference_count == 0 and rooms.matched == 2

    # A deletion and an edit on legacy after the first copy: merged as one new update.
    state = board.get_state()
    del shapes["a"]
    shapes["c"] = {"kind": "line"}
    await _append(stores.legacy, "r1", board.get_update(state))
    before = await _rows(stores.new)
    assert _rooms(await backfill(stores.legacy, stores.new, stream=io.StringIO())) == (2, 1)
    assert await _rows(stores.new) == before + 1
    assert sum(r.difference_count for r in await verify(stores.legacy, stores.new)) == 0

    # An edit made only on new is reported, naming the root that differs.
    state = board.get_state()
    shapes["d"] = {"kind": "dot"}
    await _append(stores.new, "r1", board.get_update(state))
    other: Doc = Doc()
    other.get("meta", type=Map)["title"] = "only new"
    await _append(stores.new, "r3", other.get_update())
    report = next(r for r in await verify(stores.legacy, stores.new) if "rooms" in r.table)
    described = sorted(d.describe() for d in report.differences)
    assert described == [
        "whiteboard_updates r1: differs in shapes",
        "whiteboard_updates r3: new only",
    ]
