"""Folders as functions: list (query), create, rename and delete (mutations).

Statements are built once with bound parameters; rename and delete fold the ownership check into
their write (``... WHERE id, owner RETURNING``).
"""

from __future__ import annotations

from typing import Any

from banyan.backends.common import idempotency, ids, render
from banyan.backends.common import validate as v
from banyan.backends.common.clock import now_ms
from banyan.backends.common.errors import NotFound
from banyan.backends.common.statements import folder_statements
from banyan.backends.new.functions.common import CALLER, KEY, OPTIONAL_KEY
from banyan.backends.new.runtime.context import MutationCtx, QueryCtx
from banyan.backends.new.runtime.http import Reply
from banyan.backends.new.runtime.registry import mutation, query
from banyan.backends.new.runtime.schema import folders, sessions

F = folders
SQL = folder_statements(folders, sessions)


def folder_json(row: Any) -> dict[str, Any]:
    return render.folder(row["id"], row["name"], row["created_ms"], row["updated_ms"])


async def owned_folder(ctx: QueryCtx, user_id: str, folder_id: str) -> dict[str, Any]:
    row = None
    if ids.is_uuid(folder_id):
        row = (await ctx.read(SQL.folder_by_id, {"id": folder_id})).mappings().first()
    if row is None or row["user_id"] != user_id:
        raise NotFound("folder not found")
    return dict(row)


@query("folders.list", {**CALLER}, cache=True)
async def list_folders(ctx: QueryCtx, args: dict[str, Any]) -> dict[str, Any]:
    rows = await ctx.read(SQL.folders_of, {"uid": args["caller"]["id"]})
    return {"items": [folder_json(r) for r in rows.mappings()]}


@mutation("folders.create", {"name": v.string(), **CALLER, **KEY}, optional=OPTIONAL_KEY)
async def create_folder(ctx: MutationCtx, args: dict[str, Any]) -> Reply:
    user_id, key = args["caller"]["id"], args.get("idempotency_key")
    fields = {"name": args["name"]}
    folder_id = ids.new_id("folder", user_id, key)
    if key is not None:
        existing = (await ctx.read(SQL.folder_by_id, {"id": folder_id})).mappings().first()
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
    await ctx.write(F.insert(), row)
    return Reply(folder_json(row), 201)


@mutation("folders.rename", {"id": v.string(), "name": v.string(), **CALLER})
async def rename_folder(ctx: MutationCtx, args: dict[str, Any]) -> dict[str, Any]:
    params = {"fid": args["id"], "uid": args["caller"]["id"], "new_name": args["name"]}
    row = None
    if ids.is_uuid(args["id"]):
        row = (await ctx.write(SQL.rename_owned, {**params, "now": now_ms()})).mappings().first()
    if row is None:
        raise NotFound("folder not found")
    return folder_json(row)


@mutation("folders.delete", {"id": v.string(), **CALLER})
async def delete_folder(ctx: MutationCtx, args: dict[str, Any]) -> Reply:
    params = {"fid": args["id"], "uid": args["caller"]["id"]}
    if not ids.is_uuid(args["id"]) or (await ctx.write(SQL.delete_owned, params)).first() is None:
        raise NotFound("folder not found")
    await ctx.write(SQL.unfile, params)
    return Reply(status=204)
