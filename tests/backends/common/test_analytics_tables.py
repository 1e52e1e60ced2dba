"""Tests of banyan/backends/common/analytics_tables.py on a real SQLite store: rows, summaries,
rollups."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import MetaData, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from banyan.backends.common import analytics_tables as at
from banyan.backends.common.analytics import HOUR_MS, Event
from banyan.backends.common.ids import derived_id

T0 = 1_795_000_000_000 - 1_795_000_000_000 % HOUR_MS


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[tuple[AsyncEngine, at.AnalyticsTables]]:
    metadata = MetaData()
    tables = at.define_tables(metadata)
    engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'a.db'}")
    async with engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
    yield engine, tables
    await engine.dispose()


def events(*spec: tuple[str, int]) -> list[Event]:
    return [Event(name, at_ms, None, {"k": 1}) for name, at_ms in spec]


def test_rows_and_ids_are_derived_the_same_everywhere() -> None:
    batch = at.batch_id("u1", "key")
    assert batch == derived_id("event-batch", "u1", "key") and at.batch_id("u1", None) != batch
    rows = at.event_rows("u1", batch, events(("a", T0 + 5), ("b", T0 + HOUR_MS + 1)), T0 + 9)
    assert rows == at.event_rows(
        "u1", batch, events(("a", T0 + 5), ("b", T0 + HOUR_MS + 1)), T0 + 9
    )
    assert [r["hour_ms"] for r in rows] == [T0, T0 + HOUR_MS]
    assert rows[0]["properties"] == '{"k":1}' and len({r["id"] for r in rows}) == 2
    assert not rows[0]["rolled"] and rows[0]["received_ms"] == T0 + 9


async def test_summary_is_exact_before_during_and_after_the_rollup(
    store: tuple[AsyncEngine, at.AnalyticsTables],
) -> None:
    engine, t = store
    spec = [("a", T0 + 1), ("a", T0 + 2), ("b", T0 + HOUR_MS), ("a", T0 + 3 * HOUR_MS)]
    async with engine.begin() as conn:
        await conn.execute(
            insert(t.events), at.event_rows("u1", at.batch_id("u1", None), events(*spec), T0)
        )
        await conn.execute(
            insert(t.events), at.event_rows("u2", at.batch_id("u2", None), events(("a", T0)), T0)
        )

    async def summary() -> list[tuple[str, int, int]]:
        async with engine.connect() as conn:
            result = await conn.execute(at.summary_statement(t, "u1", T0, T0 + 2 * HOUR_MS))
            return sorted(at.summary_rows(result))

    expected = [("a", T0, 2), ("b", T0 + HOUR_MS, 1)]
    assert await summary() == expected
    async with engine.begin() as conn:
        assert await at.rollup_pass(conn.execute, t, "sqlite", T0, limit=2) == 2
    assert sum(n for _, _, n in await summary()) == 3  # partly rolled: still exact
    async with engine.begin() as conn:
        assert await at.rollup_pass(conn.execute, t, "sqlite", T0) == 3
        assert await at.rollup_pass(conn.execute, t, "sqlite", T0) == 0
    assert await summary() == expected
    async with engine.connect() as conn:
        rollups = (await conn.execute(select(t.rollups.c.user_id, t.rollups.c.count))).all()
    assert sorted(rollups) == [("u1", 1), ("u1", 1), ("u1", 2), ("u2", 1)]


async def test_prune_drops_only_rolled_events_and_batches_past_retention(
    store: tuple[AsyncEngine, at.AnalyticsTables],
) -> None:
    engine, t = store
    async with engine.begin() as conn:
        old = at.event_rows("u", at.batch_id("u", "k"), events(("a", T0), ("a", T0)), T0)
        await conn.execute(insert(t.events), old)
        await conn.execute(
            insert(t.batches).values(
                id=old[0]["batch_id"], user_id="u", size=2, idem_hash="h", created_ms=T0
            )
        )
        await at.rollup_pass(conn.execute, t, "sqlite", T0)
        fresh = at.event_rows("u", at.batch_id("u", None), events(("a", T0)), T0)
        await conn.execute(insert(t.events), fresh)  # not rolled: never pruned
        later = T0 + at.RETENTION_MS + 1
        assert await at.prune_pass(conn.execute, t, later) == 2
        assert (await conn.execute(select(t.batches))).first() is None
        assert len((await conn.execute(select(t.events))).all()) == 1
