"""Tests of the legacy backend over HTTP: auth, tokens, folders, sessions, messages, ownership."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from banyan.backends.legacy.app import create_app
from banyan.serving import serve


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(f"sqlite+aiosqlite:///{tmp_path / 'legacy.db'}", gc_interval=60)
    async with serve(app) as url, httpx.AsyncClient(base_url=url) as http:
        yield http


async def register(http: httpx.AsyncClient, email: str) -> dict[str, str]:
    response = await http.post(
        "/api/auth/register", json={"email": email, "password": "password1", "name": "N"}
    )
    assert response.status_code == 201, response.text
    return {"Authorization": f"Bearer {response.json()['token']}"}


def _b64(data: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


async def test_health_and_ready(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok", "service": "legacy"}
    assert (await client.get("/readyz")).status_code == 200


async def test_auth_flow_and_revocation(client: httpx.AsyncClient) -> None:
    auth = await register(client, "A@x.io")
    me = await client.get("/api/auth/me", headers=auth)
    assert me.json()["user"]["email"] == "a@x.io"
    again = await client.post(
        "/api/auth/register", json={"email": "a@x.io", "password": "password1", "name": "N"}
    )
    assert again.status_code == 409 and again.json()["error"]["code"] == "email_taken"
    bad = await client.post("/api/auth/login", json={"email": "a@x.io", "password": "wrongpass"})
    assert bad.status_code == 401
    good = await client.post("/api/auth/login", json={"email": "a@x.io", "password": "password1"})
    assert good.status_code == 200 and good.json()["token"]
    assert (await client.post("/api/auth/logout", headers=auth)).status_code == 204
    revoked = await client.get("/api/auth/me", headers=auth)
    assert revoked.status_code == 401 and revoked.json()["error"]["code"] == "token_revoked"


async def test_bad_tokens_are_refused(client: httpx.AsyncClient) -> None:
    auth = await register(client, "t@x.io")
    _, payload, _ = auth["Authorization"].split()[1].split(".")
    forged = [
        "x",
        f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{payload}.",
        f"{_b64({'alg': 'HS512', 'typ': 'JWT'})}.{payload}.c2ln",
        f"{_b64({'alg': 'HS256', 'typ': 'JWT'})}.{payload}.Zm9yZ2Vk",
    ]
    for token in forged:
        response = await client.get("/api/auth/me", headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 401, token
    assert (await client.get("/api/folders")).status_code == 401


async def test_validation_and_oversize(client: httpx.AsyncClient) -> None:
    bad = await client.post("/api/auth/register", json={"email": "nope", "password": "p"})
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "validation_error"
    auth = await register(client, "v@x.io")
    huge = await client.post("/api/folders", json={"name": "x" * (2 * 1024 * 1024)}, headers=auth)
    assert huge.status_code in (400, 413)
    garbage = await client.post("/api/folders", content=b"{not json", headers=auth)
    assert garbage.status_code == 400


async def test_folders_sessions_messages_and_ownership(client: httpx.AsyncClient) -> None:
    auth = await register(client, "o@x.io")
    other = await register(client, "p@x.io")
    folder = (await client.post("/api/folders", json={"name": " F "}, headers=auth)).json()
    assert folder["name"] == "F"
    assert (await client.post("/api/folders", json={"name": ""}, headers=auth)).status_code == 400
    renamed = await client.patch(f"/api/folders/{folder['id']}", json={"name": "G"}, headers=auth)
    assert renamed.status_code == 200 and renamed.json()["name"] == "G"
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
        assert sent.status_code == 201 and sent.json()["seq"] == i + 1
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
    assert rest.json()["next_cursor"] is None
    listed = (await client.get("/api/sessions", headers=auth)).json()
    assert [s["id"] for s in listed["items"]] == [session["id"]]
    assert (await client.get(f"/api/sessions/{session['id']}", headers=other)).status_code == 404
    foreign = await client.patch(f"/api/folders/{folder['id']}", json={"name": "Z"}, headers=other)
    assert foreign.status_code == 404
    assert (
        await client.post(
            f"/api/sessions/{session['id']}/messages",
            json={"role": "user", "content": "x"},
            headers=other,
        )
    ).status_code == 404
    assert (await client.get("/api/sessions/not-a-uuid", headers=auth)).status_code == 404
    assert (await client.delete(f"/api/folders/{folder['id']}", headers=auth)).status_code == 204
    moved = (await client.get(f"/api/sessions/{session['id']}", headers=auth)).json()
    assert moved["folder_id"] is None and moved["message_count"] == 3
    assert (await client.delete(f"/api/sessions/{session['id']}", headers=auth)).status_code == 204
    assert (await client.get(f"/api/sessions/{session['id']}", headers=auth)).status_code == 404


async def test_idempotent_folder_create(client: httpx.AsyncClient) -> None:
    auth = {**(await register(client, "i@x.io")), "Idempotency-Key": "k1"}
    first = await client.post("/api/folders", json={"name": "A"}, headers=auth)
    replay = await client.post("/api/folders", json={"name": "A"}, headers=auth)
    assert first.json()["id"] == replay.json()["id"]
    conflict = await client.post("/api/folders", json={"name": "B"}, headers=auth)
    assert conflict.status_code == 409
    assert conflict.json()["error"]["code"] == "idempotency_conflict"
    plain = {"Authorization": auth["Authorization"]}
    assert (
        await client.delete(f"/api/folders/{first.json()['id']}", headers=plain)
    ).status_code == 204
    again = await client.post("/api/folders", json={"name": "A"}, headers=auth)
    assert again.json()["id"] == first.json()["id"]


async def test_data_survives_restart(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'legacy.db'}"
    async with serve(create_app(url)) as base, httpx.AsyncClient(base_url=base) as http:
        auth = await register(http, "r@x.io")
        await http.post("/api/folders", json={"name": "kept"}, headers=auth)
    async with serve(create_app(url)) as base, httpx.AsyncClient(base_url=base) as http:
        listed = await http.get("/api/folders", headers=auth)
        assert [f["name"] for f in listed.json()["items"]] == ["kept"]


async def test_register_replay_unknown_login_and_session_pages(client: httpx.AsyncClient) -> None:
    body = {"email": "k@x.io", "password": "password1", "name": "K"}
    key = {"Idempotency-Key": "reg-1"}
    first = await client.post("/api/auth/register", json=body, headers=key)
    replay = await client.post("/api/auth/register", json=body, headers=key)
    assert first.status_code == 201 and replay.status_code in (200, 201)
    assert replay.json()["user"]["id"] == first.json()["user"]["id"]
    unknown = await client.post(
        "/api/auth/login", json={"email": "no@x.io", "password": "password1"}
    )
    assert unknown.status_code == 401
    auth = {"Authorization": f"Bearer {first.json()['token']}"}
    ids = [
        (await client.post("/api/sessions", json={"title": f"s{i}"}, headers=auth)).json()["id"]
        for i in range(3)
    ]
    seen: list[str] = []
    params: dict[str, str | int] = {"limit": 2}
    while True:
        page = (await client.get("/api/sessions", params=params, headers=auth)).json()
        seen += [s["id"] for s in page["items"]]
        if page["next_cursor"] is None:
            break
        params = {"limit": 2, "cursor": page["next_cursor"]}
    assert sorted(seen) == sorted(ids) and len(seen) == 3
