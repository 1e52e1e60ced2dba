"""Rollout safety through the running proxy: write mirroring and guard rollbacks."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import httpx
import jwt

from banyan.proxy.routing import bucket_of

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
        unkeyed = await client.post("/api/folders", json={"t": 2})
        put = await client.put("/api/sessions/2", json={"t": 3})
        read = await client.get("/api/sessions")
        assert {r.status_code for r in (keyed, unkeyed, put, read)} == {200}
        await wait_for(lambda: len([r for r in stack.legacy.requests if r["method"] != "GET"]) == 3)
    new_writes = [r for r in stack.new.requests if r["method"] != "GET"]
    legacy_writes = [r for r in stack.legacy.requests if r["method"] != "GET"]
    assert [r["path_qs"] for r in legacy_writes] == [
        "/api/sessions",
        "/api/folders",
        "/api/sessions/2",
    ]
    assert legacy_writes[0]["headers"]["idempotency-key"] == "k-1"
    generated = new_writes[1]["headers"]["idempotency-key"]  # a POST gets one if it has none
    assert len(generated) == 32 and legacy_writes[1]["headers"]["idempotency-key"] == generated
    assert legacy_writes[1]["body"] == new_writes[1]["body"]
    # PUT, PATCH and DELETE are idempotent as they are: no key is invented for them
    assert "idempotency-key" not in new_writes[2]["headers"]
    assert "idempotency-key" not in legacy_writes[2]["headers"]
    assert legacy_writes[2]["body"] == new_writes[2]["body"]
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


def api(recorder: Any) -> list[str]:
    """What an upstream received under /api (the health probe's calls left out)."""
    seen = recorder.requests
    return [f"{r['method']} {r['path_qs']}" for r in seen if r["path_qs"].startswith("/api")]


def token(user: str) -> dict[str, str]:
    return {"Authorization": "Bearer " + jwt.encode({"sub": user}, "k" * 32, algorithm="HS256")}


def users_on_each_side(feature: str, percent: float) -> tuple[str, str]:
    """A user the canary sends to legacy, and one it sends to new."""
    names = [f"user{i}" for i in range(100)]
    legacy = next(n for n in names if bucket_of(feature, n) >= percent * 100)
    new = next(n for n in names if bucket_of(feature, n) < percent * 100)
    return legacy, new


async def test_a_canary_mirrors_writes_to_the_side_that_did_not_serve_them(
    make_stack: Any,
) -> None:
    canary = MIRRORED.replace("mode: new", "mode: canary\n    percent: 50")
    on_legacy, on_new = users_on_each_side("api", 50)
    async with make_stack(canary) as stack, httpx.AsyncClient(base_url=stack.url) as client:
        first = await client.post("/api/a", json={}, headers=token(on_legacy))
        second = await client.post("/api/b", json={}, headers=token(on_new))
        assert first.headers["x-banyan-backend"] == "legacy"
        assert second.headers["x-banyan-backend"] == "new"

        def both_mirrored() -> bool:
            return (
                sorted(api(stack.legacy))
                == sorted(api(stack.new))
                == ["POST /api/a", "POST /api/b"]
            )

        await wait_for(both_mirrored)


async def test_a_shadow_write_not_compared_reaches_the_candidate_through_the_queue(
    make_stack: Any,
) -> None:
    shadowed = MIRRORED.replace("mode: new", "mode: shadow")  # no parity hook: nothing compared
    async with make_stack(shadowed) as stack, httpx.AsyncClient(base_url=stack.url) as client:
        answer = await client.post("/api/a", json={}, headers=token("alice"))
        assert answer.headers["x-banyan-backend"] == "legacy"
        await wait_for(lambda: api(stack.new) == ["POST /api/a"])
        read = await client.get("/api/a", headers=token("alice"))
        assert read.headers["x-banyan-backend"] == "legacy"
    assert api(stack.new) == ["POST /api/a"]  # reads are not mirrored


async def test_after_a_flip_a_user_waits_for_their_own_mirrored_write(make_stack: Any) -> None:
    async with make_stack(MIRRORED) as stack, httpx.AsyncClient(base_url=stack.url) as client:
        stack.legacy.delay = 0.5  # the mirror is still delivering when the user comes back
        created = await client.post("/api/a", json={}, headers=token("alice"))
        assert created.headers["x-banyan-backend"] == "new"
        stack.write_flags(MIRRORED.replace("mode: new", "mode: legacy"))
        await wait_for(lambda: stack.state.flags.feature("api").mode == "legacy")
        assert stack.state.fence.pending("legacy", "alice")  # the POST is on its way
        read, other = await asyncio.gather(
            client.get("/api/a", headers=token("alice")),
            client.get("/api/b", headers=token("bob")),  # another user: no wait
        )
        assert read.headers["x-banyan-backend"] == "legacy" and other.status_code == 200
        assert stack.state.fence.waits == 1 and stack.state.fence.timeouts == 0
    seen = api(stack.legacy)  # bob's read may land before or after the mirrored POST: no wait
    assert sorted(seen) == ["GET /api/a", "GET /api/b", "POST /api/a"]
    assert seen.index("POST /api/a") < seen.index("GET /api/a")  # alice's read came after it


async def test_a_status_shift_in_canary_rolls_back_but_shared_refusals_do_not(
    make_stack: Any,
) -> None:
    shifted = """\
  api:
    routes: ["/api/**", "/status/*"]
    mode: canary
    percent: 50
    guards: {max_status_shift: 0.2, window: 40}
"""
    on_legacy, on_new = users_on_each_side("api", 50)
    async with make_stack(shifted) as stack, httpx.AsyncClient(base_url=stack.url) as client:
        for _ in range(30):  # unauthenticated on both sides: no backend is to blame
            for user in (on_legacy, on_new):
                assert (await client.get("/status/401", headers=token(user))).status_code == 401
        await asyncio.sleep(0.1)
        assert stack.state.flags.feature("api").mode == "canary"
        for _ in range(25):  # the same kind of request: legacy serves it, new refuses it
            assert (await client.get("/status/200", headers=token(on_legacy))).status_code == 200
            assert (await client.get("/status/404", headers=token(on_new))).status_code == 404
        await wait_for(lambda: stack.state.flags.feature("api").mode == "legacy")
        status = (await client.get("/_proxy/status")).json()
    assert status["rollbacks"][0]["rule"] == "max_status_shift"
