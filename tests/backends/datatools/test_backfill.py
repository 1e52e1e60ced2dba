"""Tests of ``banyan data backfill``: a full copy that verifies clean and serves from the new
backend, idempotent reruns, resuming after an interruption, and the command line."""

from __future__ import annotations

import io

import httpx
import pytest

from banyan.backends.datatools.backfill import backfill
from banyan.backends.datatools.cli import main
from banyan.backends.datatools.verify import verify
from banyan.backends.new.app import create_app as create_new
from banyan.serving import serve
from tests.backends.datatools.conftest import PASSWORD, Stores, fill_legacy, run_cli


async def test_ten_thousand_sessions_copy_verify_and_serve(empty_stores: tuple[str, str]) -> None:
    legacy, new = empty_stores
    _, sid = await fill_legacy(legacy, extra_sessions=10_000)
    results = {r.table: r for r in await backfill(legacy, new, stream=io.StringIO())}
    assert results["study_sessions->sessions"].inserted == 10_003
    assert results["messages"].inserted == 6
    assert results["revoked_tokens"].inserted == 1
    reports = await verify(legacy, new)
    assert sum(r.difference_count for r in reports) == 0
    sessions = next(r for r in reports if r.table == "study_sessions->sessions")
    assert sessions.legacy_rows == sessions.new_rows == sessions.matched == 10_003

    # The new backend serves the copied records: same password, same session, same messages.
    async with serve(create_new(new)) as base, httpx.AsyncClient(base_url=base) as http:
        login = await http.post("/api/auth/login", json={"email": "d@x.io", "password": PASSWORD})
        assert login.status_code == 200
        auth = {"Authorization": f"Bearer {login.json()['token']}"}
        got = await http.get(f"/api/sessions/{sid}/messages", headers=auth)
        assert [m["content"] for m in got.json()["items"]] == ["hello", "world"]
        ctx = await http.get(f"/api/sessions/{sid}/context", headers=auth)
        assert ctx.json()["context"] == {"i": 2}

    again = await backfill(legacy, new, stream=io.StringIO())
    assert all(r.inserted == 0 and r.updated == 0 for r in again)
    assert sum(r.read for r in again) == sum(r.read for r in results.values())


class Interrupt(Exception):
    """Stands in for Ctrl-C in the middle of a table."""


class InterruptingStream(io.StringIO):
    """A progress stream that interrupts the run on its ``limit``-th write."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit

    def write(self, text: str) -> int:
        self.limit -= 1
        if self.limit == 0:
            raise Interrupt
        return super().write(text)

    def isatty(self) -> bool:
        return True  # one write per batch


async def test_resumes_after_an_interruption(stores: Stores) -> None:
    with pytest.raises(Interrupt):
        # users (1 batch + finish), revoked_tokens (1 + finish), folders (1 + finish), then stop
        # in the second batch of the sessions (it is committed; the interruption comes after).
        await backfill(stores.legacy, stores.new, batch=1, stream=InterruptingStream(8))
    resumed = {
        r.table: r for r in await backfill(stores.legacy, stores.new, batch=1, stream=io.StringIO())
    }
    sessions = resumed["study_sessions->sessions"]
    assert sessions.resumed and sessions.read == 1 and sessions.inserted == 1
    assert not resumed["users"].resumed and resumed["users"].inserted == 0
    assert sum(r.difference_count for r in await verify(stores.legacy, stores.new)) == 0


async def test_restart_ignores_checkpoints(stores: Stores) -> None:
    with pytest.raises(Interrupt):
        await backfill(stores.legacy, stores.new, batch=1, stream=InterruptingStream(8))
    results = {
        r.table: r
        for r in await backfill(
            stores.legacy, stores.new, batch=1, restart=True, stream=io.StringIO()
        )
    }
    assert not results["study_sessions->sessions"].resumed
    assert results["study_sessions->sessions"].read == 3


async def test_updates_changed_records(stores: Stores, capsys: pytest.CaptureFixture[str]) -> None:
    assert await run_cli(["backfill", "--legacy", stores.legacy, "--new", stores.new]) == 0
    out = capsys.readouterr().out
    assert "study_sessions->sessions" in out and "inserted" in out
    async with serve(create_new(stores.new)) as base, httpx.AsyncClient(base_url=base) as http:
        login = await http.post("/api/auth/login", json={"email": "d@x.io", "password": PASSWORD})
        auth = {"Authorization": f"Bearer {login.json()['token']}"}
        await http.patch(
            f"/api/sessions/{stores.session_id}", json={"title": "drifted"}, headers=auth
        )
    results = {r.table: r for r in await backfill(stores.legacy, stores.new, stream=io.StringIO())}
    assert results["study_sessions->sessions"].updated == 1
    assert sum(r.difference_count for r in await verify(stores.legacy, stores.new)) == 0


def test_cli_rejects_bad_batch_and_foreign_stores(
    tmp_path: object, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["backfill", "--batch", "0"]) == 2
    empty = f"sqlite:///{tmp_path}/nothing.db"
    assert main(["backfill", "--legacy", empty, "--new", f"sqlite:///{tmp_path}/new.db"]) == 1
    assert "is it a legacy store" in capsys.readouterr().err
