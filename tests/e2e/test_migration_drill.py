"""The migration drill: the whole stack as real processes, the seed plan played under live traffic.

Model server, legacy, new and the proxy run as ``banyan`` processes (``banyan/processes.py``); the
flag file's ``new`` URL points at a fault-injecting front (``fault_front.py``) before the real new
backend. Real clients (``traffic.py``) keep doing session CRUD over HTTP with ``Idempotency-Key``,
tutor turns over ``/ws/tutor/{id}`` and whiteboard edits from three pycrdt editors over
``/ws/whiteboard/{room}``.

The plan, edited into the flag file as an engineer does (``banyan.proxy.flag_edit``, the code behind
``banyan flags set``): for each feature of ``PLAN``, legacy -> shadow -> canary 10% -> canary 50%
-> new. Then the front starts answering 503 for the sessions feature: its error-rate guard rolls it
back to legacy. To diagnose, the engineer shadows sessions again with the fault still on until the
parity report shows the new side's 503s, then rolls it back by hand and the fault is cleared.

Asserted: no client request failed (the frontend's retry rule applies: docs/operations.md), every
session and message created on new is on legacy afterwards (read from legacy directly), every
whiteboard replica holds the same document with every shape drawn, the audit log (read with
``banyan flags history``) holds every change including the guard's rollback, and the parity report
names the injected fault.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from banyan.processes import PYTHON_CLI, running_stack, start, stop
from banyan.proxy.flag_edit import EditResult, rollback, set_mode
from banyan.proxy.flags_cli import main as flags_cli
from banyan.proxy.flags_history import log_path, read_history
from banyan.serving import serve
from tests.e2e.fault_front import FaultFront
from tests.e2e.traffic import Editor, Tally, User, call, session_worker, tutor_worker

pytestmark = pytest.mark.slow

PLAN = ("sessions", "tutor", "whiteboard")
STEPS: tuple[tuple[str, float | None], ...] = (
    ("shadow", None),
    ("canary", 10),
    ("canary", 50),
    ("new", None),
)
DWELL = 1.5  # seconds of traffic on each step
BUDGET = 600.0  # a hang guard, not a speed target: a loaded 2-core machine took 200 s
ROOM = "drill-room"
SECRET = "drill-secret-0123456789abcdef0123456789"

FLAGS = """\
version: 1
backends:
  legacy: {legacy}
  new: {new}          # the fault front before the real new backend
features:
  auth:
    routes: ["/api/auth/**"]
    mode: legacy
  tutor:
    routes: ["/api/sessions/*/ask", "/ws/tutor/*"]
    mode: legacy
    websocket: keep
    parity: {{ignore: ["$..created_at", "$..expires_at", "$..updated_at"]}}
  sessions:
    routes: ["/api/sessions/**"]
    mode: legacy       # the drill moves this one first
    writes: mirror
    parity: {{ignore: ["$..created_at", "$..updated_at", "$..expires_at"], noise_sample: 0}}
    guards: {{max_error_rate: 0.05, window: 50}}
  whiteboard:
    routes: ["/api/whiteboard/**", "/ws/whiteboard/*"]
    mode: legacy
    websocket: reconnect
