"""Tests of the new backend over HTTP: auth, folders, sessions, messages, ownership, restart."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from banyan.backends.new.app import create_app
from banyan.serving import serve


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(f"sqlite+aiosqlite:///{tmp_path / 'new.db'}", gc_interval=60)
    async with serve(app) as url, httpx.AsyncClient(base_url=url) as http:
        yield http


async def register(http: httpx.AsyncClient, email: str) -> dict[str, str]:
    response = await http.post(
        "/api/auth/register", json={"email": email, "password": "password1", "name": "N"}
    )
    assert response.status_code == 201, response.text
    return {"Authorization": f"Bearer {response.json()['token']}"}


async def test_health_and_ready(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok", "service": "new"}
    assert (await client.get("/readyz")).status_code == 200


async def test_auth_flow_and_revocation(client: httpx.AsyncClient) -> None:
    auth = await register(client, "A@x.io")
    me = await client.get("/api/auth/me", headers=auth)
    assert me.json()["user"]["email"] == "a@x.io"
    again = await client.post(
        "/api/auth/register", json={"email": "a@x.io", "password": "password1", "name": "N"}
    )
    assert again.json()["error"]["code"] == "email_taken"
    bad = await client.post("/api/auth/login", json={"email": "a@x.io", "password": "wrongpass"})
    assert bad.status_code == 401
    assert (await client.post("/api/auth/logout", headers=auth)).status_code == 204
    revoked = await client.get("/api/auth/me", headers=auth)
    assert revoked.json()["error"]["code"] == "token_revoked"
    assert (
        await client.get("/api/auth/me", headers={"Authorization": "Bearer x"})
    ).status_code == 401


async def test_folders_sessions_messages_and_ownership(client: httpx.AsyncClient) -> None:
    auth = await register(client, "o@x.io")
    other = await register(client, "p@x.io")
    folder = (await client.post("/api/folders", json={"name": " F "}, headers=auth)).json()
    assert folder["name"] == "F"
    assert (await client.post("/api/folders", json={"name": ""}, headers=auth)).status_code == 400
    created = await client.post(
        "/api/sessions", json={"title": "T", "folder_id": folder["id"]}, headers=auth
    )
    session = created.json()
    assert created.status_code == 201 and session["folder_id"] == folder["id"]
    for i in range(3):
        sent = await client.post(
            f"/api/sessions/{session['id']}/messages",
            json={"role": "user", "content": f"m{i}"},
            headers=auth,
        )
        assert sent.json()["seq"] == i + 1
    page = (
        await client.get(f"/api/sessions/{session['id']}/messages?limit=2", headers=auth)
    ).json()
    assert [m["content"] for m in page["items"]] == ["m0", "m1"]
    rest = await client.get(
        f"/api/sessions/{session['id']}/messages",
        params={"limit": 2, "cursor": page["next_cursor"]},
        headers=auth,
    )
    assert [m["content"] for m in rest.json()["items"]] == ["m2"]
    assert (await client.get(f"/api/sessions/{session['id']}", headers=other)).status_code == 404
    assert (await client.get("/api/sessions/not-a-uuid", headers=auth)).status_code == 404
    assert (await client.delete(f"/api/folders/{folder['id']}", headers=auth)).status_code == 204
    moved = (await client.get(f"/api/sessions/{session['id']}", headers=auth)).json()
    assert moved["folder_id"] is None and moved["message_count"] == 3


async def test_idempotent_folder_create(client: httpx.AsyncClient) -> None:
    auth = {**(await register(client, "i@x.io")), "Idempotency-Key": "k1"}
    first = await client.post("/api/folders", json={"name": "A"}, headers=auth)
    replay = await client.post("/api/folders", json={"name": "A"}, headers=auth)
    assert first.json()["id"] == replay.json()["id"]
    conflict = await client.post("/api/folders", json={"name": "B"}, headers=auth)
    assert conflict.status_code == 409


async def test_data_survives_restart(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'new.db'}"
    async with serve(create_app(url)) as base, httpx.AsyncClient(base_url=base) as http:
        auth = await register(http, "r@x.io")
        await http.post("/api/folders", json={"name": "kept"}, headers=auth)
    async with serve(create_app(url)) as base, httpx.AsyncClient(base_url=base) as http:
        listed = await http.get("/api/folders", headers=auth)
        assert [f["name"] for f in listed.json()["items"]] == ["kept"]
