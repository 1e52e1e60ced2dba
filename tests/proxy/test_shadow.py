"""Shadow mode end to end: copies, comparisons, noise, writes, failing candidates, reports."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest

from banyan.parity import cli
from banyan.parity.compare import Response
from banyan.parity.store import ParityRecorder, ParityStore
from banyan.ports import free_port
from banyan.proxy.shadow import Shadow, sampled, shadow_from_env, undelivered
from banyan.serving import serve

SHADOW = """\
  api:
    routes: ["/api/**", "/clock", "/ws/**"]
    mode: shadow
    parity: {{sample: 100, noise_sample: {noise}, shadow_timeout: {timeout}}}
{extra}"""


def forwarded(recorder: Any) -> list[dict[str, Any]]:
    return [r for r in recorder.requests if r["path_qs"] != "/healthz"]


def features(noise: int = 0, timeout: float = 2, extra: str = "") -> str:
    return SHADOW.format(noise=noise, timeout=timeout, extra=extra)


def make_shadow(tmp_path: Path) -> Shadow:
    return Shadow(
        ParityRecorder(
            ParityStore(f"sqlite+aiosqlite:///{tmp_path / 'parity.db'}"), flush_interval=0.05
        )
    )


async def settle(stack: Any, count: int) -> dict[str, Any]:
    shadow: Shadow = stack.state.shadow
    for _ in range(200):
        await shadow.recorder.flush()
        data = await shadow.recorder.store.summary()
        done = sum(f["compared"] for f in data["features"])
        if done >= count and shadow.inflight == 0:
            return data
        await asyncio.sleep(0.02)
    raise AssertionError(f"only {done} of {count} comparisons recorded")


async def test_differences_are_found_at_their_exact_paths(make_stack: Any, tmp_path: Path) -> None:
    async with make_stack(features(), shadow=make_shadow(tmp_path)) as stack:
        async with httpx.AsyncClient(base_url=stack.url) as client:
            answer = await client.get("/api/lessons?x=1")
            assert answer.json()["backend"] == "legacy"
            data = await settle(stack, 1)
            page = await client.get("/_proxy/parity/export.html")
            as_json = (await client.get("/_proxy/parity.json")).json()
    feature = data["features"][0]
    assert feature["feature"] == "api" and feature["mismatched"] == 1
    top = feature["endpoints"][0]["top_fields"]
    assert {(t["path"], t["kind"]) for t in top} >= {("$.backend", "changed")}
    example = next(t for t in top if t["path"] == "$.backend")["examples"][0]
    assert example["primary_backend"] == "legacy" and example["candidate_backend"] == "new"
    assert next(d for d in example["differences"] if d["path"] == "$.backend")["candidate"] == "new"
    assert forwarded(stack.new)[0]["path_qs"] == "/api/lessons?x=1"
    assert (
        "$.backend" in page.text
        and "legacy (primary)" in page.text
        and "new (candidate)" in page.text
    )
    assert "Learned noise" in page.text and page.headers["content-type"].startswith("text/html")
    assert as_json["schema"] == "banyan.parity/v1"


async def test_timestamps_are_learned_as_noise(make_stack: Any, tmp_path: Path) -> None:
    async with make_stack(features(noise=100), shadow=make_shadow(tmp_path)) as stack:
        async with httpx.AsyncClient(base_url=stack.url) as client:
            for _ in range(20):
                await client.get("/clock")
            data = await settle(stack, 20)
    feature = data["features"][0]
    assert feature["noise"] and feature["noise"][0]["path"] == "$.now"
    assert feature["matched"] >= 15  # once learned, the timestamp no longer counts as a mismatch


async def test_learned_noise_is_listed_and_forgotten_through_the_admin_api(
    make_stack: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BANYAN_ADMIN_TOKEN", "admin-secret")
    admin = {"Authorization": "Bearer admin-secret"}
    async with make_stack(features(noise=100), shadow=make_shadow(tmp_path)) as stack:
        async with httpx.AsyncClient(base_url=stack.url) as client:
            for _ in range(5):
                await client.get("/clock")
            before = (await settle(stack, 5))["features"][0]["mismatched"]
            listed = (await client.get("/_proxy/parity/noise", headers=admin)).json()["noise"]
            assert [(n["feature"], n["endpoint"], n["path"]) for n in listed] == [
                ("api", "GET /clock", "$.now")
            ]
            assert listed[0]["count"] >= 2
            assert (
                await client.get("/_proxy/parity/noise?feature=other", headers=admin)
            ).json() == {"noise": []}
            refused = await client.delete("/_proxy/parity/noise?path=$.now")
            assert refused.status_code == 401 and refused.json()["error"]["code"] == "unauthorized"
            no_path = await client.delete("/_proxy/parity/noise", headers=admin)
            assert no_path.status_code == 400 and "path" in no_path.json()["error"]["message"]
            out = await asyncio.to_thread(
                cli.main,
                [
                    "noise",
                    "--proxy",
                    stack.url,
                    "--admin-token",
                    "admin-secret",
                    "--forget",
                    "$.now",
                ],
            )
            assert out == 0
            assert (await client.get("/_proxy/parity/noise", headers=admin)).json() == {"noise": []}
            store = stack.state.shadow.recorder.store
            assert [c for c in await store.noise_counts() if c[2] == "$.now"] == []
            # forgotten: the timestamp is a mismatch again until it is learned again
            stack.flags.write_text(
                stack.flags.read_text().replace("noise_sample: 100", "noise_sample: 0")
            )
            assert stack.state.store.reload_now()
            await client.get("/clock")
            data = await settle(stack, 6)
    assert data["features"][0]["mismatched"] == before + 1


async def test_a_reset_through_the_proxy_starts_over_in_memory_too(
    make_stack: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``banyan parity reset --proxy``: the store is emptied and the proxy forgets the noise it
    had learned, so the timestamp counts as a mismatch again (a reset of the store alone left it
    learned in the running proxy)."""
    monkeypatch.setenv("BANYAN_ADMIN_TOKEN", "admin-secret")
    async with make_stack(features(noise=100), shadow=make_shadow(tmp_path)) as stack:
        async with httpx.AsyncClient(base_url=stack.url) as client:
            for _ in range(5):
                await client.get("/clock")
            await settle(stack, 5)
            assert stack.state.shadow.learned_noise()
            refused = await client.post("/_proxy/parity/reset")
            assert refused.status_code == 401
            argv = ["reset", "--proxy", stack.url, "--admin-token", "admin-secret"]
            assert await asyncio.to_thread(cli.main, argv) == 0
            assert stack.state.shadow.learned_noise() == []
            assert (await stack.state.shadow.recorder.store.summary())["features"] == []
            stack.flags.write_text(
                stack.flags.read_text().replace("noise_sample: 100", "noise_sample: 0")
            )
            assert stack.state.store.reload_now()
            await client.get("/clock")
            data = await settle(stack, 1)
    assert (data["features"][0]["compared"], data["features"][0]["mismatched"]) == (1, 1)


