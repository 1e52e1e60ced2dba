"""Tests for banyan/control/plane.py: proxy replicas on one read-only flag file and one control
store — admin flips and guard rollbacks reach every replica, decided and audited once, and the
file is never written."""

from __future__ import annotations

import asyncio
import os
import stat
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from banyan.proxy.app import STATE, ProxyState, create_app
from banyan.serving import serve
from tests.proxy.conftest import make_stack
from tests.proxy.upstreams import Recorder, flags_yaml

pytestmark = pytest.mark.postgres

FEATURES = """\
  api:
    routes: ["/api/**", "/status/*"]
    mode: new   # reviewed in PR 12
    guards: {max_error_rate: 0.5, window: 4}
  docs:
    routes: ["/docs/**"]
    mode: legacy
"""
TOKEN = {"Authorization": "Bearer t0ken"}
__all__ = ["make_stack"]


@asynccontextmanager
async def replicas(
    tmp_path: Path, control_db: str, count: int = 2
) -> AsyncIterator[tuple[list[str], list[ProxyState], Path]]:
    legacy, new = Recorder("legacy"), Recorder("new")
    async with AsyncExitStack() as stack:
        legacy_url = await stack.enter_async_context(serve(legacy.app))
        new_url = await stack.enter_async_context(serve(new.app))
        flags = tmp_path / "flags.yaml"
        flags.write_text(flags_yaml(legacy_url, new_url, FEATURES))
        flags.chmod(stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)  # a read-only ConfigMap
        urls, states = [], []
        for _ in range(count):
            app = create_app(flags, health_interval=5, control_db=control_db)
            urls.append(await stack.enter_async_context(serve(app)))
            states.append(app[STATE])
        yield urls, states, flags


async def until(check: Any, what: str) -> None:
    for _ in range(200):
        if check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"never happened: {what}")


async def test_an_admin_flip_reaches_every_replica_and_the_file_is_untouched(
    tmp_path: Path, control_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BANYAN_ADMIN_TOKEN", "t0ken")
    async with replicas(tmp_path, control_db) as (urls, states, flags):
        before = flags.read_bytes(), os.stat(flags).st_mtime_ns
        async with httpx.AsyncClient(base_url=urls[0], headers=TOKEN) as admin:
            put = await admin.put("/_proxy/flags/docs", json={"mode": "new"})
            refused = await admin.put("/_proxy/flags/docs", json={"mode": "sideways"})
            assert put.status_code == 200, put.text
            assert put.json()["settings"]["mode"] == "new"
            assert refused.status_code == 400
            assert refused.json()["error"]["code"] == "invalid_flags"
            assert states[0].flags.feature("docs").mode == "new"  # applied before the answer
            await until(lambda: states[1].flags.feature("docs").mode == "new", "replica 2")
            async with httpx.AsyncClient(base_url=urls[1], headers=TOKEN) as other:
                audit = (await other.get("/_proxy/audit")).json()["entries"]
                status = (await other.get("/_proxy/status")).json()
                served = await other.get("/docs/x")
        assert [(e["source"], e["feature"]) for e in audit] == [("admin", "docs")]
        assert audit[0]["before"]["mode"] == "legacy" and audit[0]["after"]["mode"] == "new"
        override = status["control"]["overrides"]["docs"]
        assert override["changes"] == {"mode": "new"} and override["source"] == "admin"
        assert served.headers["X-Banyan-Backend"] == "new"
        assert (flags.read_bytes(), os.stat(flags).st_mtime_ns) == before


async def test_a_guard_breach_rolls_back_once_across_replicas(
    tmp_path: Path, control_db: str
) -> None:
    async with replicas(tmp_path, control_db, count=3) as (urls, states, flags):
        before = flags.read_bytes()

        # each replica sees 2 failures, under the window's 4 samples alone: only the sum of
        # all three replicas' windows is evidence enough, and one of them decides
        async def fail(url: str) -> None:
            async with httpx.AsyncClient(base_url=url) as client:
                for _ in range(2):
                    await client.get("/status/500")

        await asyncio.gather(*(fail(u) for u in urls))
        for state in states:
            await until(lambda s=state: s.flags.feature("api").mode == "legacy", "rolled back")
        await asyncio.sleep(0.3)  # let every replica's rollback attempt finish
        for state in states:
            await asyncio.gather(*list(state._tasks), return_exceptions=True)
        history = await states[0].control.history()
        guard = [e for e in history if e["source"] == "guard"]
        assert len(guard) == 1 and guard[0]["feature"] == "api"
        assert "max_error_rate" in guard[0]["reason"]
        assert sum(len(s.breaches) for s in states) == 1
        assert all(
            s.guards.get("api") is None or s.guards.get("api").rates()["new_samples"] < 4
            for s in states
        )
        (decided,) = [s for s in states if s.breaches]
        assert decided.breaches[0]["samples"] > 2  # more than any one replica saw
        assert flags.read_bytes() == before


async def test_a_file_edit_is_audited_once_whichever_replicas_see_it(
    tmp_path: Path, control_db: str
) -> None:
    async with replicas(tmp_path, control_db) as (_urls, states, flags):
        flags.chmod(0o644)
        flags.write_text(flags.read_text().replace("mode: legacy", "mode: new"))
        for state in states:
            await state.store.refresh(force=True)
            await until(lambda s=state: s.flags.feature("docs").mode == "new", "file edit")
        for state in states:
            await asyncio.gather(*list(state._tasks), return_exceptions=True)
        history = await states[0].control.history()
        assert [(e["source"], e["feature"]) for e in history] == [("file", "docs")]


async def test_a_rollout_step_is_an_override_not_a_file_write(
    make_stack: Any, control_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.rollout.test_controller import FEATURE

    monkeypatch.setenv("BANYAN_ADMIN_TOKEN", "t0ken")
    async with (
        make_stack(FEATURE, control_db=control_db) as stack,
        httpx.AsyncClient(base_url=stack.url, headers=TOKEN) as client,
    ):
        before = stack.flags.read_bytes()
        started = await client.post("/_proxy/rollouts/api/start")
        assert started.status_code == 200, started.text
        await until(lambda: "api" in stack.state.control.overrides, "the first step")
        override = stack.state.control.overrides["api"]
        assert override.source == "rollout" and override.changes["writes"] == "mirror"
        assert stack.flags.read_bytes() == before


async def test_an_admin_flip_without_the_store_is_a_503(
    tmp_path: Path, control_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BANYAN_ADMIN_TOKEN", "t0ken")
    async with replicas(tmp_path, control_db, count=1) as (urls, states, _flags):
        await states[0].control.guards.stop()
        await states[0].control.store.close()
        async with httpx.AsyncClient(base_url=urls[0], headers=TOKEN) as admin:
            put = await admin.put("/_proxy/flags/docs", json={"mode": "new"})
        assert put.status_code == 503
        assert put.json()["error"]["code"] == "control_store_unavailable"
