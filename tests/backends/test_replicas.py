"""Several real replicas of each backend (one database, one Redis, different ports) behave as one:
whiteboard edits and presence, tutor ``turn`` notices and ``/ws/live`` pushes cross replicas, a
replica that loads a room late converges, and a cut Redis link heals (cut through
:class:`~tests.backends.common.redis_front.RedisFront`, never the real Redis).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import pytest
from aiohttp import web
from pycrdt import Doc, Map

from banyan.backends.common import fanout
from banyan.backends.common.whiteboard.client import WhiteboardClient
from banyan.backends.legacy.app import create_app as legacy_app
from banyan.backends.model.server import create_app as model_app
from banyan.backends.new.app import create_app as new_app
from banyan.pg import postgres_available, temp_database
from banyan.processes import PYTHON_CLI, start, stop_all
from banyan.serving import serve
from tests.backends.common.redis_front import RedisFront, require_redis, unique_prefix

MakeApp = Callable[..., web.Application]
BACKENDS = [pytest.param(legacy_app, id="legacy"), pytest.param(new_app, id="new")]


@dataclass
class Replica:
    app: web.Application
    url: str

    @property
    def bus(self) -> fanout.Bus:
        bus = fanout.bus_of(self.app)
        assert bus is not None
        return bus

    def ws(self, path: str, token: str) -> str:
        return f"{self.url}{path}?token={token}"


async def until(check: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


@pytest.fixture
async def redis_url() -> str:
    return await require_redis()


@asynccontextmanager
async def cluster(
    make_app: MakeApp, tmp_path: Path, redis_urls: list[str], *, db: str | None = None
) -> AsyncIterator[list[Replica]]:
    """One replica per Redis URL, all on one database (SQLite unless ``db`` is "postgresql" or
    a URL) and one channel prefix."""
    prefix = unique_prefix()
    async with AsyncExitStack() as stack:
        if db == "postgresql":
            if not await postgres_available():
                pytest.skip("PostgreSQL not reachable at 127.0.0.1:5432: replicas on SQLite only")
            db = await stack.enter_async_context(temp_database("replicas"))
        db = db or f"sqlite+aiosqlite:///{tmp_path / 'shared.db'}"
        replicas: list[Replica] = []
        for url in redis_urls:
            app = make_app(db, redis_url=url, redis_prefix=prefix, whiteboard_grace=30.0)
            bus = fanout.bus_of(app)
            assert bus is not None
            bus.min_backoff, bus.max_backoff = 0.02, 0.1
            replicas.append(Replica(app, await stack.enter_async_context(serve(app))))
        await until(lambda: all(r.bus.up for r in replicas))
        yield replicas


async def register(url: str) -> str:
    async with httpx.AsyncClient(base_url=url) as http:
        made = await http.post(
            "/api/auth/register",
            json={"email": "rep@example.com", "password": "p" * 10, "name": "R"},
        )
        token: str = made.json()["token"]
        return token


def shapes(client: WhiteboardClient) -> dict[str, Any]:
    found: dict[str, Any] = client.json().get("shapes", {})
    return found


def add_shape(key: str) -> Callable[[Doc], None]:
    def change(doc: Doc) -> None:
        doc.get("shapes", type=Map)[key] = {"kind": "rect", "x": len(key)}

    return change


@pytest.mark.parametrize(
    "store", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
@pytest.mark.parametrize("make_app", BACKENDS)
async def test_whiteboard_edits_presence_and_late_loaders_converge(
    make_app: MakeApp, store: str, tmp_path: Path, redis_url: str
) -> None:
    async with (
        cluster(make_app, tmp_path, [redis_url] * 3, db=None if store == "sqlite" else store) as (
            a,
            b,
            c,
        ),
        aiohttp.ClientSession() as s,
    ):
        token = await register(a.url)
        one, two = WhiteboardClient(), WhiteboardClient()
        await one.connect(s, a.ws("/ws/whiteboard/board", token))
        await one.wait_synced()
        await two.connect(s, b.ws("/ws/whiteboard/board", token))
        await two.wait_synced()

        await one.edit(add_shape("from-a"))
        await two.wait_for(lambda cl: "from-a" in shapes(cl))
        await two.edit(add_shape("from-b"))
        await one.wait_for(lambda cl: "from-b" in shapes(cl))

        await one.set_presence({"name": "Ann"})
        await two.wait_for(lambda cl: cl.peers.get(one.client_id) == {"name": "Ann"})
        await two.set_presence({"name": "Bob"})
        await one.wait_for(lambda cl: two.client_id in cl.peers)

        # a burst on A, then C loads the room at once: the store may not hold the burst yet
        for i in range(20):
            await one.edit(add_shape(f"burst-{i}"))
        three = WhiteboardClient()
        await three.connect(s, c.ws("/ws/whiteboard/board", token))
        await three.wait_synced()
        await three.wait_for(lambda cl: shapes(cl) == shapes(one))
        await three.wait_for(lambda cl: {one.client_id, two.client_id} <= set(cl.peers))
        assert len(shapes(three)) == 22

        async with httpx.AsyncClient(base_url=b.url) as http:
            auth = {"Authorization": f"Bearer {token}"}
            fresh = await http.get("/api/whiteboard/board", headers=auth)
            assert fresh.json()["doc"]["shapes"] == shapes(one)
            # a room only A has loaded: B's HTTP read loads it and catches up
            solo = WhiteboardClient()
            await solo.connect(s, a.ws("/ws/whiteboard/solo", token))
            await solo.wait_synced()
            for i in range(5):
                await solo.edit(add_shape(f"solo-{i}"))

            async def read_b() -> dict[str, Any]:
                got: dict[str, Any] = (
                    (await http.get("/api/whiteboard/solo", headers=auth)).json()["doc"]
                ).get("shapes", {})
                return got

            deadline = time.monotonic() + 5
            while await read_b() != shapes(solo):
                assert time.monotonic() < deadline, "B never caught up with A's room"
                await asyncio.sleep(0.02)
            await solo.edit(add_shape("after-load"))  # B has it loaded: live updates
            deadline = time.monotonic() + 5
            while "after-load" not in await read_b():
                assert time.monotonic() < deadline
                await asyncio.sleep(0.02)
            await solo.close()

        await one.close()  # its presence is removed on the other replicas
        await two.wait_for(lambda cl: one.client_id not in cl.peers)
        await three.wait_for(lambda cl: one.client_id not in cl.peers)
        await two.close()
        await three.close()


@pytest.mark.parametrize("make_app", BACKENDS)
async def test_tutor_turn_and_live_push_cross_replicas(
    make_app: MakeApp, tmp_path: Path, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with serve(model_app()) as model:
        monkeypatch.setenv("OPENAI_BASE_URL", model + "/v1")
        async with (
            cluster(make_app, tmp_path, [redis_url] * 2) as (a, b),
            aiohttp.ClientSession() as s,
            httpx.AsyncClient(base_url=a.url) as http,
        ):
            token = await register(a.url)
            http.headers["Authorization"] = f"Bearer {token}"
            sid = (await http.post("/api/sessions", json={"title": "T"})).json()["id"]

            live = await s.ws_connect(b.ws("/ws/live", token))
            await live.send_json(
                {"type": "subscribe", "id": "f", "query": "folders.list", "args": {}}
            )
            first = await live.receive_json(timeout=5)
            assert first == {"type": "result", "id": "f", "value": {"items": []}}
            await live.send_json(
                {
                    "type": "subscribe",
                    "id": "m",
                    "query": "messages.list",
                    "args": {"session_id": sid},
                }
            )
            assert (await live.receive_json(timeout=5))["value"]["items"] == []

            made = await http.post("/api/folders", json={"name": "from-a"})
            assert made.status_code == 201
            pushed = await live.receive_json(timeout=5)
            assert pushed["id"] == "f"
            assert [f["name"] for f in pushed["value"]["items"]] == ["from-a"]

            here = await s.ws_connect(a.ws(f"/ws/tutor/{sid}", token))
            there = await s.ws_connect(b.ws(f"/ws/tutor/{sid}", token))
            await asyncio.sleep(0.05)  # B's subscription to the session is confirmed by now
            await here.send_json({"type": "ask", "text": "What is a fraction?", "id": "q1"})
            while (done := await here.receive_json(timeout=10))["type"] != "done":
                assert done["type"] == "token"
            notice = await there.receive_json(timeout=5)
            assert notice == {
                "type": "turn",
                "question": done["question"],
                "answer": done["answer"],
            }
            messages = await live.receive_json(timeout=5)  # the turn's messages, via A's write
            assert messages["id"] == "m" and len(messages["value"]["items"]) == 2
            for ws in (here, there, live):
                await ws.close()


@pytest.mark.parametrize("make_app", BACKENDS)
async def test_whiteboard_heals_after_redis_link_is_cut(
    make_app: MakeApp, tmp_path: Path, redis_url: str
) -> None:
    front = RedisFront(redis_url)
    await front.start()
    try:
        async with (
            cluster(make_app, tmp_path, [front.url, redis_url]) as (a, b),
            aiohttp.ClientSession() as s,
        ):
            token = await register(a.url)
            auth = {"Authorization": f"Bearer {token}"}
            live = await s.ws_connect(a.ws("/ws/live", token))
            await live.send_json(
                {"type": "subscribe", "id": "f", "query": "folders.list", "args": {}}
            )
            assert (await live.receive_json(timeout=5))["value"]["items"] == []
            one, local, two = WhiteboardClient(), WhiteboardClient(), WhiteboardClient()
            for client, replica in ((one, a), (local, a), (two, b)):
                await client.connect(s, replica.ws("/ws/whiteboard/cut", token))
                await client.wait_synced()
            await one.edit(add_shape("before"))
            await two.wait_for(lambda cl: "before" in shapes(cl))

            front.cut()
            await until(lambda: not a.bus.up)
            await one.edit(add_shape("a-during"))
            await two.edit(add_shape("b-during"))
            await local.wait_for(lambda cl: "a-during" in shapes(cl))  # local editing goes on
            async with httpx.AsyncClient(base_url=b.url, headers=auth) as http:
                made = await http.post("/api/folders", json={"name": "during"})
                assert made.status_code == 201  # A never hears of it while cut off
            await asyncio.sleep(0.1)
            assert "a-during" not in shapes(two) and "b-during" not in shapes(one)

            front.restore()
            await until(lambda: a.bus.up)
            for client in (one, local, two):
                await client.wait_for(lambda cl: {"a-during", "b-during"} <= set(shapes(cl)))
            await one.edit(add_shape("after"))
            await two.wait_for(lambda cl: "after" in shapes(cl))
            # the resync re-ran A's live subscriptions: the folder made meanwhile is pushed
            pushed = await live.receive_json(timeout=5)
            assert [f["name"] for f in pushed["value"]["items"]] == ["during"]
            # garbage on the user's channel is ignored
            async with httpx.AsyncClient(base_url=a.url, headers=auth) as http:
                user_id = (await http.get("/api/auth/me")).json()["user"]["id"]
            channel = b.bus.channel("live", user_id)
            heard = a.bus.stats["received"]
            b.bus.publish(channel, "changed", b"not json")
            b.bus.publish(channel, "changed", b'{"not": "a list"}')
            b.bus.publish(channel, "changed", b'["folders"]')  # a real notice: same value
            await until(lambda: a.bus.stats["received"] >= heard + 3)
            await live.send_json({"type": "ping"})
            assert await live.receive_json(timeout=5) == {"type": "pong"}
            await live.close()
            for client in (one, local, two):
                await client.close()
    finally:
        await front.close()


async def test_separate_processes_started_with_redis_flag_share_a_room(
    tmp_path: Path, redis_url: str
) -> None:
    """``banyan legacy --redis URL``, twice, on one database: the command line path."""
    db = f"sqlite+aiosqlite:///{tmp_path / 'procs.db'}"
    env = {"BANYAN_REDIS_PREFIX": unique_prefix(), "BANYAN_REDIS_URL": ""}
    argv = [*PYTHON_CLI, "legacy", "--port", "0", "--db", db, "--redis", redis_url]
    first = await start("legacy-1", argv, env=env)
    children = [first]
    try:
        children.append(await start("legacy-2", argv, env=env))
        a, b = (child.url for child in children)
        token = await register(a)
        async with aiohttp.ClientSession() as s:
            one, two = WhiteboardClient(), WhiteboardClient()
            await one.connect(s, f"{a}/ws/whiteboard/procs?token={token}")
            await two.connect(s, f"{b}/ws/whiteboard/procs?token={token}")
            await one.wait_synced()
            await two.wait_synced()
            await one.edit(add_shape("from-one"))  # even if a bus was still connecting
            await two.wait_for(lambda cl: "from-one" in shapes(cl), timeout=10)
            await two.edit(add_shape("from-two"))
            await one.wait_for(lambda cl: "from-two" in shapes(cl))
            await one.close()
            await two.close()
    finally:
        await stop_all(children)