async def test_writes_are_not_shadowed_unless_mirrored(make_stack: Any, tmp_path: Path) -> None:
    async with make_stack(features(), shadow=make_shadow(tmp_path)) as stack:
        async with httpx.AsyncClient(base_url=stack.url) as client:
            await client.post("/api/sessions", json={"t": 1})
            await asyncio.sleep(0.2)
    assert forwarded(stack.new) == []
    mirrored = features(extra="    writes: mirror\n")
    (tmp_path / "m").mkdir()
    async with make_stack(mirrored, shadow=make_shadow(tmp_path / "m")) as stack:
        async with httpx.AsyncClient(base_url=stack.url) as client:
            await client.post("/api/sessions", json={"t": 1})
            await settle(stack, 1)
    legacy, new = forwarded(stack.legacy)[0], forwarded(stack.new)[0]
    assert (
        new["method"] == "POST"
        and new["headers"]["idempotency-key"] == legacy["headers"]["idempotency-key"]
    )
    assert new["body"] == legacy["body"]


async def test_a_users_copies_reach_the_candidate_in_order(make_stack: Any, tmp_path: Path) -> None:
    mirrored = features(extra="    writes: mirror\n")
    alice = {"Authorization": "Bearer " + jwt.encode({"sub": "alice"}, "k" * 32)}
    async with make_stack(mirrored, shadow=make_shadow(tmp_path)) as stack:
        stack.new.delay = 0.3  # the candidate is slow to take the create
        async with httpx.AsyncClient(base_url=stack.url) as client:
            await client.post("/api/sessions", json={"t": 1}, headers=alice)
            await client.get("/api/sessions/1", headers=alice)  # answered long before that
            await settle(stack, 2)
    assert [r["method"] for r in forwarded(stack.new)] == ["POST", "GET"]
    assert stack.state.fence.waits == 1  # the read's copy waited for the create's copy


