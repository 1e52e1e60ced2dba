"""Contract: sessions, their context and messages — paging, validation, idempotency, isolation."""

from __future__ import annotations

import base64
import uuid
from typing import Any

import pytest

from banyan.backends.common.ids import derived_id
from banyan.backends.contract.client import User, assert_error
from banyan.backends.contract.test_auth import parse_iso

pytestmark = pytest.mark.asyncio(loop_scope="session")

SESSION_FIELDS = {
    "id",
    "title",
    "folder_id",
    "created_at",
    "updated_at",
    "expires_at",
    "message_count",
}
MESSAGE_FIELDS = {"id", "session_id", "seq", "role", "content", "created_at"}


async def new_session(user: User, title: str = "t", **extra: Any) -> dict[str, Any]:
    response = await user.client.post("/api/sessions", json={"title": title, **extra})
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def walk(user: User, path: str, limit: int, **params: str) -> list[dict[str, Any]]:
    """Follow next_cursor to the end; every page but the last is full."""
    items: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        query = {"limit": str(limit), **params}
        if cursor:
            query["cursor"] = cursor
        response = await user.client.get(path, params=query)
        assert response.status_code == 200, response.text
        page = response.json()
        assert set(page) == {"items", "next_cursor"}
        items.extend(page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            return items
        assert len(page["items"]) == limit
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        number, _, last_id = raw.partition(":")  # "<n>:<id>" of the page's last item
        last = page["items"][-1]
        assert last_id == last["id"]
        if "seq" in last:
            assert int(number) == last["seq"]
        else:
            assert int(number) == round(parse_iso(last["created_at"]).timestamp() * 1000)


async def test_session_lifecycle(user: User) -> None:
    session = await new_session(user, "  Algebra  ")
    assert set(session) == SESSION_FIELDS
    assert session["title"] == "Algebra"
    assert session["folder_id"] is None
    assert session["message_count"] == 0
    assert parse_iso(session["expires_at"]) > parse_iso(session["created_at"])
    got = await user.client.get(f"/api/sessions/{session['id']}")
    assert got.status_code == 200
    assert got.json() == session
    folder = (await user.client.post("/api/folders", json={"name": "f"})).json()
    patched = await user.client.patch(
        f"/api/sessions/{session['id']}", json={"title": "Geometry", "folder_id": folder["id"]}
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["title"] == "Geometry"
    assert patched.json()["folder_id"] == folder["id"]
    assert patched.json()["expires_at"] >= session["expires_at"]
    unfiled = await user.client.patch(f"/api/sessions/{session['id']}", json={"folder_id": None})
    assert unfiled.json()["folder_id"] is None
    assert unfiled.json()["title"] == "Geometry"
    assert (await user.client.delete(f"/api/sessions/{session['id']}")).status_code == 204
    for path in ("", "/context", "/messages"):
        gone = await user.client.get(f"/api/sessions/{session['id']}{path}")
        assert_error(gone, 404, "not_found")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("x", "body: must be a JSON object"),
        ({"title": "t", "tags": []}, "tags: is not a known field"),
        ({}, "title: is required"),
        ({"title": None}, "title: must be a string"),
        ({"title": ""}, "title: must not be empty"),
        ({"title": "t" * 201}, "title: must be at most 200 characters"),
        ({"title": "t", "folder_id": 5}, "folder_id: must be a string"),
    ],
)
async def test_create_validation(user: User, body: object, message: str) -> None:
    response = await user.client.post("/api/sessions", json=body)
    assert_error(response, 400, "validation_error", message)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, "body: must contain at least one field"),
        ({"title": "t", "x": 1}, "x: is not a known field"),
        ({"title": 3}, "title: must be a string"),
        ({"title": " "}, "title: must not be empty"),
        ({"folder_id": []}, "folder_id: must be a string"),
    ],
)
async def test_patch_validation(user: User, body: object, message: str) -> None:
    session = await new_session(user)
    response = await user.client.patch(f"/api/sessions/{session['id']}", json=body)
    assert_error(response, 400, "validation_error", message)


