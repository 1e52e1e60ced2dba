"""Contract: folders — order, create, rename, delete (sessions move to no folder), isolation."""

from __future__ import annotations

import uuid

import pytest

from banyan.backends.common.ids import derived_id
from banyan.backends.contract.client import User, assert_error

pytestmark = pytest.mark.asyncio(loop_scope="session")

FOLDER_FIELDS = {"id", "name", "created_at", "updated_at"}


async def test_create_list_rename_delete(user: User) -> None:
    empty = await user.client.get("/api/folders")
    assert empty.status_code == 200
    assert empty.json() == {"items": []}
    created = []
    for name in ("one", "  two  ", "three"):
        response = await user.client.post("/api/folders", json={"name": name})
        assert response.status_code == 201, response.text
        assert set(response.json()) == FOLDER_FIELDS
        created.append(response.json())
    assert created[1]["name"] == "two"
    listed = (await user.client.get("/api/folders")).json()["items"]
    assert [f["id"] for f in listed] == [f["id"] for f in created]  # oldest first
    renamed = await user.client.patch(f"/api/folders/{created[0]['id']}", json={"name": "uno"})
    assert renamed.status_code == 200
    assert renamed.json()["name"] == "uno"
    assert renamed.json()["id"] == created[0]["id"]
    assert renamed.json()["created_at"] == created[0]["created_at"]
    assert renamed.json()["updated_at"] >= created[0]["updated_at"]
    deleted = await user.client.delete(f"/api/folders/{created[1]['id']}")
    assert deleted.status_code == 204
    listed = (await user.client.get("/api/folders")).json()["items"]
    assert [f["name"] for f in listed] == ["uno", "three"]
    assert_error(await user.client.delete(f"/api/folders/{created[1]['id']}"), 404, "not_found")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ([1], "body: must be a JSON object"),
        ({"name": "a", "color": "red"}, "color: is not a known field"),
        ({}, "name: is required"),
        ({"name": 7}, "name: must be a string"),
        ({"name": " "}, "name: must not be empty"),
        ({"name": "n" * 101}, "name: must be at most 100 characters"),
    ],
)
async def test_folder_validation(user: User, body: object, message: str) -> None:
    assert_error(
        await user.client.post("/api/folders", json=body), 400, "validation_error", message
    )
    folder = (await user.client.post("/api/folders", json={"name": "v"})).json()
    patched = await user.client.patch(f"/api/folders/{folder['id']}", json=body)
    assert_error(patched, 400, "validation_error", message)


async def test_folder_bad_json(user: User) -> None:
    assert_error(await user.client.post("/api/folders", content=b"{nope"), 400, "invalid_json")


async def test_folder_ids_not_uuid_or_foreign_are_404(user: User, other: User) -> None:
    mine = (await user.client.post("/api/folders", json={"name": "mine"})).json()
    for path in ("/api/folders/not-a-uuid", f"/api/folders/{uuid.uuid4()}"):
        assert_error(await user.client.patch(path, json={"name": "x"}), 404, "not_found")
        assert_error(await user.client.delete(path), 404, "not_found")
    foreign = f"/api/folders/{mine['id']}"
    assert_error(await other.client.patch(foreign, json={"name": "x"}), 404, "not_found")
    assert_error(await other.client.delete(foreign), 404, "not_found")
    assert (await other.client.get("/api/folders")).json() == {"items": []}
    assert (await user.client.get("/api/folders")).json()["items"][0]["name"] == "mine"


async def test_folders_need_auth(user: User) -> None:
    from httpx import AsyncClient

    async with AsyncClient(base_url=str(user.client.base_url)) as anon:
        assert_error(await anon.get("/api/folders"), 401, "unauthorized")
        assert_error(await anon.post("/api/folders", json={"name": "x"}), 401, "unauthorized")


async def test_folder_idempotency(user: User) -> None:
    key = {"Idempotency-Key": "folder-key-1"}
    first = await user.client.post("/api/folders", json={"name": "Idem"}, headers=key)
    assert first.status_code == 201
    assert first.json()["id"] == derived_id("folder", user.id, "folder-key-1")
    assert first.headers.get("Idempotent-Replayed") in (None, "false")
    again = await user.client.post("/api/folders", json={"name": " Idem "}, headers=key)
    assert again.status_code == 201
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert again.json() == first.json()
    conflict = await user.client.post("/api/folders", json={"name": "Other"}, headers=key)
    assert_error(conflict, 409, "idempotency_conflict")
    assert len((await user.client.get("/api/folders")).json()["items"]) == 1
    # deleted since: the same key creates it again under the same id
    assert (await user.client.delete(f"/api/folders/{first.json()['id']}")).status_code == 204
    recreated = await user.client.post("/api/folders", json={"name": "Idem"}, headers=key)
    assert recreated.status_code == 201
    assert recreated.json()["id"] == first.json()["id"]


async def test_idempotency_key_length(user: User) -> None:
    too_long = await user.client.post(
        "/api/folders", json={"name": "k"}, headers={"Idempotency-Key": "k" * 201}
    )
    assert too_long.status_code == 400
    assert too_long.json()["error"]["code"] == "validation_error"


async def test_delete_folder_moves_sessions_to_no_folder(user: User) -> None:
    folder = (await user.client.post("/api/folders", json={"name": "f"})).json()
    session = (
        await user.client.post("/api/sessions", json={"title": "s", "folder_id": folder["id"]})
    ).json()
    assert session["folder_id"] == folder["id"]
    assert (await user.client.delete(f"/api/folders/{folder['id']}")).status_code == 204
    fetched = (await user.client.get(f"/api/sessions/{session['id']}")).json()
    assert fetched["folder_id"] is None
    unfiled = (await user.client.get("/api/sessions", params={"folder_id": "none"})).json()
    assert [s["id"] for s in unfiled["items"]] == [session["id"]]
