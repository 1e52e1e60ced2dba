"""Folders as functions: list (query), create, rename and delete (mutations)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select, update

from backends.common import idempotency, ids, render
from backends.common import validate as v
from backends.common.clock import now_ms
from backends.common.errors import NotFound
from backends.new.functions.common import CALLER, KEY, OPTIONAL_KEY
from backends.new.runtime.context import MutationCtx, QueryCtx
from backends.new.runtime.http import Reply
from backends.new.runtime.registry import mutation, query
from backends.new.runtime.schema import folders, sessions


def folder_json(row: Any) -> dict[str, Any]:
    return render.folder(row["id"], row["name"], row["created_ms"], row["updated_ms"])


async def owned_folder(ctx: QueryCtx, user_id: str, folder_id: str) -> dict[str, Any]:
    row = None
    if ids.is_uuid(folder_id):
        row = (await ctx.read(select(folders).where(folders.c.id == folder_id))).mappings().first()
    if row is None or row["user_id"] != user_id:
        raise NotFound("folder not found")
    return dict(row)


@query("folders.list", {**CALLER}, cache=True)
async def list_folders(ctx: QueryCtx, args: dict[str, Any]) -> dict[str, Any]:
    user_id = args["caller"]["id"]
    rows = await ctx.read(
        select(folders)
        .where(folders.c.user_id == user_id)
        .order_by(folders.c.created_ms, folders.c.id)
    )
    return {"items": [folder_json(r) for r in rows.mappings()]}


@mutation("folders.create", {"name": v.string(), **CALLER, **KEY}, optional=OPTIONAL_KEY)
async def create_folder(ctx: MutationCtx, args: dict[str, Any]) -> Reply:
    user_id, key = args["caller"]["id"], args.get("idempotency_key")
    fields = {"name": args["name"]}
    folder_id = ids.new_id("folder", user_id, key)
    if key is not None:
        existing = (
            (await ctx.read(select(folders).where(folders.c.id == folder_id))).mappings().first()
        )
        if existing is not None and existing["user_id"] == user_id:
            idempotency.check_replay(existing["idem_hash"], fields)
            return Reply(folder_json(existing), 201, dict(idempotency.REPLAYED))
    now = now_ms()
    row = {
        "id": folder_id,
        "user_id": user_id,
        "name": args["name"],
        "created_ms": now,
        "updated_ms": now,
        "idem_hash": idempotency.fingerprint(fields) if key else None,
    }
    await ctx.write(folders.insert().values(**row))
    return Reply(folder_json(row), 201)


@mutation("folders.rename", {"id": v.string(), "name": v.string(), **CALLER})
async def rename_folder(ctx: MutationCtx, args: dict[str, Any]) -> dict[str, Any]:
    row = await owned_folder(ctx, args["caller"]["id"], args["id"])
    row.update(name=args["name"], updated_ms=now_ms())
    await ctx.write(
        update(folders)
        .where(folders.c.id == row["id"])
        .values(name=row["name"], updated_ms=row["updated_ms"])
    )
    return folder_json(row)


@mutation("folders.delete", {"id": v.string(), **CALLER})
async def delete_folder(ctx: MutationCtx, args: dict[str, Any]) -> Reply:
    user_id = args["caller"]["id"]
    row = await owned_folder(ctx, user_id, args["id"])
    await ctx.write(
        update(sessions)
        .where(sessions.c.user_id == user_id, sessions.c.folder_id == row["id"])
        .values(folder_id=None)
    )
    await ctx.write(folders.delete().where(folders.c.id == row["id"]))
    return Reply(status=204)
