"""Study sessions, contexts and messages as functions.

Expired sessions are gone for every function at once (they read ``expires_ms``); the ``gc`` cron
deletes them. ``messages.append`` bumps the session's counter with one ``UPDATE ... RETURNING`` so
concurrent appends get distinct ``seq`` numbers. Statements are built once with bound parameters;
a write that must find the caller's live session first folds that check into the write
(``UPDATE ... WHERE id, owner, not expired RETURNING``).
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import delete, select

from banyan.backends.common import idempotency, ids, render
from banyan.backends.common import validate as v
from banyan.backends.common.clock import now_ms
from banyan.backends.common.errors import NotFound, ValidationError
from banyan.backends.common.pagination import encode_cursor, newest_first_after, page_from_query
from banyan.backends.common.statements import session_statements
from banyan.backends.new.functions.common import CALLER, KEY, OPTIONAL_KEY, anything
from banyan.backends.new.functions.folders import owned_folder
from banyan.backends.new.runtime.context import MutationCtx, QueryCtx
from banyan.backends.new.runtime.http import Reply
from banyan.backends.new.runtime.registry import mutation, query
from banyan.backends.new.runtime.schema import contexts, messages, sessions

S, M, C = sessions, messages, contexts
SQL = session_statements(S, M, C)


def ttl_ms(ctx: QueryCtx) -> int:
    """The session lifetime of this app (``BANYAN_SESSION_TTL`` or ``create_app(session_ttl=)``)."""
    return int(ctx.runtime.settings["session_ttl_ms"])


def session_json(row: Any) -> dict[str, Any]:
    return render.session(
        row["id"],
        row["title"],
        row["folder_id"],
        row["created_ms"],
        row["updated_ms"],
        row["expires_ms"],
        row["message_count"],
    )


def message_json(row: Any) -> dict[str, Any]:
    return render.message(
        row["id"], row["session_id"], row["seq"], row["role"], row["content"], row["created_ms"]
    )


async def owned_session(ctx: QueryCtx, user_id: str, session_id: str) -> dict[str, Any]:
    row = None
    if ids.is_uuid(session_id):
        row = (await ctx.read(SQL.session_by_id, {"id": session_id})).mappings().first()
    if row is None or row["user_id"] != user_id or row["expires_ms"] <= now_ms():
        raise NotFound("session not found")
    return dict(row)


@query("sessions.list", {"query": anything(), **CALLER})
async def list_sessions(ctx: QueryCtx, args: dict[str, Any]) -> dict[str, Any]:
    user_id, params = args["caller"]["id"], args["query"]
    page = page_from_query(params)
    stmt = select(sessions).where(sessions.c.user_id == user_id, sessions.c.expires_ms > now_ms())
    folder = params.get("folder_id")
    if folder == "none":
        stmt = stmt.where(sessions.c.folder_id.is_(None))
    elif folder is not None:
        await owned_folder(ctx, user_id, folder)
        stmt = stmt.where(sessions.c.folder_id == folder)
    if page.after is not None:
        stmt = stmt.where(newest_first_after(sessions, page.after, user_id))
    rows = list(
        (
            await ctx.read(
                stmt.order_by(sessions.c.created_ms.desc(), sessions.c.id.desc()).limit(
                    page.limit + 1
                )
            )
        ).mappings()
    )
    more, rows = len(rows) > page.limit, rows[: page.limit]
    cursor = encode_cursor(rows[-1]["created_ms"], rows[-1]["id"]) if more and rows else None
    return {"items": [session_json(r) for r in rows], "next_cursor": cursor}


@mutation(
    "sessions.create",
    {"title": v.string(), "folder_id": v.nullable(v.string()), **CALLER, **KEY},
    optional={"folder_id", *OPTIONAL_KEY},
)
async def create_session(ctx: MutationCtx, args: dict[str, Any]) -> Reply:
    user_id, key = args["caller"]["id"], args.get("idempotency_key")
    fields = {"title": args["title"], "folder_id": args.get("folder_id")}
    session_id = ids.new_id("session", user_id, key)
    if key is not None:
        existing = (await ctx.read(SQL.session_by_id, {"id": session_id})).mappings().first()
        if existing is not None and existing["user_id"] == user_id:
            idempotency.check_replay(existing["idem_hash"], fields)
            return Reply(session_json(existing), 201, dict(idempotency.REPLAYED))
    if fields["folder_id"] is not None:
        await owned_folder(ctx, user_id, fields["folder_id"])
    now = now_ms()
    row = {
        "id": session_id,
        "user_id": user_id,
        "folder_id": fields["folder_id"],
        "title": fields["title"],
        "created_ms": now,
        "updated_ms": now,
        "expires_ms": now + ttl_ms(ctx),
        "message_count": 0,
        "idem_hash": idempotency.fingerprint(fields) if key else None,
    }
    await ctx.write(S.insert(), row)
    return Reply(session_json(row), 201)


@query("sessions.get", {"id": v.string(), **CALLER})
async def get_session(ctx: QueryCtx, args: dict[str, Any]) -> dict[str, Any]:
    return session_json(await owned_session(ctx, args["caller"]["id"], args["id"]))


@mutation(
    "sessions.update",
    {"id": v.string(), "title": v.string(), "folder_id": v.nullable(v.string()), **CALLER},
    optional={"title", "folder_id"},
)
async def update_session(ctx: MutationCtx, args: dict[str, Any]) -> dict[str, Any]:
    user_id = args["caller"]["id"]
    changes: dict[str, Any] = {k: args[k] for k in ("title", "folder_id") if k in args}
    if not changes:
        raise ValidationError("body: must contain at least one field")
    if not ids.is_uuid(args["id"]):
        raise NotFound("session not found")
    if changes.get("folder_id") is not None:  # a missing session is reported before a folder
        await owned_session(ctx, user_id, args["id"])
        await owned_folder(ctx, user_id, changes["folder_id"])
    now = now_ms()
    changes.update(updated_ms=now, expires_ms=now + ttl_ms(ctx))
    params = {"sid": args["id"], "uid": user_id, "now": now, **changes}
    row = (await ctx.write(SQL.update_owned, params)).mappings().first()
    if row is None:
        raise NotFound("session not found")
    return session_json(row)


async def delete_session_rows(ctx: MutationCtx, session_ids: list[str]) -> None:
    if session_ids:
        await ctx.write(delete(M).where(M.c.session_id.in_(session_ids)))
        await ctx.write(delete(C).where(C.c.session_id.in_(session_ids)))
        await ctx.write(delete(S).where(S.c.id.in_(session_ids)))


@mutation("sessions.delete", {"id": v.string(), **CALLER})
async def delete_session(ctx: MutationCtx, args: dict[str, Any]) -> Reply:
    params = {"sid": args["id"], "uid": args["caller"]["id"], "now": now_ms()}
    if not ids.is_uuid(args["id"]) or (await ctx.write(SQL.delete_owned, params)).first() is None:
        raise NotFound("session not found")
    await ctx.write(SQL.delete_messages, {"sid": args["id"]})
    await ctx.write(SQL.delete_context, {"sid": args["id"]})
    return Reply(status=204)


@query("contexts.get", {"id": v.string(), **CALLER})
async def get_context(ctx: QueryCtx, args: dict[str, Any]) -> dict[str, Any]:
    row = await owned_session(ctx, args["caller"]["id"], args["id"])
    stored = (await ctx.read(SQL.context_by_id, {"id": row["id"]})).mappings().first()
    if stored is None:
        return render.context(row["id"], {}, None)
    return render.context(row["id"], json.loads(stored["context"]), stored["updated_ms"])


@mutation("contexts.put", {"id": v.string(), "context": v.json_object(), **CALLER})
async def put_context(ctx: MutationCtx, args: dict[str, Any]) -> dict[str, Any]:
    session_id, now = args["id"], now_ms()
    text = json.dumps(args["context"], separators=(",", ":"))
    touched = {"updated_ms": now, "expires_ms": now + ttl_ms(ctx)}
    params = {"sid": session_id, "uid": args["caller"]["id"], "now": now, **touched}
    if not ids.is_uuid(session_id) or (await ctx.write(SQL.update_owned, params)).first() is None:
        raise NotFound("session not found")
    stored = await ctx.write(SQL.update_context, {"sid": session_id, "text": text, "now": now})
    if stored.rowcount == 0:
        await ctx.write(C.insert(), {"session_id": session_id, "context": text, "updated_ms": now})
    return render.context(session_id, args["context"], now)


@query("messages.list", {"id": v.string(), "query": anything(), **CALLER})
async def list_messages(ctx: QueryCtx, args: dict[str, Any]) -> dict[str, Any]:
    row = await owned_session(ctx, args["caller"]["id"], args["id"])
    page = page_from_query(args["query"])
    stmt = select(messages).where(messages.c.session_id == row["id"])
    if page.after is not None:
        stmt = stmt.where(messages.c.seq > page.after.created_ms)
    rows = list((await ctx.read(stmt.order_by(messages.c.seq).limit(page.limit + 1))).mappings())
    more, rows = len(rows) > page.limit, rows[: page.limit]
    cursor = encode_cursor(rows[-1]["seq"], rows[-1]["id"]) if more and rows else None
    return {"items": [message_json(r) for r in rows], "next_cursor": cursor}


async def _bump(
    ctx: MutationCtx, session_id: str, count: int, now: int, owner: str | None = None
) -> int | None:
    """Add ``count`` to the session's message counter; the new counter, or None if there is no
    such session (the caller's live one, when ``owner`` is given)."""
    params: dict[str, Any] = {
        "sid": session_id,
        "n": count,
        "now": now,
        "expires": now + ttl_ms(ctx),
    }
    if owner is not None:
        params["uid"] = owner
    last: int | None = (
        await ctx.write(SQL.bump if owner is None else SQL.bump_owned, params)
    ).scalar()
    return last


Entry = tuple[str | None, str, str, str | None]  # (id, role, content, fingerprint)


def _message_rows(
    session_id: str, user_id: str, last: int, now: int, entries: list[Entry]
) -> list[dict[str, Any]]:
    first = last - len(entries) + 1
    rows: list[dict[str, Any]] = []
    for offset, (message_id, role, content, fp) in enumerate(entries):
        seq = first + offset
        if message_id is None:
            message_id, fp = idempotency.turn_message(user_id, session_id, seq, role, content)
        rows.append(
            {
                "id": message_id,
                "session_id": session_id,
                "user_id": user_id,
                "seq": seq,
                "role": role,
                "content": content,
                "created_ms": now,
                "idem_hash": fp,
            }
        )
    return rows


async def append(
    ctx: MutationCtx, session: dict[str, Any], entries: list[Entry]
) -> list[dict[str, Any]]:
    """Append ``(id, role, content, fingerprint)`` messages in the mutation's transaction; an
    entry without an id is a tutor turn's (:func:`idempotency.turn_message`)."""
    now = now_ms()
    last = await _bump(ctx, session["id"], len(entries), now)
    if last is None:  # deleted since it was found
        raise NotFound("session not found")
    rows = _message_rows(session["id"], session["user_id"], last, now, entries)
    for row in rows:
        await ctx.write(M.insert(), row)
    return rows


@mutation(
    "messages.append",
    {"id": v.string(), "role": v.string(), "content": v.string(), **CALLER, **KEY},
    optional=OPTIONAL_KEY,
)
async def append_message(ctx: MutationCtx, args: dict[str, Any]) -> Reply:
    user_id, key = args["caller"]["id"], args.get("idempotency_key")
    fields = {"role": args["role"], "content": args["content"]}
    session_id = args["id"]
    message_id = ids.new_id("message", user_id, key)
    if key is not None:
        await owned_session(ctx, user_id, session_id)
        existing = (await ctx.read(SQL.message_by_id, {"id": message_id})).mappings().first()
        if existing is not None and existing["user_id"] == user_id:
            idempotency.check_replay(existing["idem_hash"], fields)
            return Reply(message_json(existing), 201, dict(idempotency.REPLAYED))
    now = now_ms()
    last = await _bump(ctx, session_id, 1, now, owner=user_id) if ids.is_uuid(session_id) else None
    if last is None:
        raise NotFound("session not found")
    fp = idempotency.fingerprint(fields) if key else None
    entry = (message_id, fields["role"], fields["content"], fp)
    (row,) = _message_rows(session_id, user_id, last, now, [entry])
    await ctx.write(M.insert(), row)
    return Reply(message_json(row), 201)
