"""Folders: list, create, rename, delete (a deleted folder's sessions move to no folder)."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from backends.common import idempotency, ids, render, rules
from backends.common.clock import now_ms
from backends.common.errors import NotFound
from backends.common.validate import read_json
from backends.legacy.auth import authenticate
from backends.legacy.db import Folder, StudySession
from backends.legacy.state import changed as _changed
from backends.legacy.state import state


def folder_json(folder: Folder) -> dict[str, Any]:
    return render.folder(folder.id, folder.name, folder.created_ms, folder.updated_ms)


async def query_folders(db: AsyncSession, user_id: str) -> dict[str, Any]:
    query = select(Folder).where(Folder.user_id == user_id).order_by(Folder.created_ms, Folder.id)
    rows = (await db.execute(query)).scalars()
    return {"items": [folder_json(f) for f in rows]}


async def list_folders(request: web.Request) -> web.Response:
    user, _ = await authenticate(request)
    async with state(request).db.session() as db:
        return web.json_response(await query_folders(db, user.id))


async def create_folder(request: web.Request) -> web.Response:
    user, _ = await authenticate(request)
    key = idempotency.key_from(request.headers)
    fields = rules.FOLDER(await read_json(request))
    folder_id = ids.new_id("folder", user.id, key)
    async with state(request).db.session() as db:
        if key is not None:
            existing = await db.get(Folder, folder_id)
            if existing is not None and existing.user_id == user.id:
                idempotency.check_replay(existing.idem_hash, fields)
                return web.json_response(
                    folder_json(existing), status=201, headers=idempotency.REPLAYED
                )
        now = now_ms()
        folder = Folder(
            id=folder_id,
            user_id=user.id,
            name=fields["name"],
            created_ms=now,
            updated_ms=now,
            idem_hash=idempotency.fingerprint(fields) if key else None,
        )
        db.add(folder)
        await db.commit()
    _changed(request, user.id, "folders")
    return web.json_response(folder_json(folder), status=201)


async def _owned(db: AsyncSession, user_id: str, folder_id: str) -> Folder:
    folder = await db.get(Folder, folder_id) if ids.is_uuid(folder_id) else None
    if folder is None or folder.user_id != user_id:
        raise NotFound("folder not found")
    return folder


async def rename_folder(request: web.Request) -> web.Response:
    user, _ = await authenticate(request)
    fields = rules.FOLDER(await read_json(request))
    async with state(request).db.session() as db:
        folder = await _owned(db, user.id, request.match_info["id"])
        folder.name = fields["name"]
        folder.updated_ms = now_ms()
        await db.commit()
    _changed(request, user.id, "folders")
    return web.json_response(folder_json(folder))


async def delete_folder(request: web.Request) -> web.Response:
    user, _ = await authenticate(request)
    async with state(request).db.session() as db:
        folder = await _owned(db, user.id, request.match_info["id"])
        await db.execute(
            update(StudySession)
            .where(StudySession.user_id == user.id, StudySession.folder_id == folder.id)
            .values(folder_id=None)
        )
        await db.delete(folder)
        await db.commit()
    _changed(request, user.id, "folders", "sessions")
    return web.Response(status=204)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/folders", list_folders)
    app.router.add_post("/api/folders", create_folder)
    app.router.add_patch("/api/folders/{id}", rename_folder)
    app.router.add_delete("/api/folders/{id}", delete_folder)
