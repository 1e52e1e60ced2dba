"""Contract: `/ws/live` — auth before upgrade, subscribe/result, pushes on writes, errors, ping."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import pytest

from banyan.backends.contract.client import User
from banyan.backends.contract.targets import Target

pytestmark = pytest.mark.asyncio(loop_scope="session")

FRAME_TIMEOUT = 5.0


@asynccontextmanager
async def live(target: Target, token: str | None, *, header: bool = False) -> AsyncIterator[Any]:
    url = target.ws_url + "/ws/live"
    headers = {}
    if token and header:
        headers["Authorization"] = f"Bearer {token}"
    elif token:
        url += f"?token={token}"
    async with aiohttp.ClientSession() as http, http.ws_connect(url, headers=headers) as ws:
        yield ws


async def frame(ws: Any) -> dict[str, Any]:
    message = await asyncio.wait_for(ws.receive(), FRAME_TIMEOUT)
    assert message.type == aiohttp.WSMsgType.TEXT, message
    body: dict[str, Any] = json.loads(message.data)
    return body


async def result_for(ws: Any, sub_id: str) -> Any:
    """The next result frame of ``sub_id`` (other subscriptions' frames are skipped)."""
    while True:
        body = await frame(ws)
        if body.get("type") == "result" and body.get("id") == sub_id:
            return body["value"]


async def subscribe(ws: Any, sub_id: str, query: str, args: dict[str, Any]) -> Any:
    await ws.send_str(json.dumps({"type": "subscribe", "id": sub_id, "query": query, "args": args}))
    return await result_for(ws, sub_id)


async def test_refused_without_a_valid_token(target: Target) -> None:
    for token in (None, "garbage"):
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            async with live(target, token):
                pass
        assert refused.value.status == 401


async def test_folders_list_is_pushed_on_write(target: Target, user: User) -> None:
    async with live(target, user.token) as ws:
        value = await subscribe(ws, "f", "folders.list", {})
        assert value == (await user.client.get("/api/folders")).json() == {"items": []}
        created = (await user.client.post("/api/folders", json={"name": "pushed"})).json()
        pushed = await result_for(ws, "f")
        assert pushed == {"items": [created]}


async def test_header_auth_and_session_queries(target: Target, user: User) -> None:
    session = (await user.client.post("/api/sessions", json={"title": "live"})).json()
    async with live(target, user.token, header=True) as ws:
        got = await subscribe(ws, "s", "sessions.get", {"id": session["id"]})
        assert got == session
        listed = await subscribe(ws, "l", "sessions.list", {"limit": 10})
        assert listed == (await user.client.get("/api/sessions", params={"limit": 10})).json()
        messages = await subscribe(ws, "m", "messages.list", {"session_id": session["id"]})
        assert messages == {"items": [], "next_cursor": None}
        posted = await user.client.post(
            f"/api/sessions/{session['id']}/messages", json={"role": "user", "content": "hi"}
        )
        assert posted.status_code == 201
        pushed = await result_for(ws, "m")
        assert pushed["items"] == [posted.json()]


async def test_other_users_writes_do_not_leak(target: Target, user: User, other: User) -> None:
    async with live(target, user.token) as ws:
        await subscribe(ws, "f", "folders.list", {})
        await other.client.post("/api/folders", json={"name": "theirs"})
        mine = (await user.client.post("/api/folders", json={"name": "mine"})).json()
        assert await result_for(ws, "f") == {"items": [mine]}


async def test_unsubscribe_ping_and_errors(target: Target, user: User) -> None:
    async with live(target, user.token) as ws:
        await ws.send_str(json.dumps({"type": "ping"}))
        assert await frame(ws) == {"type": "pong"}
        await ws.send_str(
            json.dumps({"type": "subscribe", "id": "q", "query": "nope.list", "args": {}})
        )
        error = await frame(ws)
        assert error["type"] == "error" and error["id"] == "q"
        assert isinstance(error["code"], str) and isinstance(error["message"], str)
        await ws.send_str("{not json")
        bad = await frame(ws)
        assert bad["type"] == "error" and bad["code"] == "invalid_json"
        foreign = await subscribe_error(ws, "g", "sessions.get", {"id": "not-a-uuid"})
        assert foreign["code"] == "not_found"
        await subscribe(ws, "f", "folders.list", {})
        await ws.send_str(json.dumps({"type": "unsubscribe", "id": "f"}))
        await user.client.post("/api/folders", json={"name": "quiet"})
        await ws.send_str(json.dumps({"type": "ping"}))
        assert await frame(ws) == {"type": "pong"}  # no result for "f" came first


async def subscribe_error(ws: Any, sub_id: str, query: str, args: dict[str, Any]) -> Any:
    await ws.send_str(json.dumps({"type": "subscribe", "id": sub_id, "query": query, "args": args}))
    body = await frame(ws)
    assert body["type"] == "error" and body["id"] == sub_id, body
    return body
