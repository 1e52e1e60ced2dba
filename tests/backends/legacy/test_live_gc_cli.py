"""Tests of legacy /ws/live pushes, session expiry with the collector, and ``banyan legacy``."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import aiohttp
import httpx

from banyan.backends.legacy import gc
from banyan.backends.legacy.app import create_app
from banyan.backends.legacy.state import STATE
from banyan.serving import serve


async def _register(http: httpx.AsyncClient) -> str:
    response = await http.post(
        "/api/auth/register", json={"email": "l@x.io", "password": "password1", "name": "L"}
    )
    return str(response.json()["token"])


async def test_live_folders_push_after_write(tmp_path: Path) -> None:
    app = create_app(f"sqlite+aiosqlite:///{tmp_path / 'l.db'}")
    async with serve(app) as url, httpx.AsyncClient(base_url=url) as http:
        token = await _register(http)
        async with (
            aiohttp.ClientSession() as session,
            session.ws_connect(f"{url}/ws/live?token={token}") as ws,
        ):
            await ws.send_json(
                {"type": "subscribe", "id": "f", "query": "folders.list", "args": {}}
            )
            first = await asyncio.wait_for(ws.receive_json(), 5)
            assert first == {"type": "result", "id": "f", "value": {"items": []}}
            headers = {"Authorization": f"Bearer {token}"}
            await http.post("/api/folders", json={"name": "new"}, headers=headers)
            pushed = await asyncio.wait_for(ws.receive_json(), 5)
            assert [f["name"] for f in pushed["value"]["items"]] == ["new"]
        refused = await http.get("/ws/live", headers={"Upgrade": "websocket"})
        assert refused.status_code == 401


async def test_expired_session_is_404_and_collected(tmp_path: Path) -> None:
    app = create_app(f"sqlite+aiosqlite:///{tmp_path / 'l.db'}", session_ttl=0.001)
    async with serve(app) as url, httpx.AsyncClient(base_url=url) as http:
        headers = {"Authorization": f"Bearer {await _register(http)}"}
        created = (await http.post("/api/sessions", json={"title": "t"}, headers=headers)).json()
        await asyncio.sleep(0.01)
        assert (
            await http.get(f"/api/sessions/{created['id']}", headers=headers)
        ).status_code == 404
        collected = await gc.collect(app[STATE])
        assert collected["sessions"] == 1
        assert (await gc.collect(app[STATE]))["sessions"] == 0


def test_cli_prints_address_and_serves_healthz(tmp_path: Path) -> None:
    db = f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}"
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "banyan"), "legacy", "--port", "0", "--db", db],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert proc.stdout is not None
        address = ""
        for _ in range(50):
            line = proc.stdout.readline()
            if "http://" in line:
                address = "http://" + line.split("http://", 1)[1].split()[0].strip("\",'")
                break
        assert address, "no address printed"
        assert httpx.get(f"{address}/healthz", timeout=5).json()["service"] == "legacy"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