default: legacy
"""


def sessions_fault(path: str) -> bool:
    return path.startswith("/api/sessions") and not path.endswith("/ask")


@contextlib.asynccontextmanager
async def proxy_process(flags: Path, workdir: Path) -> AsyncIterator[str]:
    env = {
        "BANYAN_JWT_SECRET": SECRET,
        "BANYAN_PARITY_DB": f"sqlite+aiosqlite:///{workdir / 'parity.db'}",
        "BANYAN_MIRROR_DB": f"sqlite+aiosqlite:///{workdir / 'mirror.db'}",
    }
    argv = [*PYTHON_CLI, "proxy", "--flags", str(flags), "--port", "0", "--no-access-log"]
    child = await start("proxy", argv, env=env, quiet=False)
    try:
        yield child.url
    finally:
        await stop(child.process)


async def register(http: aiohttp.ClientSession, bases: list[str], name: str) -> User:
    """The same user on both stores (the id derives from the email), as a backfill leaves it."""
    tally = Tally()
    token, user_id = "", ""
    for base in bases:
        answer = await call(
            http,
            tally,
            "POST",
            f"{base}/api/auth/register",
            201,
            headers={},
            body={"email": f"{name}@drill.test", "password": "drill-password", "name": name},
        )
        assert answer is not None, tally.failures
        token, user_id = token or answer[2]["token"], answer[2]["user"]["id"]
    return User(f"{name}@drill.test", token, user_id)


async def status(http: aiohttp.ClientSession, proxy: str) -> dict[str, Any]:
    async with http.get(f"{proxy}/_proxy/status") as response:
        assert response.status == 200
        body: dict[str, Any] = await response.json()
        return body


async def until(probe: Any, what: str, timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = await probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def applied(http: aiohttp.ClientSession, proxy: str, result: EditResult) -> None:
    async def probe() -> bool:
        return bool((await status(http, proxy))["flags"]["digest"] == result.digest)

    await until(probe, f"the proxy to apply {result.digest[:12]}")


@pytest.mark.timeout(900)  # under two minutes alone; loaded, more than the default 300 s
async def test_migration_drill(tmp_path: Path) -> None:
    began = time.monotonic()
    env = {"BANYAN_JWT_SECRET": SECRET}
    async with (
        running_stack(tmp_path, with_proxy=False, env=env) as stack,
        aiohttp.ClientSession() as http,
    ):
        legacy, new = stack.url("legacy"), stack.url("new")
        front = FaultFront(new)
        async with serve(front.app) as front_url:
            flags = stack.flags_path
            flags.write_text(FLAGS.format(legacy=legacy, new=front_url))
            async with proxy_process(flags, tmp_path) as proxy:
                await drill(http, tmp_path, flags, legacy, new, proxy, front, began)
    assert time.monotonic() - began < BUDGET


async def drill(
    http: aiohttp.ClientSession,
    workdir: Path,
    flags: Path,
    legacy: str,
    new: str,
    proxy: str,
    front: FaultFront,
    began: float,
) -> None:
    bases = [legacy, new]
    writers = [await register(http, bases, f"writer{i}") for i in range(4)]
    tutor_user = await register(http, bases, "tutee")
    editors_users = [await register(http, bases, f"editor{i}") for i in range(3)]

    tally = Tally()
    stop_traffic = asyncio.Event()
    tasks = [
        asyncio.create_task(session_worker(proxy, user, f"w{i}", tally, stop_traffic))
        for i, user in enumerate(writers)
    ]
    tutor_sessions: list[str] = []
    for n in range(8):  # on both stores: the tutor moves on its own schedule, apart from sessions
        made_ids = set()
        for base in bases:
            made = await call(
                http,
                tally,
                "POST",
                f"{base}/api/sessions",
                201,
                headers={**tutor_user.auth, "Idempotency-Key": f"tutor-{n}"},
                body={"title": f"tutoring {n}"},
            )
            assert made is not None, tally.failures
            made_ids.add(made[2]["id"])
        assert len(made_ids) == 1  # the id derives from the key: the same on both stores
        tutor_sessions += made_ids
    tasks.append(
        asyncio.create_task(tutor_worker(proxy, tutor_user, tutor_sessions, tally, stop_traffic))
    )
    editors = [Editor(f"e{i}", u, proxy, ROOM, tally) for i, u in enumerate(editors_users)]
    wb_http = aiohttp.ClientSession()
    tasks += [asyncio.create_task(e.run(wb_http, stop_traffic, 0.2)) for e in editors]
    edits: list[EditResult] = []
    try:
        await asyncio.sleep(DWELL)
        for feature in PLAN:
            for mode, percent in STEPS:
                result = await asyncio.to_thread(set_mode, flags, feature, mode, percent)
                print(time.strftime("%H:%M:%S"), "drill:", feature, mode, percent or "", flush=True)
                edits.append(result)
                await applied(http, proxy, result)
                await asyncio.sleep(DWELL)
                current = (await status(http, proxy))["features"][feature]
                if current["mode"] != mode:
                    why = await parity_summary(http, proxy, feature)
                    raise AssertionError(f"{feature} left {mode}: {current}\n{why}")

        # The fault: new answers 503 on sessions. The guard rolls sessions back to legacy.
        front.fault = sessions_fault
        print(time.strftime("%H:%M:%S"), "drill: fault injected in new (sessions)", flush=True)

        async def rolled_back() -> bool:
            body = await status(http, proxy)
            return bool(body["rollbacks"]) and body["features"]["sessions"]["mode"] == "legacy"

        await until(rolled_back, "the sessions guard to roll back")
        await asyncio.sleep(DWELL)
        # Diagnosis: shadow sessions with the fault still on until the report shows new's 503s.
        edits.append(await asyncio.to_thread(set_mode, flags, "sessions", "shadow"))
        print(time.strftime("%H:%M:%S"), "drill: sessions shadowed to diagnose", flush=True)

        async def fault_reported() -> bool:
            return "injected fault" in await parity_summary(http, proxy, "sessions")

        await until(fault_reported, "the parity report to show the fault")
        edits.append(await asyncio.to_thread(rollback, flags, "sessions"))
        await applied(http, proxy, edits[-1])
        front.fault = None
        await asyncio.sleep(DWELL / 2)
    finally:
        stop_traffic.set()
        await asyncio.gather(*tasks, return_exceptions=True)
    wb_doc = await settle_whiteboard(http, proxy, editors)
    for editor in editors:
        await editor.client.close()
    await wb_http.close()

    async def mirror_drained() -> bool:
        mirror = (await status(http, proxy))["mirror"]
        return bool(mirror["pending"] == 0)

    # a write retried through the fault waits up to the backoff's cap (30 s) for its next try
    await until(mirror_drained, "the mirror queue to drain", timeout=90)
    final = await status(http, proxy)
    print(json.dumps({k: final[k] for k in ("rollbacks", "mirror")}, indent=1, default=str))
    print(
        f"drill: {tally.requests} requests ({tally.retried} retries), {tally.turns} tutor turns, "
        f"{tally.ws_connects} sockets, {tally.reconnects} whiteboard reconnects, backends "
        f"{tally.backends}, injected {front.hits} faults, {time.monotonic() - began:.1f}s"
    )

    # 1. No client request failed.
    assert tally.failures == [], "\n".join(tally.failures[:20])
    assert final["mirror"]["dead"] == 0

    # 2. Every record created on new is on legacy, as the client last saw it.
    on_new = [c for c in tally.created if c.backend == "new"]
    assert len(on_new) > 20
    lost = []
    for record in on_new:
        url = f"{legacy}/api/sessions/{record.id}"
        async with http.get(url, headers=record.user.auth) as answer:
            body = await answer.json()
            if answer.status != 200 or body["title"] != record.title:
                lost.append(f"{record.id}: {answer.status} {body}")
                continue
        async with http.get(f"{url}/messages", headers=record.user.auth) as answer:
            ids = [m["id"] for m in (await answer.json())["items"]]
            if ids != record.message_ids:
                lost.append(f"{record.id}: messages {ids} != {record.message_ids}")
    assert lost == [], "\n".join(lost[:20])

    # 3. The audit log holds every change: each edit, both guard rollbacks.
    history = read_history(log_path(flags))
    assert history.problems == []
    entries = [e.data for e in history.entries]
    digests = {e["digest"] for e in entries if e["source"] == "file"}
    assert {r.digest for r in edits} <= digests
    guards = [e for e in entries if e["source"] == "guard"]
    assert [g["feature"] for g in guards] == ["sessions"]
    assert "max_error_rate" in guards[0]["reason"] and guards[0]["before"]["mode"] == "new"
    assert guards[0]["after"]["mode"] == "legacy"
    assert len(entries) == len(edits) + 1
    assert flags_cli(["history", "--file", str(flags), "--feature", "sessions"]) == 0
    assert [r["rule"] for r in final["rollbacks"]] == ["max_error_rate"]

    # 4. The parity report names the injected fault.
    async with http.get(f"{proxy}/_proxy/parity.json", params={"feature": "sessions"}) as answer:
        report = await answer.json()
    assert '"injected fault"' in json.dumps(report), json.dumps(report)[:2000]
    sessions = next(f for f in report["features"] if f["feature"] == "sessions")
    assert sessions["mismatched"] + sessions["errors"] > 0

    # 5. The WebSocket traffic ran through every flip; every whiteboard replica holds the same
    # document (checked in settle_whiteboard), with every shape anybody drew.
    assert tally.turns > 20
    assert tally.reconnects >= len(editors) * 3  # moved by shadow, canary and new (1012)
    drawn = {shape for editor in editors for shape in editor.drawn}
    assert set(wb_doc["shapes"]) == drawn
    assert sorted(wb_doc["order"]) == sorted(drawn)


async def parity_summary(http: aiohttp.ClientSession, proxy: str, feature: str) -> str:
    """The differing fields of a feature's parity report, with one example each (for messages)."""
    async with http.get(f"{proxy}/_proxy/parity.json", params={"feature": feature}) as answer:
        report = await answer.json()
    lines = []
    for entry in report["features"]:
        for endpoint in entry["endpoints"]:
            for top in endpoint["top_fields"][:5]:
                example = (top.get("examples") or [{}])[0]
                diffs = [d for d in example.get("differences", []) if d["path"] == top["path"]]
                lines.append(
                    f"{endpoint['endpoint']} {top['kind']} {top['path']} x{top['count']}: "
                    f"{json.dumps(diffs[:1], default=str)[:300]}"
                )
    return "\n".join(lines)


async def settle_whiteboard(
    http: aiohttp.ClientSession, proxy: str, editors: list[Editor]
) -> dict[str, Any]:
    """Wait until every replica and the serving backend hold one and the same document."""
    url = f"{proxy}/api/whiteboard/{ROOM}"

    async def converged() -> dict[str, Any] | None:
        docs = [editor.client.json() for editor in editors]
        async with http.get(url, headers=editors[0].user.auth) as answer:
            server = (await answer.json())["doc"]
        if all(doc == server for doc in docs):
            return server
        return None

    doc: dict[str, Any] = await until(converged, "the whiteboard replicas to converge")
    return doc