@pytest.mark.parametrize("candidate", ["healthy", "slow", "hanging", "down"])
async def test_the_users_answer_never_depends_on_the_candidate(
    make_stack: Any, tmp_path: Path, candidate: str
) -> None:
    async with make_stack(features(timeout=0.3), shadow=make_shadow(tmp_path)) as stack:
        stack.new.delay = 0.2 if candidate == "slow" else 0
        stack.new.hang = candidate == "hanging"
        if candidate == "down":
            dead = f"http://127.0.0.1:{free_port()}"
            stack.flags.write_text(stack.flags.read_text().replace(stack.new_url, dead))
            assert stack.state.store.reload_now()
        async with httpx.AsyncClient(base_url=stack.url) as client:
            answers = [
                await client.get("/api/same", headers={"X-Request-Id": "same"}) for _ in range(3)
            ]
            data = await settle(stack, 3)
    bodies = {a.content for a in answers}
    assert all(a.status_code == 200 and a.json()["backend"] == "legacy" for a in answers)
    assert len({a.json()["path_qs"] for a in answers}) == 1 and len(bodies) == 1
    feature = data["features"][0]
    if candidate in ("hanging", "down"):
        assert feature["errors"] == 3
    else:
        assert feature["mismatched"] == 3


async def test_a_candidate_that_keeps_failing_is_given_a_rest(
    make_stack: Any, tmp_path: Path
) -> None:
    shadow = make_shadow(tmp_path)
    async with make_stack(features(timeout=0.3), shadow=shadow) as stack:
        shadow.breaker.threshold, shadow.breaker.cooldown = 3, 60
        dead = f"http://127.0.0.1:{free_port()}"
        stack.flags.write_text(stack.flags.read_text().replace(stack.new_url, dead))
        assert stack.state.store.reload_now()
        async with httpx.AsyncClient(base_url=stack.url) as client:
            for _ in range(3):
                assert (await client.get("/api/a")).json()["backend"] == "legacy"
            await settle(stack, 3)
            answers = [await client.get("/api/b") for _ in range(5)]
            status = (await client.get("/_proxy/status")).json()
    assert all(a.status_code == 200 and a.json()["backend"] == "legacy" for a in answers)
    assert status["shadow_breakers"] == {
        "new": {"state": "open", "failures_in_a_row": 3, "opened": 1}
    }
    assert status["shadow_copies"] == {"sending": 0, "sent": 3}  # none sent while it rests
    skipped = stack.state.metrics.shadow_skipped
    assert skipped.get("api", "candidate_failing") == 5


async def test_oversize_bodies_are_skipped_and_counted(make_stack: Any, tmp_path: Path) -> None:
    small = SHADOW.format(noise=0, timeout=2, extra="").replace(
        "shadow_timeout: 2}", "shadow_timeout: 2, max_body_bytes: 10}"
    )
    async with make_stack(small, shadow=make_shadow(tmp_path)) as stack:
        async with httpx.AsyncClient(base_url=stack.url) as client:
            assert (await client.get("/api/x")).status_code == 200
            shadow: Shadow = stack.state.shadow
            for _ in range(100):
                await shadow.recorder.flush()
                data = await shadow.recorder.store.summary()
                if data["features"]:
                    break
                await asyncio.sleep(0.02)
    assert data["features"][0]["skipped"] == 1 and forwarded(stack.new) == []


def test_sampling_is_deterministic_per_request_id() -> None:
    picks = [sampled(f"req-{i}", 10) for i in range(2000)]
    assert picks == [sampled(f"req-{i}", 10) for i in range(2000)]
    assert 100 < sum(picks) < 300
    assert sampled("x", 100) and not sampled("x", 0)


