"""The rollout controller in a real proxy in front of two recording upstreams: a rollout walks
every step to succeeded through the flag writer, is audited, pauses, resumes, is promoted and
aborted through the admin API, and resumes after a restart."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import httpx
import pytest

from banyan.parity.store import ParityRecorder, ParityStore
from banyan.proxy.flag_edit import write_atomically
from banyan.proxy.shadow import Shadow
from banyan.rollout.store import FileRolloutStore

AUTH = {"Authorization": "Bearer rollout-token"}

FEATURE = """\
  api:
    routes: ["/api/**", "/status/*"]
    mode: legacy  # moved by the rollout
    stick_by: header:X-User
    rollout:
      steps:
        - mirror: {}
        - shadow: {for: 1s}
        - canary: {percent: 50, for: 1s}
        - new: {}
      analysis: {max_latency_ratio: null, min_samples: 5}
"""


def shadow_of(tmp_path: Path) -> Shadow:
    store = ParityStore(f"sqlite+aiosqlite:///{tmp_path / 'parity.db'}")
    return Shadow(ParityRecorder(store, flush_interval=0.05))


async def until(client: httpx.AsyncClient, predicate: Any, timeout: float = 20.0) -> Any:
    """Poll GET /_proxy/rollouts/api, sending traffic, until ``predicate(record)``."""
    record: Any = None
    for i in range(int(timeout / 0.05)):
        await client.get("/status/200", headers={"X-User": f"u{i % 20}"})
        record = (await client.get("/_proxy/rollouts/api")).json()
        if predicate(record):
            return record
        await asyncio.sleep(0.02)
    raise AssertionError(f"not reached: {record}")


async def test_a_rollout_walks_every_step_to_succeeded(make_stack: Any, tmp_path: Path) -> None:
    async with (
        make_stack(FEATURE, shadow=shadow_of(tmp_path)) as stack,
        httpx.AsyncClient(base_url=stack.url, timeout=10, headers=AUTH) as client,
    ):
        assert (await client.get("/_proxy/rollouts")).json() == []
        started = await client.post("/_proxy/rollouts/api/start", headers=AUTH)
        assert started.status_code == 200, started.text
        seen: set[str] = set()

        def done(record: dict[str, Any]) -> bool:
            seen.add(f"{record['step']}:{record['mode']}")
            return record["state"] == "succeeded"

        record = await until(client, done)
        listed = (await client.get("/_proxy/rollouts")).json()
        audit = (await client.get("/_proxy/audit?feature=api&limit=100")).json()["entries"]
    assert record["step"] == 3 and record["mode"] == "new"
    assert [s["label"] for s in record["steps"]] == ["mirror", "shadow", "canary 50%", "new"]
    assert {"1:shadow", "2:canary"} <= seen
    assert listed == [record] or listed[0]["state"] == "succeeded"
    text = stack.flags.read_text()
    assert re.search(r"mode: new +# moved by the rollout", text) and "writes: mirror" in text
    reasons = [e["reason"] for e in reversed(audit) if e["source"] == "rollout" and e["reason"]]
    assert reasons[0].startswith("start: started")
    assert any("step 2/4 (shadow) passed with" in r for r in reasons)
    assert any("step 3/4 (canary 50%) passed with" in r for r in reasons)
    assert reasons[-1].startswith("succeeded")
    edits = [e["after"]["mode"] for e in reversed(audit) if e["source"] == "rollout" and e["after"]]
    assert edits == ["legacy", "shadow", "canary", "new"]  # mirror: legacy with writes mirrored


async def test_pause_resume_promote_and_abort_through_the_api(make_stack: Any) -> None:
    slow = FEATURE.replace("{for: 1s}", "{for: 1h}")
    async with (
        make_stack(slow) as stack,
        httpx.AsyncClient(base_url=stack.url, timeout=10, headers=AUTH) as client,
    ):
        wrong = {"Authorization": "Bearer wrong"}
        refused = await client.post("/_proxy/rollouts/api/start", headers=wrong)
        assert refused.status_code == 401  # the admin token is needed to act
        assert (await client.post("/_proxy/rollouts/nope/start", headers=AUTH)).status_code == 404
        bad = await client.post("/_proxy/rollouts/api/jump", headers=AUTH)
        assert bad.status_code == 400 and "jump" in bad.json()["error"]["message"]
        early = await client.post("/_proxy/rollouts/api/pause", headers=AUTH)
        assert early.status_code == 409 and "no rollout" in early.json()["error"]["message"]
        await client.post("/_proxy/rollouts/api/start", headers=AUTH)
        record = await until(client, lambda r: r["step"] == 1 and r["applied"])
        assert record["mode"] == "shadow"
        again = await client.post("/_proxy/rollouts/api/start", headers=AUTH)
        assert again.status_code == 409
        paused = (await client.post("/_proxy/rollouts/api/pause", headers=AUTH)).json()
        assert paused["state"] == "paused" and "paused by the operator" in paused["reason"]
        assert (await client.post("/_proxy/rollouts/api/pause", headers=AUTH)).status_code == 409
        resumed = (await client.post("/_proxy/rollouts/api/resume", headers=AUTH)).json()
        assert resumed["state"] == "running"
        assert (await client.post("/_proxy/rollouts/api/resume", headers=AUTH)).status_code == 409
        promoted = (await client.post("/_proxy/rollouts/api/promote", headers=AUTH)).json()
        assert promoted["step"] == 2 and promoted["mode"] == "canary" and promoted["percent"] == 50
        audit = (await client.get("/_proxy/audit?feature=api")).json()["entries"]
        assert "promote: promoted by the operator past step 2/4 (shadow)" in [
            e["reason"] for e in audit
        ]
        aborted = (await client.post("/_proxy/rollouts/api/abort", headers=AUTH)).json()
        assert aborted["state"] == "aborted" and aborted["mode"] == "legacy"
        assert "aborted by the operator at step 3/4" in aborted["reason"]
        assert (await client.post("/_proxy/rollouts/api/abort", headers=AUTH)).status_code == 409
    feature = stack.state.flags.feature("api")
    assert feature is not None and feature.mode == "legacy" and feature.writes == "mirror"


async def test_a_restarted_proxy_resumes_the_rollout_where_it_was(make_stack: Any) -> None:
    slow = FEATURE.replace("canary: {percent: 50, for: 1s}", "canary: {percent: 50, for: 1h}")
    async with (
        make_stack(slow) as stack,
        httpx.AsyncClient(base_url=stack.url, timeout=10, headers=AUTH) as client,
    ):
        await client.post("/_proxy/rollouts/api/start", headers=AUTH)
        await client.post("/_proxy/rollouts/api/promote", headers=AUTH)  # past shadow
        await until(client, lambda r: r["step"] == 2 and r["applied"])
        flags = stack.flags
    saved = json.loads((flags.parent / ".banyan" / "rollouts.json").read_text())
    assert saved["rollouts"]["api"]["step"] == 2 and saved["rollouts"]["api"]["state"] == "running"
    # a new proxy on the same flag file and state folder
    from banyan.proxy.app import create_app
    from banyan.serving import serve

    async with (
        serve(create_app(flags, health_interval=0.2)) as url,
        httpx.AsyncClient(base_url=url, timeout=10, headers=AUTH) as client,
    ):
        record = await until(client, lambda r: r["gates"] != [])
        assert record["state"] == "running" and record["step"] == 2 and record["mode"] == "canary"
        promoted = (await client.post("/_proxy/rollouts/api/promote", headers=AUTH)).json()
    assert promoted["state"] == "succeeded" and promoted["mode"] == "new"


async def test_flags_moved_outside_the_rollout_abort_it(make_stack: Any) -> None:
    guarded = FEATURE.replace(
        "    stick_by: header:X-User\n",
        "    stick_by: header:X-User\n    guards: {max_error_rate: 0.1, window: 10}\n",
    ).replace("canary: {percent: 50, for: 1s}", "canary: {percent: 100, for: 1h}")
    guarded = guarded.replace(
        "{max_latency_ratio: null,", "{max_latency_ratio: null, max_error_rate: null,"
    )
    async with (
        make_stack(guarded) as stack,
        httpx.AsyncClient(base_url=stack.url, timeout=10, headers=AUTH) as client,
    ):
        await client.post("/_proxy/rollouts/api/start", headers=AUTH)  # mirror passes at once
        await until(client, lambda r: r["step"] == 1 and r["applied"])
        await client.post("/_proxy/rollouts/api/promote", headers=AUTH)  # past shadow
        await until(client, lambda r: r["step"] == 2 and r["applied"])
        for _ in range(20):  # new fails: the feature's own guard rolls it back first
            await client.get("/status/500", headers={"X-User": "u1"})
        record = await until(client, lambda r: r["state"] == "aborted" and r["applied"])
    assert "rolled back by the feature's guard (guard max_error_rate breached" in record["reason"]
    assert record["mode"] == "legacy"


async def test_a_rollout_block_changed_or_removed_mid_way_aborts(make_stack: Any) -> None:
    slow = FEATURE.replace("{for: 1s}", "{for: 1h}")
    async with (
        make_stack(slow) as stack,
        httpx.AsyncClient(base_url=stack.url, timeout=10, headers=AUTH) as client,
    ):
        await client.post("/_proxy/rollouts/api/start", headers=AUTH)
        await until(client, lambda r: r["step"] == 1 and r["applied"])
        text = stack.flags.read_text().replace("shadow: {for: 1h}", "shadow: {for: 2h}")
        write_atomically(stack.flags, text)  # as an editor saves: a tick never reads half
        await stack.state.store.reload()
        record = await until(client, lambda r: r["state"] == "aborted" and r["applied"])
        assert "the rollout's steps changed in the flag file at step 2/4" in record["reason"]
        assert record["mode"] == "legacy"
        await client.post("/_proxy/rollouts/api/start", headers=AUTH)
        await until(client, lambda r: r["state"] == "running" and r["applied"])
        write_atomically(stack.flags, text.split("    rollout:")[0] + "default: legacy\n")
        await stack.state.store.reload()
        record = await until(client, lambda r: r["state"] == "aborted" and r["applied"])
    assert record["reason"] == "the feature or its rollout block left the flag file"


async def test_one_controller_leads_per_state_folder(make_stack: Any) -> None:
    from banyan.rollout.controller import RolloutController

    async with make_stack(FEATURE) as stack:
        leading = RolloutController(
            stack.state, FileRolloutStore(stack.flags.parent / "x.json"), stack.flags.parent / "l"
        )
        second = RolloutController(
            stack.state, FileRolloutStore(stack.flags.parent / "x.json"), stack.flags.parent / "l"
        )
        assert leading.leader and not second.leader
        await second.tick()  # a follower does nothing
        await leading.stop()
        assert second.leader
        await second.stop()


async def test_a_hand_edit_aborts_and_a_rollout_may_end_before_new(make_stack: Any) -> None:
    partial = FEATURE.replace("        - new: {}\n", "").replace(
        "canary: {percent: 50, for: 1s}", "canary: {percent: 50, for: 1h}"
    )
    async with (
        make_stack(partial) as stack,
        httpx.AsyncClient(base_url=stack.url, timeout=10, headers=AUTH) as client,
    ):
        assert (await client.get("/_proxy/rollouts/api")).status_code == 404
        await client.post("/_proxy/rollouts/api/start", headers=AUTH)
        await until(client, lambda r: r["step"] == 1 and r["applied"])
        text = stack.flags.read_text()
        write_atomically(stack.flags, text.replace("mode: shadow", "mode: new"))  # by hand
        await stack.state.store.reload()
        record = await until(client, lambda r: r["state"] == "aborted" and r["applied"])
        assert record["reason"] == (
            "step 2/3 (shadow): the flags were changed outside the rollout (mode is now new)"
        )
        assert record["mode"] == "legacy"
        await client.post("/_proxy/rollouts/api/start", headers=AUTH)
        await until(client, lambda r: r["step"] == 1 and r["applied"])
        await client.post("/_proxy/rollouts/api/promote", headers=AUTH)
        paused = (await client.post("/_proxy/rollouts/api/pause", headers=AUTH)).json()
        assert paused["elapsed_s"] is not None and paused["mode"] == "canary"
        done = (await client.post("/_proxy/rollouts/api/promote", headers=AUTH)).json()
    assert done["state"] == "succeeded" and done["mode"] == "canary"  # its last step stays


async def test_a_step_that_cannot_be_written_aborts_the_rollout(make_stack: Any) -> None:
    async with (
        make_stack(FEATURE) as stack,
        httpx.AsyncClient(base_url=stack.url, timeout=10, headers=AUTH) as client,
    ):
        (stack.flags.parent / f".{stack.flags.name}.lock").mkdir()  # the writer's lock is gone
        await client.post("/_proxy/rollouts/api/start", headers=AUTH)
        record = await until(client, lambda r: r["state"] == "aborted")
    assert "step 1/4 (mirror): the step's flags could not be written" in record["reason"]
    assert "cannot open the lock" in record["reason"]
    assert stack.state.flags.feature("api").mode == "legacy"


async def test_an_unusable_state_file_is_a_503_and_no_crash(
    make_stack: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the state folder should be")
    monkeypatch.setenv("BANYAN_ROLLOUTS", str(blocker / "rollouts.json"))
    async with (
        make_stack(FEATURE) as stack,
        httpx.AsyncClient(base_url=stack.url, timeout=10, headers=AUTH) as client,
    ):
        started = await client.post("/_proxy/rollouts/api/start", headers=AUTH)
        assert started.status_code == 503
        assert started.json()["error"]["code"] == "rollout_state_unavailable"
        blocker.unlink()
        blocker.mkdir()
        (blocker / "rollouts.json").write_text("{broken")
        listed = await client.get("/_proxy/rollouts")
        assert listed.status_code == 503 and "not a rollout file" in listed.text
        assert (await client.get("/status/200")).status_code == 200  # traffic unaffected


async def test_actions_at_once_are_answered_once_their_flags_are_written(make_stack: Any) -> None:
    """Three rollouts started together: each answer comes once its first step is in the flag
    file, and the steps written in one pass share one edit of the file."""
    others = "".join(
        FEATURE.replace("  api:", f"  api{n}:").replace('"/api/**", "/status/*"', f'"/v{n}/**"')
        for n in (2, 3)
    )
    async with (
        make_stack(FEATURE + others) as stack,
        httpx.AsyncClient(base_url=stack.url, timeout=10, headers=AUTH) as client,
    ):
        answers = await asyncio.gather(
            *(client.post(f"/_proxy/rollouts/{name}/start") for name in ("api", "api2", "api3"))
        )
        audit = (await client.get("/_proxy/audit?limit=100")).json()["entries"]
    records = [answer.json() for answer in answers]
    assert [(r["feature"], r["applied"]) for r in records] == [
        ("api", True),
        ("api2", True),
        ("api3", True),
    ]
    assert {r["step"] for r in records} <= {0, 1}  # mirror has no duration: shadow may follow
    text = stack.flags.read_text()
    assert text.count("writes: mirror") == 3
    edits = [e for e in audit if e["source"] == "rollout" and e.get("after")]
    assert len({e["feature"] for e in edits}) == 3
    assert len({e["digest"] for e in edits}) < 3  # at least two written by one edit
