"""The shared engine factory: the one-trip aiosqlite adapter on a real SQLite file, and the gate."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiosqlite
import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, insert, select, text, update
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine

from banyan.engines import WriteGate, make_engine

metadata = MetaData()
items = Table(
    "items",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(20), unique=True, nullable=False),
)


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    made = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'store.db'}")
    async with made.begin() as conn:
        await conn.run_sync(metadata.create_all)
    yield made
    await made.dispose()


@pytest.fixture
def trips(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every call that goes to an aiosqlite connection's thread, by function name."""
    seen: list[str] = []
    original = aiosqlite.Connection._execute

    async def counted(self: aiosqlite.Connection, fn: Any, *args: Any, **kwargs: Any) -> Any:
        seen.append(getattr(fn, "__name__", repr(fn)))
        return await original(self, fn, *args, **kwargs)

    monkeypatch.setattr(aiosqlite.Connection, "_execute", counted)
    return seen


async def test_statements_return_rows_counts_and_ids(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        added = await conn.execute(insert(items).values(name="a"))
        assert added.lastrowid == 1 and added.rowcount == 1
        await conn.execute(insert(items), [{"name": "b"}, {"name": "c"}])
        renamed = await conn.execute(
            update(items).where(items.c.name != "a").values(name=items.c.name + "!")
        )
        assert renamed.rowcount == 2
        returned = await conn.execute(
            update(items).where(items.c.id == 1).values(name="z").returning(items.c.name)
        )
        assert returned.scalar_one() == "z"
    async with engine.connect() as conn:
        rows = (await conn.execute(select(items.c.name).order_by(items.c.id))).scalars().all()
        assert rows == ["z", "b!", "c!"]
        streamed = [row.name async for row in await conn.stream(select(items))]
        assert len(streamed) == 3


async def test_errors_surface_as_sqlalchemy_errors_and_roll_back(engine: AsyncEngine) -> None:
    with pytest.raises(IntegrityError):
        async with engine.begin() as conn:
            await conn.execute(insert(items).values(name="x"))
            await conn.execute(insert(items).values(name="x"))
    with pytest.raises(OperationalError):
        async with engine.connect() as conn:
            await conn.execute(text("SELECT * FROM no_such_table"))
    async with engine.connect() as conn:
        assert (await conn.execute(select(items))).all() == []


async def test_a_failed_first_write_is_rolled_back_and_frees_the_lock(
    engine: AsyncEngine, trips: list[str]
) -> None:
    async with engine.begin() as conn:
        await conn.execute(insert(items).values(name="taken"))
    trips.clear()
    with pytest.raises(IntegrityError):
        async with engine.begin() as conn:
            await conn.execute(insert(items).values(name="taken"))
    assert trips == ["_run", "rollback"]

    async def write_elsewhere() -> None:
        async with engine.connect() as first, engine.begin() as second:
            await first.execute(select(items))  # keep the failed one checked out ...
            await second.execute(insert(items).values(name="free"))  # ... and write on another

    await asyncio.wait_for(write_elsewhere(), 5)


async def test_a_statement_is_one_trip_and_reads_need_no_rollback(
    engine: AsyncEngine, trips: list[str]
) -> None:
    async with engine.connect() as conn:
        await conn.execute(select(items))
        await conn.execute(select(items).where(items.c.id == 1))
    assert trips == ["_run", "_run"]
    trips.clear()
    async with engine.begin() as conn:
        await conn.execute(insert(items).values(name="w"))
    assert trips == ["_run", "commit"]
    trips.clear()
    with pytest.raises(RuntimeError):
        async with engine.begin() as conn:
            await conn.execute(insert(items).values(name="v"))
            raise RuntimeError("undo")
    assert trips == ["_run", "rollback"]
    async with engine.connect() as conn:
        assert (await conn.execute(select(items.c.name))).scalars().all() == ["w"]


async def test_the_gate_lets_one_writer_in_at_a_time_on_sqlite(engine: AsyncEngine) -> None:
    gate = WriteGate(engine)
    inside = 0
    most = 0

    async def writer() -> None:
        nonlocal inside, most
        async with gate():
            inside += 1
            most = max(most, inside)
            await asyncio.sleep(0.01)
            inside -= 1

    await asyncio.gather(*(writer() for _ in range(5)))
    assert most == 1


async def test_the_gate_is_open_on_a_server_database() -> None:
    server = make_engine("postgresql+asyncpg://u:p@127.0.0.1:9/none")
    gate = WriteGate(server)
    async with gate(), gate():  # not a lock: nesting does not wait
        pass
    await server.dispose()