async def test_tutor_turns_are_compared_over_websockets(make_stack: Any, tmp_path: Path) -> None:
    import aiohttp

    async with make_stack(features(), shadow=make_shadow(tmp_path)) as stack:
        stack.new.answer_suffix = " indeed"
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(stack.url + "/ws/tutor/s1") as ws:
                await ws.send_json({"type": "ask", "text": "what is a ratio"})
                frames = []
                while not frames or frames[-1]["type"] != "done":
                    frames.append(await asyncio.wait_for(ws.receive_json(), 5))
                await ws.send_json({"type": "ask", "text": "and a rate"})
                while (await asyncio.wait_for(ws.receive_json(), 5))["type"] != "done":
                    pass
        assert frames[-1]["answer"]["content"] == "what is a ratio"  # the user sees legacy only
        data = await settle(stack, 2)
    top = data["features"][0]["endpoints"][0]["top_fields"]
    paths = {t["path"] for t in top}
    assert {"$.text", "$.answer.content"} <= paths
    assert data["features"][0]["endpoints"][0]["endpoint"] == "GET /ws/tutor/{id}"


async def test_whiteboard_documents_are_compared_when_quiet(
    make_stack: Any, tmp_path: Path
) -> None:
    import aiohttp
    from pycrdt import Map

    from banyan.backends.common.whiteboard.client import WhiteboardClient

    shadow = make_shadow(tmp_path)
    shadow.quiet_seconds = 0.2
    async with make_stack(features(), shadow=shadow) as stack:
        async with aiohttp.ClientSession() as session:
            client = WhiteboardClient()
            await client.connect(session, stack.url.replace("http", "ws") + "/ws/whiteboard/room1")
            await client.wait_synced()
            await client.edit(
                lambda d: d.get("shapes", type=Map).__setitem__("a", {"kind": "rect"})
            )
            data = await settle(stack, 1)
            await client.close()
        candidate_room = await stack.new.rooms.open("room1")
        assert "a" in candidate_room.doc.get("shapes", type=Map)  # the candidate got the edit
    feature = data["features"][0]
    assert feature["compared"] >= 1 and feature["matched"] >= 1


async def test_a_streamed_answer_is_compared_whole(make_stack: Any, tmp_path: Path) -> None:
    streamed = (
        '  files:\n    routes: ["/download"]\n    mode: shadow\n'
        "    parity: {sample: 100, noise_sample: 0}\n"
    )
    async with make_stack(streamed, shadow=make_shadow(tmp_path)) as stack:
        async with httpx.AsyncClient(base_url=stack.url) as client:
            answer = await client.get("/download?size=300000")
            assert len(answer.content) == 300000
            data = await settle(stack, 1)
    assert data["features"][0]["matched"] == 1, data


async def test_a_write_copy_waits_for_the_users_earlier_read(
    make_stack: Any, tmp_path: Path
) -> None:
    mirrored = features(extra="    writes: mirror\n")
    alice = {"Authorization": "Bearer " + jwt.encode({"sub": "alice"}, "k" * 32)}
    shadow = make_shadow(tmp_path)
    async with make_stack(mirrored, shadow=shadow) as stack:
        stack.new.delay = 0.3  # the candidate is slow to answer the list
        async with httpx.AsyncClient(base_url=stack.url) as client:
            await client.get("/api/sessions", headers=alice)
            await client.post("/api/sessions", json={"t": 1}, headers=alice)
            await settle(stack, 2)
    assert [r["method"] for r in forwarded(stack.new)] == ["GET", "POST"]
    assert stack.state.fence.waits == 1  # the create's copy waited for the list's copy


async def wait_for_mirror(stack: Any, delivered: int) -> None:
    for _ in range(300):
        if stack.state.mirror.delivered >= delivered:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"{stack.state.mirror.delivered} of {delivered} mirror writes delivered")


