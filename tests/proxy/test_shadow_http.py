"""HTTP copies (banyan/proxy/shadow/http.py): a resting candidate costs the request nothing."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import jwt

from banyan.proxy.shadow import Shadow
from tests.proxy.conftest import real_backends_new_behind_faults
from tests.proxy.fault_front import Fault
from tests.proxy.test_shadow import features, forwarded, make_shadow, settle, wait_for_mirror

ALICE = {"Authorization": "Bearer " + jwt.encode({"sub": "alice"}, "k" * 32)}


async def skip_reasons(shadow: Shadow, count: int) -> dict[str, Any]:
    for _ in range(200):
        await shadow.recorder.flush()
        data = await shadow.recorder.store.summary()
        if data["features"] and data["features"][0]["skipped"] >= count:
            return dict(data["features"][0]["skip_reasons"])
        await asyncio.sleep(0.02)
    raise AssertionError(f"fewer than {count} skips recorded")


async def test_a_resting_candidate_takes_no_place_in_line_and_writes_still_reach_it(
    make_stack: Any, tmp_path: Path
) -> None:
    mirrored = features(extra="    writes: mirror\n")
    async with make_stack(mirrored, shadow=make_shadow(tmp_path)) as stack:
        shadow: Shadow = stack.state.shadow
        shadow.breaker.threshold, shadow.breaker.cooldown = 1, 60
        shadow.breaker.observe("new", failed=True)  # resting for a minute
        stack.legacy.delay = 0.4
        async with httpx.AsyncClient(base_url=stack.url) as client:
            write = asyncio.ensure_future(
                client.post("/api/sessions/7/notes", json={"t": 1}, headers=ALICE)
            )
            read = asyncio.ensure_future(client.get("/api/sessions/7", headers=ALICE))
            await asyncio.sleep(0.2)  # both are at the primary now
            held = (
                stack.state.fence.status()["on_their_way"],
                shadow.reads.status()["on_their_way"],
            )
            answers = await asyncio.gather(write, read)
            await wait_for_mirror(stack, 1)
            reasons = await skip_reasons(shadow, 2)
        assert shadow.breaker.status()["new"]["state"] == "open"  # the probe was not taken
    assert [a.status_code for a in answers] == [200, 200]
    assert held == (0, 0)  # no copy's place was held while the primary answered
    assert reasons == {"candidate_failing": 2}
    assert stack.state.metrics.shadow_skipped.get("api", "candidate_failing") == 2
    posts = [r for r in forwarded(stack.new) if r["method"] == "POST"]
    assert len(posts) == 1 and not [r for r in forwarded(stack.new) if r["method"] == "GET"]
    key = forwarded(stack.legacy)[0]["headers"].get("idempotency-key")
    assert key is not None and posts[0]["headers"]["idempotency-key"] == key


async def test_a_candidate_due_for_its_probe_is_copied(make_stack: Any, tmp_path: Path) -> None:
    async with make_stack(features(), shadow=make_shadow(tmp_path)) as stack:
        shadow: Shadow = stack.state.shadow
        shadow.breaker.threshold, shadow.breaker.cooldown = 1, 0.2
        shadow.breaker.observe("new", failed=True)
        await asyncio.sleep(0.3)  # the rest is over: the next copy is the probe
        async with httpx.AsyncClient(base_url=stack.url) as client:
            assert (await client.get("/api/sessions/7")).status_code == 200
            for _ in range(200):
                if shadow.breaker.status()["new"]["state"] == "closed":
                    break
                await asyncio.sleep(0.02)
    assert shadow.breaker.status()["new"] == {
        "state": "closed",
        "failures_in_a_row": 0,
        "opened": 1,
    }
    assert [r["path_qs"] for r in forwarded(stack.new)] == ["/api/sessions/7"]


async def test_a_mismatch_keeps_the_request_headers_the_primary_was_sent(
    make_stack: Any, tmp_path: Path
) -> None:
    async with make_stack(features(), shadow=make_shadow(tmp_path)) as stack:
        async with httpx.AsyncClient(base_url=stack.url) as client:
            await client.get("/api/lessons", headers={"X-Trace": "t-1", **ALICE})
            data = await settle(stack, 1)
    top = data["features"][0]["endpoints"][0]["top_fields"]
    example = next(t for t in top if t["path"] == "$.backend")["examples"][0]
    sent = {name.lower(): value for name, value in example["request"]["headers"].items()}
    assert sent["x-trace"] == "t-1" and "x-request-id" in sent and "host" not in sent


SESSIONS_SHADOWED = """\
  register:
    routes: ["/api/auth/register"]
    mode: shadow
    writes: mirror
  sessions:
    routes: ["/api/sessions/**"]
    mode: shadow
    writes: mirror