async def test_unknown_or_foreign_folder_is_404(user: User, other: User) -> None:
    theirs = (await other.client.post("/api/folders", json={"name": "theirs"})).json()
    for folder_id in (theirs["id"], str(uuid.uuid4()), "not-a-uuid"):
        created = await user.client.post(
            "/api/sessions", json={"title": "t", "folder_id": folder_id}
        )
        assert_error(created, 404, "not_found")
        listed = await user.client.get("/api/sessions", params={"folder_id": folder_id})
        assert_error(listed, 404, "not_found")
    session = await new_session(user)
    moved = await user.client.patch(
        f"/api/sessions/{session['id']}", json={"folder_id": theirs["id"]}
    )
    assert_error(moved, 404, "not_found")


async def test_sessions_are_private(user: User, other: User) -> None:
    session = await new_session(user)
    base = f"/api/sessions/{session['id']}"
    assert_error(await other.client.get(base), 404, "not_found")
    assert_error(await other.client.patch(base, json={"title": "x"}), 404, "not_found")
    assert_error(await other.client.delete(base), 404, "not_found")
    assert_error(await other.client.get(f"{base}/context"), 404, "not_found")
    assert_error(await other.client.put(f"{base}/context", json={"context": {}}), 404, "not_found")
    assert_error(await other.client.get(f"{base}/messages"), 404, "not_found")
    posted = await other.client.post(f"{base}/messages", json={"role": "user", "content": "hi"})
    assert_error(posted, 404, "not_found")
    assert (await other.client.get("/api/sessions")).json() == {"items": [], "next_cursor": None}
    assert_error(await user.client.get("/api/sessions/not-a-uuid"), 404, "not_found")
    assert_error(await user.client.get(f"/api/sessions/{uuid.uuid4()}"), 404, "not_found")


async def test_list_pages_newest_first(user: User) -> None:
    created = [await new_session(user, f"s{i}") for i in range(7)]
    items = await walk(user, "/api/sessions", 3)
    assert [s["id"] for s in items] == [s["id"] for s in reversed(created)]
    default = (await user.client.get("/api/sessions")).json()
    assert len(default["items"]) == 7 and default["next_cursor"] is None


async def test_list_filters_by_folder(user: User) -> None:
    folder = (await user.client.post("/api/folders", json={"name": "f"})).json()
    inside = [await new_session(user, "in", folder_id=folder["id"]) for _ in range(3)]
    outside = await new_session(user, "out")
    filed = await walk(user, "/api/sessions", 2, folder_id=folder["id"])
    assert [s["id"] for s in filed] == [s["id"] for s in reversed(inside)]
    unfiled = await walk(user, "/api/sessions", 2, folder_id="none")
    assert [s["id"] for s in unfiled] == [outside["id"]]


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"limit": "0"}, "limit: must be between 1 and 200"),
        ({"limit": "201"}, "limit: must be between 1 and 200"),
        ({"limit": "ten"}, "limit: must be between 1 and 200"),
        ({"cursor": "!!!"}, "cursor: is invalid"),
        ({"cursor": "bm9jb2xvbg"}, "cursor: is invalid"),  # "nocolon"
    ],
)
async def test_list_query_validation(user: User, params: dict[str, str], message: str) -> None:
    response = await user.client.get("/api/sessions", params=params)
    assert_error(response, 400, "validation_error", message)
    session = await new_session(user)
    response = await user.client.get(f"/api/sessions/{session['id']}/messages", params=params)
    assert_error(response, 400, "validation_error", message)


async def test_session_idempotency(user: User) -> None:
    key = {"Idempotency-Key": "sess-1"}
    first = await user.client.post("/api/sessions", json={"title": "Idem"}, headers=key)
    assert first.status_code == 201
    assert first.json()["id"] == derived_id("session", user.id, "sess-1")
    again = await user.client.post("/api/sessions", json={"title": "Idem"}, headers=key)
    assert again.status_code == 201
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert again.json()["id"] == first.json()["id"]
    conflict = await user.client.post("/api/sessions", json={"title": "Else"}, headers=key)
    assert_error(conflict, 409, "idempotency_conflict")


