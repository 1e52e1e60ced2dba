"""Folders: list, create, rename, delete (a deleted folder's sessions move to no folder).

Prepared Core statements over the models' tables; rename and delete fold the ownership check into
their write (``... WHERE id, owner RETURNING``). Writes go through the store's writer gate.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from banyan.backends.common import idempotency, ids, render, rules
from banyan.backends.common.clock import now_ms
from banyan.backends.common.errors import NotFound
from banyan.backends.common.statements import folder_statements
from banyan.backends.common.validate import read_json
from banyan.backends.legacy.auth import authenticate
from banyan.backends.legacy.db import FOLDERS, SESSIONS
from banyan.backends.legacy.state import changed as _changed
from banyan.backends.legacy.state import state

F = FOLDERS
SQL = folder_statements(FOLDERS, SESSIONS)


def folder_json(folder: Any) -> dict[str, Any]:
    return render.folder(folder.id, folder.name, folder.created_ms, folder.updated_ms)


async def query_folders(db: AsyncSession | AsyncConnection, user_id: str) -> dict[str, Any]:
    rows = await db.execute(SQL.folders_of, {"uid": user_id})
    return {"items": [folder_json(f) for f in rows]}


async def list_folders(request: web.Request) -> web.Response:
    user, _ = await authenticate(request)
    async with state(request).db.engine.connect() as conn:
        return web.json_response(await query_folders(conn, user.id))


async def create_folder(request: web.Request) -> web.Response:
    user, _ = await authenticate(request)
    key = idempotency.key_from(request.headers)
    fields = rules.FOLDER(await read_json(request))
    folder_id = ids.new_id("folder", user.id, key)
    db = state(request).db
    async with db.write_gate(), db.engine.begin() as conn:
        if key is not None:
            existing = (await conn.execute(SQL.folder_by_id, {"id": folder_id})).first()
            if existing is not None and existing.user_id == user.id:
                idempotency.check_replay(existing.idem_hash, fields)
                return web.json_response(
                    folder_json(existing), status=201, headers=idempotency.REPLAYED
                )
        now = now_ms()
        row = {
            "id": folder_id,
            "user_id": user.id,
            "name": fields["name"],
            "created_ms": now,
            "updated_ms": now,
            "idem_hash": idempotency.fingerprint(fields) if key else None,
        }
        await conn.execute(insert(F), row)
    _changed(request, user.id, "folders")
    return web.json_response(render.folder(folder_id, fields["name"], now, now), status=201)


def _folder_id(request: web.Request) -> str:
    folder_id = request.match_info["id"]
    if not ids.is_uuid(folder_id):
        raise NotFound("folder not found")
    return folder_id


async def rename_folder(request: web.Request) -> web.Response:
    user, _ = await authenticate(request)
    fields = rules.FOLDER(await read_json(request))
    params = {"fid": _folder_id(request), "uid": user.id, "new_name": fields["name"]}
    db = state(request).db
    async with db.write_gate(), db.engine.begin() as conn:
        folder = (await conn.execute(SQL.rename_owned, {**params, "now": now_ms()})).first()
    if folder is None:
        raise NotFound("folder not found")
    _changed(request, user.id, "folders")
    return web.json_response(folder_json(folder))


async def delete_folder(request: web.Request) -> web.Response:
    user, _ = await authenticate(request)
    params = {"fid": _folder_id(request), "uid": user.id}
    db = state(request).db
    async with db.write_gate(), db.engine.begin() as conn:
        if (await conn.execute(SQL.delete_owned, params)).first() is None:
            raise NotFound("folder not found")
        await conn.execute(SQL.unfile, params)
    _changed(request, user.id, "folders", "sessions")
    return web.Response(status=204)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/folders", list_folders)
    app.router.add_post("/api/folders", create_folder)
    app.router.add_patch("/api/folders/{id}", rename_folder)
    app.router.add_delete("/api/folders/{id}", delete_folder)