"""


async def registered(http: httpx.AsyncClient, email: str) -> dict[str, str]:
    """Register ``email`` through the proxy: the new user's auth headers."""
    body = {"email": email, "password": "password-1", "name": "U"}
    made = await http.post("/api/auth/register", json=body)
    return {"Authorization": f"Bearer {made.json()['token']}"}


@asynccontextmanager
async def a_user_shadowed(
    tmp_path: Path, slow: Fault, email: str
) -> AsyncIterator[tuple[Shadow, httpx.AsyncClient, dict[str, str]]]:
    """Sessions shadowed to new behind ``slow``; a user registered: (shadow, client, auth)."""
    shadow = make_shadow(tmp_path)
    async with real_backends_new_behind_faults(
        tmp_path, SESSIONS_SHADOWED, [slow], shadow=shadow
    ) as (_, _, http):
        yield shadow, http, await registered(http, email)


async def settled(shadow: Shadow, count: int) -> dict[str, Any]:
    """:func:`shadow_summary` once ``count`` copies are compared or skipped (or after 15 s)."""
    for _ in range(300):
        summary = await shadow_summary(shadow)
        if summary["settled"] >= count:
            break
        await asyncio.sleep(0.05)
    return summary


async def delete_then_read(tmp_path: Path) -> Shadow:
    """A user creates a session, deletes it and reads it back, all shadowed; the delete's copy
    takes 3 s to reach new (longer than the 2 s a copy waits for it). The shadow, settled."""
    slow = Fault("DELETE", "/api/sessions/.*", delay=3.0)
    async with a_user_shadowed(tmp_path, slow, "d@example.com") as (shadow, http, auth):
        sid = (await http.post("/api/sessions", json={"title": "t"}, headers=auth)).json()
        deleted = await http.delete(f"/api/sessions/{sid['id']}", headers=auth)
        assert deleted.status_code == 204
        read = await http.get(f"/api/sessions/{sid['id']}", headers=auth)
        assert read.status_code == 404
        await settled(shadow, 4)  # the read's copy is the fourth of the user's line
    return shadow


async def shadow_summary(shadow: Shadow) -> dict[str, Any]:
    """Copies compared or skipped (both features), the read's endpoint, the sessions' skips."""
    await shadow.recorder.flush()
    features = {f["feature"]: f for f in (await shadow.recorder.store.summary())["features"]}
    sessions = features.get("sessions", {"compared": 0, "skipped": 0, "endpoints": []})
    register = features.get("register", {"compared": 0, "skipped": 0})
    endpoints = {e["endpoint"]: e for e in sessions["endpoints"]}
    return {
        "settled": sessions["compared"] + sessions["skipped"] + register["compared"],
        "read": endpoints.get("GET /api/sessions/{id}", {"compared": 0, "mismatched": 0}),
        "skips": dict(sessions.get("skip_reasons", {})),
    }


async def test_a_copy_sent_before_its_earlier_writes_landed_is_not_compared(
    tmp_path: Path,
) -> None:
    """The read's copy waits 2 s for the delete's, then leaves: new still holds the session, and
    a comparison would report 200 against 404, a difference of our ordering, not of new."""
    summary = await shadow_summary(await delete_then_read(tmp_path))
    assert summary["read"]["compared"] == 0, summary
    assert summary["skips"] == {"earlier_writes_late": 1}, summary


async def test_a_writes_copy_waits_past_2_s_for_the_callers_earlier_write(tmp_path: Path) -> None:
    """The session's create takes 3 s to reach new; the note added to it right after waits for
    it (a read would leave after 2 s): sent early, new would have refused it (no such session)
    and the note would have reached new's store only later, through the mirror queue, after
    whatever the user wrote next."""
    slow = Fault("POST", "/api/sessions", delay=3.0)
    async with a_user_shadowed(tmp_path, slow, "w@example.com") as (shadow, http, auth):
        sid = (await http.post("/api/sessions", json={"title": "t"}, headers=auth)).json()["id"]
        note = {"role": "user", "content": "a note"}
        added = await http.post(f"/api/sessions/{sid}/messages", json=note, headers=auth)
        assert added.status_code == 201
        summary = await settled(shadow, 3)  # register, create, note
    endpoints = {
        e["endpoint"]: e
        for f in (await shadow.recorder.store.summary())["features"]
        for e in f["endpoints"]
    }
    assert summary["skips"] == {}, summary
    note_copy = endpoints["POST /api/sessions/{id}/messages"]
    assert note_copy["compared"] == 1 and note_copy["mismatched"] == 0, note_copy