async def test_context_put_get_and_limits(user: User) -> None:
    session = await new_session(user)
    path = f"/api/sessions/{session['id']}/context"
    before = await user.client.get(path)
    assert before.status_code == 200
    assert before.json() == {"session_id": session["id"], "context": {}, "updated_at": None}
    context = {"goal": "fractions", "level": 3, "notes": ["a", "b"], "nested": {"x": None}}
    put = await user.client.put(path, json={"context": context})
    assert put.status_code == 200, put.text
    assert put.json()["context"] == context
    assert put.json()["session_id"] == session["id"]
    parse_iso(put.json()["updated_at"])
    assert (await user.client.get(path)).json() == put.json()
    refreshed = (await user.client.get(f"/api/sessions/{session['id']}")).json()
    assert refreshed["expires_at"] >= session["expires_at"]
    too_big = {"blob": "x" * 65536}
    assert_error(await user.client.put(path, json={"context": too_big}), 413, "payload_too_large")
    assert (await user.client.get(path)).json()["context"] == context
    for body, message in (
        ({}, "context: is required"),
        ({"context": [1]}, "context: must be an object"),
        ({"context": {}, "more": 1}, "more: is not a known field"),
    ):
        assert_error(await user.client.put(path, json=body), 400, "validation_error", message)
    assert_error(await user.client.put(path, content=b"[1,"), 400, "invalid_json")


async def test_context_just_under_the_limit_fits(user: User) -> None:
    session = await new_session(user)
    filler = "y" * (65536 - len('{"k":""}'))
    put = await user.client.put(
        f"/api/sessions/{session['id']}/context", json={"context": {"k": filler}}
    )
    assert put.status_code == 200, put.text[:200]


async def test_messages_append_and_page_by_seq(user: User) -> None:
    session = await new_session(user)
    path = f"/api/sessions/{session['id']}/messages"
    sent = []
    for i in range(5):
        role = ("user", "assistant", "system")[i % 3]
        response = await user.client.post(path, json={"role": role, "content": f"m{i}"})
        assert response.status_code == 201, response.text
        body = response.json()
        assert set(body) == MESSAGE_FIELDS
        assert body["seq"] == i + 1
        assert body["session_id"] == session["id"]
        sent.append(body)
    items = await walk(user, path, 2)
    assert [m["id"] for m in items] == [m["id"] for m in sent]
    assert [m["seq"] for m in items] == [1, 2, 3, 4, 5]
    refreshed = (await user.client.get(f"/api/sessions/{session['id']}")).json()
    assert refreshed["message_count"] == 5
    assert refreshed["updated_at"] >= session["updated_at"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"role": "user", "content": "c", "meta": {}}, "meta: is not a known field"),
        ({"content": "c"}, "role: is required"),
        ({"role": "robot", "content": "c"}, "role: must be one of user, assistant, system"),
        ({"role": "user"}, "content: is required"),
        ({"role": "user", "content": 1}, "content: must be a string"),
        ({"role": "user", "content": "  "}, "content: must not be empty"),
        ({"role": "user", "content": "c" * 20001}, "content: must be at most 20000 characters"),
    ],
)
async def test_message_validation(user: User, body: object, message: str) -> None:
    session = await new_session(user)
    response = await user.client.post(f"/api/sessions/{session['id']}/messages", json=body)
    assert_error(response, 400, "validation_error", message)


async def test_message_idempotency(user: User) -> None:
    session = await new_session(user)
    path = f"/api/sessions/{session['id']}/messages"
    key = {"Idempotency-Key": "msg-1"}
    body = {"role": "user", "content": "once"}
    first = await user.client.post(path, json=body, headers=key)
    assert first.status_code == 201
    assert first.json()["id"] == derived_id("message", user.id, "msg-1")
    again = await user.client.post(path, json=body, headers=key)
    assert again.status_code == 201
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert again.json() == first.json()
    conflict = await user.client.post(path, json={**body, "content": "twice"}, headers=key)
    assert_error(conflict, 409, "idempotency_conflict")
    listed = (await user.client.get(path)).json()["items"]
    assert len(listed) == 1


async def test_deleting_a_session_removes_its_messages(user: User) -> None:
    session = await new_session(user)
    path = f"/api/sessions/{session['id']}/messages"
    await user.client.post(path, json={"role": "user", "content": "bye"})
    assert (await user.client.delete(f"/api/sessions/{session['id']}")).status_code == 204
    assert_error(await user.client.get(path), 404, "not_found")
    assert_error(await user.client.delete(f"/api/sessions/{session['id']}"), 404, "not_found")
