"""Tests of ``banyan data verify``: every kind of difference is found and listed, exit codes."""

from __future__ import annotations

import io
import json

import pytest
from sqlalchemy import delete, insert, update

from banyan.backends.datatools.backfill import backfill
from banyan.backends.datatools.stores import open_engine
from banyan.backends.datatools.verify import verify
from banyan.backends.new.runtime import schema as new_schema
from banyan.backends.new.runtime.schema import messages, sessions
from tests.backends.datatools.conftest import Stores, analytics_event, migrated, run_cli


async def _drift(new_url: str, session_id: str) -> str:
    """Make three differences in the new store; return the id of the dropped message."""
    engine = open_engine(new_url)
    async with engine.begin() as conn:
        dropped = (await conn.execute(messages.select().limit(1))).first()
        assert dropped is not None
        await conn.execute(delete(messages).where(messages.c.id == dropped.id))
        await conn.execute(
            update(sessions).where(sessions.c.id == session_id).values(title="x", message_count=9)
        )
        await conn.execute(
            insert(sessions).values(
                id="zz-only-new",
                user_id="u",
                folder_id=None,
                title="t",
                created_ms=1,
                updated_ms=1,
                expires_ms=2,
                message_count=0,
                idem_hash=None,
            )
        )
    await engine.dispose()
    return str(dropped.id)


async def test_finds_and_lists_every_difference(
    stores: Stores, capsys: pytest.CaptureFixture[str]
) -> None:
    await backfill(stores.legacy, stores.new, stream=io.StringIO())
    assert await run_cli(["verify", "--legacy", stores.legacy, "--new", stores.new]) == 0
    assert "stores match" in capsys.readouterr().out
    dropped = await _drift(stores.new, stores.session_id)

    reports = {r.table: r for r in await verify(stores.legacy, stores.new)}
    kinds = {(d.kind, d.key[0]) for r in reports.values() for d in r.differences}
    assert kinds == {
        ("missing_in_new", dropped),
        ("differs", stores.session_id),
        ("only_in_new", "zz-only-new"),
    }
    changed = next(
        d for d in reports["study_sessions->sessions"].differences if d.kind == "differs"
    )
    assert changed.columns == ("title", "message_count")

    assert await run_cli(["verify", "--legacy", stores.legacy, "--new", stores.new]) == 1
    out = capsys.readouterr().out
    assert f"messages {dropped}: legacy only (missing in new)" in out
    assert f"{stores.session_id}: differs in title, message_count" in out
    assert "zz-only-new: new only" in out and "3 differences" in out

    both = ["--legacy", stores.legacy, "--new", stores.new]
    assert await run_cli(["verify", *both, "--json", "--max-listed", "0"]) == 1
    body = json.loads(capsys.readouterr().out)
    assert body["differences"] == 3 and all(t["listed"] == [] for t in body["tables"])
    assert (
        await run_cli(
            ["verify", "--legacy", stores.legacy, "--new", stores.new, "--max-listed", "1"]
        )
        == 1
    )
    assert "... and 1 more differences" in capsys.readouterr().out


async def test_unmigrated_new_store_is_a_clear_error(
    stores: Stores, tmp_path: object, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        await run_cli(
            ["verify", "--legacy", stores.legacy, "--new", f"sqlite:///{tmp_path}/blank.db"]
        )
        == 1
    )
    assert "is it a migrated new store" in capsys.readouterr().err


async def _fill_analytics(url: str, *, rolled: int, events: int, hour: int) -> None:
    """``events`` events of one hour, the first ``rolled`` of them folded into a rollup row."""
    engine = open_engine(url)
    rows = [analytics_event(n, hour, rolled=n < rolled) for n in range(events)]
    async with engine.begin() as conn:
        await conn.execute(insert(new_schema.analytics.events), rows)
        if rolled:
            rollup = {"user_id": "u1", "name": "page.view", "hour_ms": hour, "count": rolled}
            await conn.execute(insert(new_schema.analytics.rollups), [{**rollup, "updated_ms": 7}])
    await engine.dispose()


async def test_analytics_compare_as_hourly_counts_whatever_each_rollup_did(
    empty_stores: tuple[str, str],
) -> None:
    """One store rolled its events up, the other not yet: the same data, no difference. A count
    that really differs is named by user, event and hour."""
    legacy, new = empty_stores
    await migrated(empty_stores)
    hour = 1_764_000_000_000 - 1_764_000_000_000 % 3_600_000
    await _fill_analytics(legacy, rolled=3, events=5, hour=hour)
    await _fill_analytics(new, rolled=0, events=5, hour=hour)
    reports = {r.table: r for r in await verify(legacy, new)}
    counts = reports["analytics_rollups (hourly counts)"]
    assert (counts.legacy_rows, counts.new_rows, counts.matched) == (1, 1, 1)
    assert "analytics_rollups" not in reports
    assert sum(r.difference_count for r in reports.values()) == 0

    engine = open_engine(new)
    async with engine.begin() as conn:
        row = analytics_event(9, hour, rolled=False)
        await conn.execute(insert(new_schema.analytics.events), [row])
    await engine.dispose()
    reports = {r.table: r for r in await verify(legacy, new)}
    assert [d.describe() for d in reports["analytics_rollups (hourly counts)"].differences] == [
        f"analytics_rollups (hourly counts) u1,page.view,{hour}: differs in count"
    ]
    assert reports["analytics_events"].differences[0].kind == "only_in_new"
