"""Tests of sessions, contexts and folder edits over HTTP, on SQLite and on PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from banyan.backends.new.app import create_app
from banyan.pg import postgres_available, temp_database
from banyan.serving import serve


@pytest.fixture(params=["sqlite", "postgres"])
async def http(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    if request.param == "sqlite":
        app = create_app(f"sqlite+aiosqlite:///{tmp_path / 's.db'}")
        async with serve(app) as url, httpx.AsyncClient(base_url=url) as client:
            yield client
        return
    if not await postgres_available():
        pytest.skip("PostgreSQL not reachable at 127.0.0.1:5432")
    async with temp_database("banyan_new") as db_url:
        async with serve(create_app(db_url)) as url, httpx.AsyncClient(base_url=url) as client:
            yield client


async def _auth(http: httpx.AsyncClient) -> dict[str, str]:
    response = await http.post(
        "/api/auth/register", json={"email": "s@x.io", "password": "password1", "name": "S"}
    )
    return {"Authorization": f"Bearer {response.json()['token']}"}


async def test_sessions_list_filter_patch_delete(http: httpx.AsyncClient) -> None:
    auth = await _auth(http)
    folder = (await http.post("/api/folders", json={"name": "f"}, headers=auth)).json()
    renamed = await http.patch(f"/api/folders/{folder['id']}", json={"name": "g"}, headers=auth)
    assert renamed.json()["name"] == "g"
    ids = []
    for i in range(3):
        body = {"title": f"t{i}", "folder_id": folder["id"] if i == 0 else None}
        ids.append((await http.post("/api/sessions", json=body, headers=auth)).json()["id"])
    page = (await http.get("/api/sessions", params={"limit": 2}, headers=auth)).json()
    assert [s["title"] for s in page["items"]] == ["t2", "t1"]
    rest = await http.get(
        "/api/sessions", params={"limit": 2, "cursor": page["next_cursor"]}, headers=auth
    )
    assert [s["title"] for s in rest.json()["items"]] == ["t0"]
    inside = await http.get("/api/sessions", params={"folder_id": folder["id"]}, headers=auth)
    assert [s["id"] for s in inside.json()["items"]] == [ids[0]]
    loose = await http.get("/api/sessions", params={"folder_id": "none"}, headers=auth)
    assert len(loose.json()["items"]) == 2
    missing = "00000000-0000-4000-8000-000000000000"
    unknown = await http.get("/api/sessions", params={"folder_id": missing}, headers=auth)
    assert unknown.status_code == 404
    empty = await http.patch(f"/api/sessions/{ids[1]}", json={}, headers=auth)
    assert empty.status_code == 400
    patched = await http.patch(
        f"/api/sessions/{ids[1]}", json={"title": "new", "folder_id": folder["id"]}, headers=auth
    )
    assert patched.json()["title"] == "new" and patched.json()["folder_id"] == folder["id"]
    assert (await http.delete(f"/api/sessions/{ids[1]}", headers=auth)).status_code == 204
    assert (await http.get(f"/api/sessions/{ids[1]}", headers=auth)).status_code == 404
    assert (await http.delete(f"/api/folders/{missing}", headers=auth)).status_code == 404


async def test_context_put_get_and_limits(http: httpx.AsyncClient) -> None:
    auth = await _auth(http)
    sid = (await http.post("/api/sessions", json={"title": "c"}, headers=auth)).json()["id"]
    before = (await http.get(f"/api/sessions/{sid}/context", headers=auth)).json()
    assert before == {"session_id": sid, "context": {}, "updated_at": None}
    for value in (1, 2):
        put = await http.put(
            f"/api/sessions/{sid}/context", json={"context": {"k": value}}, headers=auth
        )
        assert put.status_code == 200
    after = (await http.get(f"/api/sessions/{sid}/context", headers=auth)).json()
    assert after["context"] == {"k": 2} and after["updated_at"] is not None
    big = await http.put(
        f"/api/sessions/{sid}/context", json={"context": {"k": "x" * 70000}}, headers=auth
    )
    assert big.status_code == 413
    bad = await http.put(f"/api/sessions/{sid}/context", json={"context": [1]}, headers=auth)
    assert bad.status_code == 400
