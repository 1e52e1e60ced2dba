"""Tests for banyan/control/rollouts.py: rollout records in the control store, one leader among
the replicas, and a rollout started through one replica driven once for all."""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack
from pathlib import Path

import httpx
import pytest

from banyan.control.db import schema_from_env
from banyan.control.rollouts import ControlRolloutStore
from banyan.control.store import ControlStore
from banyan.proxy.app import STATE, create_app
from banyan.rollout.admin import CONTROLLER
from banyan.rollout.model import RolloutRecord
from banyan.serving import serve
from tests.proxy.upstreams import Recorder, flags_yaml
from tests.rollout.test_controller import FEATURE

pytestmark = pytest.mark.postgres
AUTH = {"Authorization": "Bearer t0ken"}


async def test_records_are_read_and_changed_in_the_store(control_db: str) -> None:
    a = ControlStore(control_db, schema=schema_from_env())
    b = ControlStore(control_db, schema=schema_from_env())
    await a.open()
    await b.open()
    try:
        records = ControlRolloutStore(a, asyncio.get_running_loop())
        assert await asyncio.to_thread(records.load) == {}

        def start(current: dict[str, RolloutRecord]) -> str:
            current["api"] = RolloutRecord("api", "running", 0, [], reason="started")
            return "done"

        assert await asyncio.to_thread(records.update, start) == "done"
        assert await asyncio.to_thread(records.update, lambda current: len(current)) == 1
        loaded = await asyncio.to_thread(records.load)
        assert loaded["api"].state == "running" and loaded["api"].reason == "started"
        await b.refresh()
        assert b.get("rollouts")["api"]["state"] == "running"  # every replica is told
        with pytest.raises(RuntimeError, match="worker thread"):
            records.load()  # on the event loop it would wait for itself
        await a.close()
        with pytest.raises(OSError, match="control store"):
            await asyncio.to_thread(records.load)
    finally:
        await a.close()
        await b.close()


async def test_one_replica_leads_and_a_rollout_started_anywhere_runs_once(
    tmp_path: Path, control_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BANYAN_ADMIN_TOKEN", "t0ken")
    legacy, new = Recorder("legacy"), Recorder("new")
    async with AsyncExitStack() as stack:
        legacy_url = await stack.enter_async_context(serve(legacy.app))
        new_url = await stack.enter_async_context(serve(new.app))
        flags = tmp_path / "flags.yaml"
        flags.write_text(flags_yaml(legacy_url, new_url, FEATURE))
        flags.chmod(0o444)
        urls, apps = [], []
        for _ in range(2):
            app = create_app(flags, health_interval=5, control_db=control_db)
            urls.append(await stack.enter_async_context(serve(app)))
            apps.append(app)
        controllers = [app[CONTROLLER] for app in apps]
        for _ in range(200):
            if any(c.leader for c in controllers):
                break
            await asyncio.sleep(0.05)
        assert [c.leader for c in controllers].count(True) == 1
        async with httpx.AsyncClient(base_url=urls[1], headers=AUTH) as client:
            started = await client.post("/_proxy/rollouts/api/start")
            assert started.status_code == 200, started.text
        states = [app[STATE] for app in apps]
        for _ in range(200):
            if all("api" in s.control.overrides for s in states):
                break
            await asyncio.sleep(0.05)
        assert all(s.control.overrides["api"].source == "rollout" for s in states)
        async with httpx.AsyncClient(base_url=urls[0], headers=AUTH) as client:
            record = (await client.get("/_proxy/rollouts/api")).json()
        assert record["state"] == "running"
        history = await states[0].control.history(feature="api")
        steps = [str(e["after"]) for e in history if e["source"] == "rollout"]
        assert steps and len(steps) == len(set(steps))  # each step applied once, by the leader
        leader = next(c for c in controllers if c.leader)
        await leader.stop()  # its connection goes: the other replica takes over
        other = next(c for c in controllers if c is not leader)
        for _ in range(200):
            if other.leader:
                break
            await asyncio.sleep(0.05)
        assert other.leader


CANARY = """\
  api:
    routes: ["/api/**", "/status/*"]
    mode: legacy
    stick_by: header:X-User
    rollout:
      steps:
        - canary: {percent: 100, for: 1h}
        - new: {}
      analysis:
        {max_error_rate: 0.5, max_latency_ratio: null, max_status_shift: null, min_samples: 4}
"""


async def test_a_step_is_judged_on_every_replicas_evidence(
    tmp_path: Path, control_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BANYAN_ADMIN_TOKEN", "t0ken")
    legacy, new = Recorder("legacy"), Recorder("new")
    async with AsyncExitStack() as stack:
        legacy_url = await stack.enter_async_context(serve(legacy.app))
        new_url = await stack.enter_async_context(serve(new.app))
        flags = tmp_path / "flags.yaml"
        flags.write_text(flags_yaml(legacy_url, new_url, CANARY))
        urls, apps = [], []
        for _ in range(2):
            app = create_app(flags, health_interval=5, control_db=control_db)
            urls.append(await stack.enter_async_context(serve(app)))
            apps.append(app)
        states = [app[STATE] for app in apps]
        async with httpx.AsyncClient(base_url=urls[0], headers=AUTH) as client:
            assert (await client.post("/_proxy/rollouts/api/start")).status_code == 200
        for _ in range(200):  # the canary step is applied on both replicas
            if all(s.flags.feature("api").mode == "canary" for s in states):
                break
            await asyncio.sleep(0.05)
        for _ in range(200):  # and each replica has its window of the step
            if all("api" in app[CONTROLLER].windows for app in apps):
                break
            await asyncio.sleep(0.05)
        assert all("api" in app[CONTROLLER].windows for app in apps)
        for url in urls:  # 2 failures each: under min_samples for either replica alone
            async with httpx.AsyncClient(base_url=url) as client:
                for i in range(2):
                    answer = await client.get("/status/500", headers={"X-User": f"u{i}"})
                    assert answer.headers["X-Banyan-Backend"] == "new"
        record: dict[str, object] = {}
        async with httpx.AsyncClient(base_url=urls[1], headers=AUTH) as client:
            for _ in range(200):
                record = (await client.get("/_proxy/rollouts/api")).json()
                if record["state"] == "aborted":
                    break
                await asyncio.sleep(0.05)
        assert record["state"] == "aborted", record
        assert record["abort_gate"] == "max_error_rate"
        assert int(record["samples"]) >= 4  # both replicas' failures
