"""Tests of analytics in ``banyan data backfill``: events copied as data, never rollup rows.

Each store's rollup job folds events at its own moments; a backfill must leave the target's
hourly counts (rollups plus unrolled events) equal to the source's whatever either job did, and
carry over the counts of hours whose events the source has pruned.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import insert, select

from banyan.backends.common.analytics import HOUR_MS
from banyan.backends.common.analytics_tables import RETENTION_MS, rollup_pass
from banyan.backends.common.clock import now_ms
from banyan.backends.datatools import analytics
from banyan.backends.datatools.backfill import backfill
from banyan.backends.datatools.stores import open_engine
from banyan.backends.datatools.verify import verify
from banyan.backends.new.runtime import schema as new_schema
from tests.backends.datatools.conftest import analytics_event, migrated

TABLES = new_schema.analytics


async def _store(
    url: str, *, events: int = 0, rolled: int = 0, hour: int, rollup: int | None = None
) -> None:
    """``events`` events of ``hour``, the first ``rolled`` of them marked rolled, and a rollup row
    of ``rollup`` (default: ``rolled``) when there is anything to count."""
    count = rolled if rollup is None else rollup
    engine = open_engine(url)
    async with engine.begin() as conn:
        if events:
            rows = [analytics_event(n, hour, rolled=n < rolled) for n in range(events)]
            await conn.execute(insert(TABLES.events), rows)
        if count:
            row = {"user_id": "u1", "name": "page.view", "hour_ms": hour, "count": count}
            await conn.execute(insert(TABLES.rollups), [{**row, "updated_ms": 7}])
    await engine.dispose()


async def _state(url: str) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """(rollup rows (hour, count), events (id, rolled)) of a store."""
    engine = open_engine(url)
    async with engine.connect() as conn:
        rollups = (
            await conn.execute(
                select(TABLES.rollups.c.hour_ms, TABLES.rollups.c.count).order_by("hour_ms")
            )
        ).all()
        events = (
            await conn.execute(select(TABLES.events.c.id, TABLES.events.c.rolled).order_by("id"))
        ).all()
    await engine.dispose()
    return [tuple(r) for r in rollups], [tuple(e) for e in events]


async def _differences(legacy: str, new: str) -> int:
    return sum(r.difference_count for r in await verify(legacy, new))


def _recent_hour() -> int:
    now = now_ms()
    return now - now % HOUR_MS - HOUR_MS


async def test_target_already_rolled_up_what_the_source_has_not(
    empty_stores: tuple[str, str],
) -> None:
    """New's job counted the mirrored events, legacy's not yet: the backfill changes nothing on
    new. (Copying the ``rolled`` flags unrolled new's events while its rollup row stayed: ten.)"""
    legacy, new = empty_stores
    await migrated(empty_stores)
    hour = _recent_hour()
    await _store(legacy, events=5, rolled=0, hour=hour)
    await _store(new, events=5, rolled=5, hour=hour)
    before = await _state(new)
    await backfill(legacy, new)
    assert await _state(new) == before
    assert await _differences(legacy, new) == 0


async def test_new_events_arrive_unrolled_and_rollups_are_not_copied(
    empty_stores: tuple[str, str],
) -> None:
    """Legacy counted 3 of its 5 events; new gets the 5 events unrolled and no rollup row, and its
    own rollup pass counts them: 5 either way, never 8."""
    legacy, new = empty_stores
    await migrated(empty_stores)
    hour = _recent_hour()
    await _store(legacy, events=5, rolled=3, hour=hour)
    results = {r.table: r for r in await backfill(legacy, new)}
    assert "analytics_rollups" not in results
    assert results["analytics_events"].inserted == 5
    rollups, events = await _state(new)
    assert rollups == []
    assert {rolled for _, rolled in events} == {False}
    assert await _differences(legacy, new) == 0

    engine = open_engine(new)
    async with engine.begin() as conn:
        assert await rollup_pass(conn.execute, TABLES, engine.dialect.name, now_ms()) == 5
    await engine.dispose()
    assert (await _state(new))[0] == [(hour, 5)]
    assert await _differences(legacy, new) == 0
    again = {r.table: r for r in await backfill(legacy, new)}
    assert again["analytics_events"].unchanged == 5
    assert again[analytics.PRUNED_LABEL].updated == 0


async def test_pruned_hours_carry_their_counts(empty_stores: tuple[str, str]) -> None:
    """Hours older than the retention may have lost their events on legacy: what legacy counts
    more there is added to new's rollup row, once; where new counts as much or more, nothing."""
    legacy, new = empty_stores
    await migrated(empty_stores)
    old = now_ms() - RETENTION_MS - 3 * HOUR_MS
    old -= old % HOUR_MS
    await _store(legacy, hour=old, rollup=4)  # events pruned: the rollup row alone
    await _store(legacy, hour=old - HOUR_MS, rollup=2)
    await _store(legacy, hour=old - 2 * HOUR_MS, rollup=1)
    await _store(new, hour=old - HOUR_MS, rollup=1)  # counts one fewer
    await _store(new, hour=old - 2 * HOUR_MS, rollup=3)  # counts more: left alone
    results = {r.table: r for r in await backfill(legacy, new)}
    assert (results[analytics.PRUNED_LABEL].read, results[analytics.PRUNED_LABEL].updated) == (3, 2)
    rollups, _ = await _state(new)
    assert rollups == [(old - 2 * HOUR_MS, 3), (old - HOUR_MS, 2), (old, 4)]
    again = {r.table: r for r in await backfill(legacy, new)}
    assert again[analytics.PRUNED_LABEL].updated == 0
    assert (await _state(new))[0] == rollups
    reports = {r.table: r for r in await verify(legacy, new)}
    counts = reports[analytics.COUNTS_LABEL]
    assert [d.describe() for d in counts.differences] == [
        f"{analytics.COUNTS_LABEL} u1,page.view,{old - 2 * HOUR_MS}: differs in count"
    ]
