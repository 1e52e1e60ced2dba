"""Checks of the tutor and whiteboard both backends must pass beyond the contract suite: model
failures (down, dropped mid-stream, too slow), concurrent repeats of one key, shutdown with open
sockets, and rooms unloading after their grace. ``tests/backends/{legacy,new}/test_realtime.py``
run them against their backend's ``create_app``.

The only fake here is :func:`dropping_model`, an injected fault: an OpenAI-style stream that
sends two tokens and then loses the connection.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import pytest
from aiohttp import web
from pycrdt import Doc, Map

from banyan.backends.common.whiteboard.client import WhiteboardClient
from banyan.backends.common.whiteboard.rooms import RoomManager
from banyan.backends.model.server import create_app as model_app
from banyan.serving import serve

MakeApp = Callable[..., web.Application]


@asynccontextmanager
async def backend(
    make_app: MakeApp,
    tmp_path: Path,
    model_url: str,
    monkeypatch: pytest.MonkeyPatch,
    llm_timeout: float = 10.0,
    **options: Any,
) -> AsyncIterator[tuple[web.Application, httpx.AsyncClient, str]]:
    """The backend on a fresh store, pointed at ``model_url``; yields (app, client, token).

    ``llm_timeout`` stays generous unless a test is about the model being slow: a loaded
    CI machine can pause a healthy stream for longer than half a second."""
    monkeypatch.setenv("OPENAI_BASE_URL", model_url)
    monkeypatch.setenv("BANYAN_LLM_RETRIES", "0")
    monkeypatch.setenv("BANYAN_LLM_TIMEOUT", str(llm_timeout))
    app = make_app(f"sqlite+aiosqlite:///{tmp_path / 'rt.db'}", **options)
    async with serve(app) as url, httpx.AsyncClient(base_url=url, timeout=10) as http:
        registered = await http.post(
            "/api/auth/register",
            json={"email": "rt@example.com", "password": "p" * 10, "name": "R"},
        )
        token = registered.json()["token"]
        http.headers["Authorization"] = f"Bearer {token}"
        yield app, http, token


async def new_session(http: httpx.AsyncClient) -> str:
    made = await http.post("/api/sessions", json={"title": "T"})
    sid: str = made.json()["id"]
    return sid


async def stored(http: httpx.AsyncClient, sid: str) -> list[Any]:
    items: list[Any] = (await http.get(f"/api/sessions/{sid}/messages")).json()["items"]
    return items


@asynccontextmanager
async def dropping_model() -> AsyncIterator[str]:
    """Fault injection: a chat stream that sends two tokens, then drops the connection."""

    async def chat(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for text in ("Half", " an"):
            chunk = {
                "id": "x",
                "object": "chat.completion.chunk",
                "created": 0,
                "model": "m",
                "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}],
            }
            await response.write(f"data: {json.dumps(chunk)}\n\n".encode())
        assert request.transport is not None
        request.transport.abort()
        return response

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    async with serve(app) as url:
        yield url + "/v1"


async def check_model_down(make_app: MakeApp, tmp_path: Path, mp: pytest.MonkeyPatch) -> None:
    async with serve(model_app(fail_rate=1.0)) as model:
        async with backend(make_app, tmp_path, model + "/v1", mp) as (_, http, token):
            sid = await new_session(http)
            failed = await http.post(f"/api/sessions/{sid}/ask", json={"text": "x"})
            assert failed.status_code == 502
            assert failed.json()["error"]["code"] == "upstream_failed"
            sse = await http.post(
                f"/api/sessions/{sid}/ask",
                json={"text": "x"},
                headers={"Accept": "text/event-stream"},
            )
            assert sse.status_code == 502  # nothing streamed yet: a plain JSON error
            ws_url = str(http.base_url).replace("http", "ws") + f"/ws/tutor/{sid}?token={token}"
            async with aiohttp.ClientSession() as s, s.ws_connect(ws_url) as ws:
                await ws.send_json({"type": "ask", "text": "x", "id": "a"})
                error = await ws.receive_json(timeout=5)
                assert (error["type"], error["turn"], error["code"]) == (
                    "error",
                    "a",
                    "upstream_failed",
                )
                await ws.send_json({"type": "ping"})
                assert await ws.receive_json(timeout=5) == {"type": "pong"}
            assert await stored(http, sid) == []


async def check_model_drops(make_app: MakeApp, tmp_path: Path, mp: pytest.MonkeyPatch) -> None:
    async with dropping_model() as model, backend(make_app, tmp_path, model, mp) as (_, http, _t):
        sid = await new_session(http)
        sse = await http.post(
            f"/api/sessions/{sid}/ask", json={"text": "x"}, headers={"Accept": "text/event-stream"}
        )
        assert sse.status_code == 200
        blocks = [b for b in sse.text.strip().split("\n\n") if b]
        assert blocks[0].startswith("event: token")
        assert blocks[-1].startswith("event: error")
        error = json.loads(blocks[-1].split("data: ", 1)[1])
        assert error["error"]["code"] == "upstream_failed"
        plain = await http.post(f"/api/sessions/{sid}/ask", json={"text": "x"})
        assert plain.status_code == 502
        assert await stored(http, sid) == []


async def check_model_slow(make_app: MakeApp, tmp_path: Path, mp: pytest.MonkeyPatch) -> None:
    async with serve(model_app(latency_ms=3000)) as model:
        async with backend(make_app, tmp_path, model + "/v1", mp, llm_timeout=0.5) as (_, http, _t):
            sid = await new_session(http)
            slow = await http.post(f"/api/sessions/{sid}/ask", json={"text": "x"})
            assert slow.status_code == 504
            assert slow.json()["error"]["code"] == "upstream_timeout"


async def check_concurrent_repeats(
    make_app: MakeApp, tmp_path: Path, mp: pytest.MonkeyPatch
) -> None:
    async with serve(model_app(token_delay_ms=2)) as model:
        async with backend(make_app, tmp_path, model + "/v1", mp) as (_, http, _t):
            sid = await new_session(http)
            key = {"Idempotency-Key": "same-turn"}
            answers = await asyncio.gather(
                *(
                    http.post(f"/api/sessions/{sid}/ask", json={"text": "Twice"}, headers=key)
                    for _ in range(3)
                )
            )
            assert {a.status_code for a in answers} == {200}
            bodies = [a.json() for a in answers]
            assert bodies[0] == bodies[1] == bodies[2]
            assert [m["seq"] for m in await stored(http, sid)] == [1, 2]


async def check_shutdown_closes_sockets(
    make_app: MakeApp, tmp_path: Path, mp: pytest.MonkeyPatch
) -> None:
    async with serve(model_app()) as model, aiohttp.ClientSession() as s:
        async with backend(make_app, tmp_path, model + "/v1", mp) as (_, http, token):
            sid = await new_session(http)
            base = str(http.base_url).replace("http", "ws")
            tutor = await s.ws_connect(f"{base}/ws/tutor/{sid}?token={token}")
            board = WhiteboardClient()
            await board.connect(s, f"{base}/ws/whiteboard/shut?token={token}")
            await board.wait_synced()
            await board.edit(set_shape("k", {"v": 1}))
            started = time.monotonic()
        assert time.monotonic() - started < 1.5  # sockets were closed, not waited out
        closing = await tutor.receive(timeout=5)
        assert (closing.type, closing.data) == (aiohttp.WSMsgType.CLOSE, 1001)
        await board.wait_for(lambda c: c.close_code is not None)
        assert board.close_code == 1001
        await tutor.close()


def set_shape(key: str, value: Any) -> Callable[[Doc], None]:
    def change(doc: Doc) -> None:
        doc.get("shapes", type=Map)[key] = value

    return change


async def check_room_unloads_and_compacts(
    make_app: MakeApp,
    rooms_of: Callable[[web.Application], RoomManager],
    tmp_path: Path,
    mp: pytest.MonkeyPatch,
) -> None:
    async with serve(model_app()) as model, aiohttp.ClientSession() as s:
        async with backend(make_app, tmp_path, model + "/v1", mp, whiteboard_grace=0.1) as (
            app,
            http,
            token,
        ):
            base = str(http.base_url).replace("http", "ws")
            client = WhiteboardClient()
            await client.connect(s, f"{base}/ws/whiteboard/unload?token={token}")
            await client.wait_synced()
            for i in range(3):
                await client.edit(set_shape(f"s{i}", i))
                await asyncio.sleep(0.08)  # each edit is flushed on its own
            await client.close()
            rooms = rooms_of(app)
            for _ in range(100):
                if "unload" not in rooms.loaded:
                    break
                await asyncio.sleep(0.02)
            assert "unload" not in rooms.loaded
            assert len(await rooms.store.load_updates("unload")) == 1  # compacted on unload
            doc = (await http.get("/api/whiteboard/unload")).json()["doc"]
            assert doc == {"shapes": {"s0": 0, "s1": 1, "s2": 2}}