async def test_a_write_copy_without_an_answer_reaches_the_candidate_through_the_mirror(
    make_stack: Any, tmp_path: Path
) -> None:
    mirrored = features(timeout=0.3, extra="    writes: mirror\n")
    alice = {"Authorization": "Bearer " + jwt.encode({"sub": "alice"}, "k" * 32)}
    async with make_stack(mirrored, shadow=make_shadow(tmp_path)) as stack:
        stack.new.delay = 0.6  # the copy is cut at 0.3 s: did the candidate store it? unknown
        async with httpx.AsyncClient(base_url=stack.url) as client:
            created = await client.post("/api/sessions", json={"t": 1}, headers=alice)
            data = await settle(stack, 1)
            await wait_for_mirror(stack, 1)
            await asyncio.sleep(0.7)  # the cut copy's handler, still sleeping, records it too
    key = forwarded(stack.legacy)[0]["headers"]["idempotency-key"]
    assert created.status_code == 200 and data["features"][0]["errors"] == 1
    posts = [r for r in forwarded(stack.new) if r["method"] == "POST"]
    assert len(posts) == 2  # the copy, then the mirror queue's delivery: one key, one record
    assert all(r["headers"]["idempotency-key"] == key for r in posts)


async def test_a_write_copy_the_candidate_answered_is_not_mirrored_again(
    make_stack: Any, tmp_path: Path
) -> None:
    mirrored = features(extra="    writes: mirror\n")
    async with make_stack(mirrored, shadow=make_shadow(tmp_path)) as stack:
        async with httpx.AsyncClient(base_url=stack.url) as client:
            await client.post("/api/sessions", json={"t": 1})
            await settle(stack, 1)
        await asyncio.sleep(0.3)
    assert stack.state.mirror.delivered == 0
    assert [r["method"] for r in forwarded(stack.new)] == ["POST"]


def test_which_write_copies_may_have_missed_the_candidates_store() -> None:
    def answer(status: int = 0, error: str | None = None) -> Response:
        return Response(status, {}, b"", 1.0, error)

    assert undelivered(201, answer(error="candidate timed out"))
    assert undelivered(200, answer(error="ClientConnectorError"))
    assert not undelivered(500, answer(error="candidate timed out"))  # the user's write failed
    assert not undelivered(200, answer(200, "body_too_large"))  # it did answer
    assert not undelivered(201, answer(201)) and not undelivered(204, answer(404), "DELETE")
    # answers that did not take the write go to the queue too: retried, or kept as dead letters
    assert undelivered(200, answer(503)) and undelivered(201, answer(404))
    assert undelivered(201, answer(401)) and undelivered(201, answer(409))


async def test_a_socket_the_candidate_refuses_is_written_through_to_its_store(
    tmp_path: Path,
) -> None:
    """The candidate refuses the tutor socket (503): none of its frames reach it, so the turns
    answered by the primary reach the candidate's store through the mirror queue instead."""
    import aiohttp

    from banyan.backends.contract.shadow import shadow_flags
    from banyan.backends.contract.targets import model_server, serve_backend, sqlite_url
    from banyan.proxy.app import create_app
    from tests.proxy.conftest import stored_messages, turn_messages, tutor_session_of, tutor_turn
    from tests.proxy.fault_front import Fault, FaultFront

    async with (
        model_server(),
        serve_backend("legacy", sqlite_url(tmp_path, "legacy")) as legacy,
        serve_backend("new", sqlite_url(tmp_path, "new")) as new,
    ):
        front = FaultFront(new, [Fault("WS", r"/ws/tutor/.*", status=503)])
        async with serve(front.app) as refusing_new:
            flags = tmp_path / "flags.yaml"
            flags.write_text(shadow_flags(legacy, refusing_new, "legacy"))
            shadow = make_shadow(tmp_path)
            async with serve(create_app(flags, access_log=False, shadow=shadow)) as url:
                async with httpx.AsyncClient(base_url=url, timeout=10) as http:
                    token, auth, sid = await tutor_session_of(http, "refused@example.com")
                    ws_url = url.replace("http", "ws") + f"/ws/tutor/{sid}?token={token}"
                    assert shadow.state is not None
                    skipped = shadow.state.metrics.shadow_skipped
                    turns = []
                    async with aiohttp.ClientSession() as session:
                        async with session.ws_connect(ws_url) as ws:
                            for text in ("What is a fraction?", "And a decimal?"):
                                for _ in range(200):  # the second ask: once the candidate refused
                                    if not turns or skipped.get("tutor", "candidate_unavailable"):
                                        break
                                    await asyncio.sleep(0.02)
                                turns.append(await tutor_turn(ws, text))
                on_new = await stored_messages(new, sid, auth, 4)
                user = jwt.decode(token, options={"verify_signature": False})["sub"]
                # the frames that came after the candidate refused hold nobody's copies
                held = shadow.state.fence.pending("new", user, "127.0.0.1")
    assert ("WS", f"/ws/tutor/{sid}") in front.applied
    assert skipped.get("tutor", "candidate_unavailable") == 1
    assert on_new == turn_messages(*turns)
    assert held == []


