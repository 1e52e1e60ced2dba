"""Rollout safety through the running proxy: write mirroring and guard rollbacks."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import httpx

MIRRORED = """\
  api:
    routes: ["/api/**", "/status/*"]
    mode: new
    writes: mirror
"""

GUARDED = """\
  api:
    routes: ["/api/**", "/status/*"]
    mode: new  # the feature under test
    guards: {max_error_rate: 0.2, window: 20}
"""


async def wait_for(predicate: Any, timeout: float = 5.0) -> None:
    for _ in range(int(timeout / 0.02)):
        if predicate():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("condition not reached")


async def test_writes_on_new_are_mirrored_to_legacy(make_stack: Any) -> None:
    async with make_stack(MIRRORED) as stack, httpx.AsyncClient(base_url=stack.url) as client:
        keyed = await client.post(
            "/api/sessions", json={"t": 1}, headers={"Idempotency-Key": "k-1"}
        )
        unkeyed = await client.put("/api/sessions/2", json={"t": 2})
        read = await client.get("/api/sessions")
        assert keyed.status_code == unkeyed.status_code == read.status_code == 200
        await wait_for(lambda: len([r for r in stack.legacy.requests if r["method"] != "GET"]) == 2)
    new_writes = [r for r in stack.new.requests if r["method"] != "GET"]
    legacy_writes = [r for r in stack.legacy.requests if r["method"] != "GET"]
    assert [r["path_qs"] for r in legacy_writes] == ["/api/sessions", "/api/sessions/2"]
    assert legacy_writes[0]["headers"]["idempotency-key"] == "k-1"
    generated = new_writes[1]["headers"]["idempotency-key"]
    assert len(generated) == 32 and legacy_writes[1]["headers"]["idempotency-key"] == generated
    assert legacy_writes[1]["body"] == new_writes[1]["body"]
    assert not [
        r
        for r in stack.legacy.requests
        if r["method"] == "GET" and "x-forwarded-for" in r["headers"]
    ]


async def test_a_breached_guard_rolls_the_feature_back(make_stack: Any) -> None:
    async with make_stack(GUARDED) as stack, httpx.AsyncClient(base_url=stack.url) as client:
        for _ in range(10):
            assert (await client.get("/api/ok")).headers["x-banyan-backend"] == "new"
        for _ in range(10):
            await client.get("/status/500")
        await wait_for(lambda: stack.state.flags.feature("api").mode == "legacy")
        text = stack.flags.read_text()
        assert re.search(r"mode: legacy +# the feature under test", text)  # comment kept
        after = await client.get("/api/ok")
        status = (await client.get("/_proxy/status")).json()
        audit = (await client.get("/_proxy/audit")).json()["entries"]
        metrics = (await client.get("/_proxy/metrics")).text
    assert after.headers["x-banyan-backend"] == "legacy"
    assert status["rollbacks"][0]["rule"] == "max_error_rate"
    assert status["features"]["api"]["mode"] == "legacy"
    assert audit[0]["source"] == "guard" and "max_error_rate" in audit[0]["reason"]
    assert len([e for e in audit if e["feature"] == "api"]) == 1
    assert 'banyan_rollbacks_total{feature="api",rule="max_error_rate"} 1' in metrics
