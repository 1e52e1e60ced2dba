"""Tests of legacy session update, context and live session queries, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import httpx
import pytest

from banyan.backends.legacy.app import create_app
from banyan.pg import postgres_available, temp_database
from banyan.serving import serve


@pytest.fixture(params=["sqlite", "postgres"])
async def base(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    if request.param == "sqlite":
        async with serve(create_app(f"sqlite+aiosqlite:///{tmp_path / 's.db'}")) as url:
            yield url
        return
    if not await postgres_available():
        pytest.skip("PostgreSQL not reachable at 127.0.0.1:5432: connection failed")
    async with temp_database("legacy") as db_url, serve(create_app(db_url)) as url:
        yield url


async def test_session_update_context_and_live(base: str) -> None:
    async with httpx.AsyncClient(base_url=base) as http:
        reg = await http.post(
            "/api/auth/register", json={"email": "c@x.io", "password": "password1", "name": "C"}
        )
        token = reg.json()["token"]
        auth = {"Authorization": f"Bearer {token}"}
        sid = (await http.post("/api/sessions", json={"title": "t"}, headers=auth)).json()["id"]
        patched = await http.patch(f"/api/sessions/{sid}", json={"title": "u"}, headers=auth)
        assert patched.status_code == 200 and patched.json()["title"] == "u"
        bad = await http.patch(f"/api/sessions/{sid}", json={"title": ""}, headers=auth)
        assert bad.status_code == 400
        empty = (await http.get(f"/api/sessions/{sid}/context", headers=auth)).json()
        assert empty["context"] == {} and empty["updated_at"] is None
        put = await http.put(
            f"/api/sessions/{sid}/context", json={"context": {"a": 1}}, headers=auth
        )
        assert put.status_code == 200 and put.json()["context"] == {"a": 1}
        got = (await http.get(f"/api/sessions/{sid}/context", headers=auth)).json()
        assert got["context"] == {"a": 1} and got["updated_at"] is not None
        big = {"context": {"k": "x" * 70000}}
        too_big = await http.put(f"/api/sessions/{sid}/context", json=big, headers=auth)
        assert too_big.status_code == 413
        not_obj = await http.put(f"/api/sessions/{sid}/context", json={"context": 1}, headers=auth)
        assert not_obj.status_code == 400
        async with (
            aiohttp.ClientSession() as client,
            client.ws_connect(f"{base}/ws/live?token={token}") as ws,
        ):
            await ws.send_json(
                {"type": "subscribe", "id": "s", "query": "sessions.get", "args": {"id": sid}}
            )
            first = await asyncio.wait_for(ws.receive_json(), 5)
            assert first["value"]["title"] == "u"
            await ws.send_json(
                {
                    "type": "subscribe",
                    "id": "m",
                    "query": "messages.list",
                    "args": {"session_id": sid},
                }
            )
            assert (await asyncio.wait_for(ws.receive_json(), 5))["value"]["items"] == []
            await ws.send_json(
                {"type": "subscribe", "id": "l", "query": "sessions.list", "args": {"limit": 5}}
            )
            listed = await asyncio.wait_for(ws.receive_json(), 5)
            assert [s["id"] for s in listed["value"]["items"]] == [sid]
            await http.patch(f"/api/sessions/{sid}", json={"title": "v"}, headers=auth)
            pushed = [await asyncio.wait_for(ws.receive_json(), 5) for _ in range(2)]
            assert {p["id"] for p in pushed} == {"s", "l"}
