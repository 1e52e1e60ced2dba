"""Tests of ``banyan data verify``: every kind of difference is found and listed, exit codes."""

from __future__ import annotations

import io
import json

import pytest
from sqlalchemy import delete, insert, update

from banyan.backends.datatools.backfill import backfill
from banyan.backends.datatools.stores import open_engine
from banyan.backends.datatools.verify import verify
from banyan.backends.new.runtime.schema import messages, sessions
from tests.backends.datatools.conftest import Stores, run_cli


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