async def test_a_candidate_that_cannot_answer_is_an_error_not_a_mismatch(
    make_stack: Any, tmp_path: Path
) -> None:
    guarded = features(timeout=0.3, extra="    guards: {max_mismatch_rate: 0.1, window: 5}\n")
    async with make_stack(guarded, shadow=make_shadow(tmp_path)) as stack:
        shadow: Shadow = stack.state.shadow
        shadow.breaker.threshold = 1000  # every copy is tried
        dead = f"http://127.0.0.1:{free_port()}"
        stack.flags.write_text(stack.flags.read_text().replace(stack.new_url, dead))
        assert stack.state.store.reload_now()
        async with httpx.AsyncClient(base_url=stack.url) as client:
            for i in range(8):
                assert (await client.get(f"/api/a{i}")).json()["backend"] == "legacy"
            data = await settle(stack, 8)
            status = (await client.get("/_proxy/status")).json()
            await asyncio.sleep(0.1)  # a rollback, had one been started, lands in the file
    [feature] = data["features"]
    assert (feature["errors"], feature["mismatched"], feature["compared"]) == (8, 0, 8)
    assert feature["mismatch_rate"] is None  # nothing was answered, nothing judged
    assert "mode: shadow" in stack.flags.read_text()  # the guard did not roll the feature back
    assert stack.state.breaches == [] and status is not None


async def test_a_guard_rollback_is_on_the_report_the_cli_asks_the_proxy_for(
    make_stack: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    guarded = features(extra="    guards: {max_mismatch_rate: 0.1, window: 5}\n")
    async with make_stack(guarded, shadow=make_shadow(tmp_path)) as stack:
        async with httpx.AsyncClient(base_url=stack.url) as client:
            for i in range(5):  # legacy and new answer with their own names: all mismatches
                await client.get(f"/api/a{i}")
            await settle(stack, 5)
            for _ in range(100):
                if stack.state.breaches and "mode: legacy" in stack.flags.read_text():
                    break
                await asyncio.sleep(0.02)
            args = ["report", "--proxy", stack.url, "--since", "1h", "--feature", "api"]
            assert await asyncio.to_thread(cli.main, args) == 0
            text = capsys.readouterr().out
            as_json = (await client.get("/_proxy/parity.json?since=x")).status_code
    assert "ROLLED BACK at" in text and "max_mismatch_rate" in text
    assert "api: 5 compared" in text
    assert as_json == 400
    unreachable = f"http://127.0.0.1:{free_port()}"
    assert await asyncio.to_thread(cli.main, ["report", "--proxy", unreachable]) == 2


async def test_the_report_reads_the_store_the_proxy_writes_by_default(
    make_stack: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    monkeypatch.delenv("BANYAN_PARITY_DB", raising=False)
    monkeypatch.delenv("BANYAN_FLAGS", raising=False)
    flags = tmp_path / "flags.yaml"  # where make_stack writes the flag file
    async with make_stack(features(), shadow=shadow_from_env(flags)) as stack:
        async with httpx.AsyncClient(base_url=stack.url) as client:
            await client.get("/api/lessons")
            await settle(stack, 1)
    assert (tmp_path / ".banyan" / "parity.db").exists()
    monkeypatch.chdir(tmp_path)
    assert await asyncio.to_thread(cli.main, ["report"]) == 0  # --flags defaults to flags.yaml
    assert "api: 1 compared" in capsys.readouterr().out
