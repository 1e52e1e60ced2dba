"""Study sessions, their context document and their messages.

A session expires ``session_ttl`` after its last write; an expired session is treated as gone
everywhere (404) until the collector deletes it. Lists are paged with the contract's cursors:
sessions newest first, messages by ``seq``.

Handlers run prepared Core statements over the models' tables, and a write that must find its
session first folds the check into the write (``UPDATE ... WHERE id, owner, not expired
RETURNING``), so the common request is one statement. Writes go through the store's writer
gate. The helpers other modules call (``owned_session``, ``append_messages``, the ``query_*``
readers) take an ORM session or a Core connection alike and return rows with the columns as
attributes.
"""

from __future__ import annotations

import json
from typing import Any, NamedTuple

from aiohttp import web
from sqlalchemy import Row, bindparam, delete, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from banyan.backends.common import idempotency, ids, render, rules
from banyan.backends.common.clock import now_ms
from banyan.backends.common.errors import NotFound, ValidationError
from banyan.backends.common.pagination import (
    Page,
    encode_cursor,
    newest_first_after,
    page_from_query,
)
from banyan.backends.common.statements import session_statements
from banyan.backends.common.validate import read_json
from banyan.backends.legacy.auth import authenticate
from banyan.backends.legacy.db import CONTEXTS, FOLDERS, MESSAGES, SESSIONS, Message
from banyan.backends.legacy.state import changed, state

Db = AsyncSession | AsyncConnection

S, M, C = SESSIONS, MESSAGES, CONTEXTS
SQL = session_statements(SESSIONS, MESSAGES, CONTEXTS)
FOLDER_OWNER = select(FOLDERS.c.user_id).where(FOLDERS.c.id == bindparam("id"))


class StoredSession(NamedTuple):
    id: str
    user_id: str
    folder_id: str | None
    title: str
    created_ms: int
    updated_ms: int
    expires_ms: int
    message_count: int
    idem_hash: str | None


class StoredMessage(NamedTuple):
    id: str
    session_id: str
    user_id: str
    seq: int
    role: str
    content: str
    created_ms: int
    idem_hash: str | None


def session_json(s: Any) -> dict[str, Any]:
    return render.session(
        s.id, s.title, s.folder_id, s.created_ms, s.updated_ms, s.expires_ms, s.message_count
    )


def message_json(m: Any) -> dict[str, Any]:
    return render.message(m.id, m.session_id, m.seq, m.role, m.content, m.created_ms)


async def owned_session(db: Db, user_id: str, session_id: str) -> Row[Any]:
    found = (
        (await db.execute(SQL.session_by_id, {"id": session_id})).first()
        if ids.is_uuid(session_id)
        else None
    )
    if found is None or found.user_id != user_id or found.expires_ms <= now_ms():
        raise NotFound("session not found")
    return found


async def _check_folder(db: Db, user_id: str, folder_id: str | None) -> None:
    if folder_id is None:
        return
    owner = (
        (await db.execute(FOLDER_OWNER, {"id": folder_id})).scalar()
        if ids.is_uuid(folder_id)
        else None
    )
    if owner != user_id:
        raise NotFound("folder not found")


# -- queries shared by HTTP and /ws/live ------------------------------------------------------


async def query_sessions(db: Db, user_id: str, folder: str | None, page: Page) -> dict[str, Any]:
    query = select(S).where(S.c.user_id == user_id, S.c.expires_ms > now_ms())
    if folder == "none":
        query = query.where(S.c.folder_id.is_(None))
    elif folder is not None:
        await _check_folder(db, user_id, folder)
        query = query.where(S.c.folder_id == folder)
    if page.after is not None:
        query = query.where(newest_first_after(S, page.after, user_id))
    query = query.order_by(S.c.created_ms.desc(), S.c.id.desc()).limit(page.limit + 1)
    rows = list(await db.execute(query))
    more = len(rows) > page.limit
    rows = rows[: page.limit]
    cursor = encode_cursor(rows[-1].created_ms, rows[-1].id) if more and rows else None
    return {"items": [session_json(s) for s in rows], "next_cursor": cursor}


async def query_messages(db: Db, user_id: str, session_id: str, page: Page) -> dict[str, Any]:
    await owned_session(db, user_id, session_id)
    query = select(M).where(M.c.session_id == session_id)
    if page.after is not None:
        query = query.where(M.c.seq > page.after.created_ms)
    rows = list(await db.execute(query.order_by(M.c.seq).limit(page.limit + 1)))
    more = len(rows) > page.limit
    rows = rows[: page.limit]
    cursor = encode_cursor(rows[-1].seq, rows[-1].id) if more and rows else None
    return {"items": [message_json(m) for m in rows], "next_cursor": cursor}


# -- handlers ----------------------------------------------------------------------------------


async def list_sessions(request: web.Request) -> web.Response:
    user, _ = await authenticate(request)
    page = page_from_query(request.query)
    async with state(request).db.engine.connect() as conn:
        body = await query_sessions(conn, user.id, request.query.get("folder_id"), page)
    return web.json_response(body)


async def create_session(request: web.Request) -> web.Response:
    user, _ = await authenticate(request)
    key = idempotency.key_from(request.headers)
    fields = rules.SESSION_CREATE(await read_json(request))
    fields.setdefault("folder_id", None)
    session_id = ids.new_id("session", user.id, key)
    db = state(request).db
    async with db.write_gate(), db.engine.begin() as conn:
        if key is not None:
            existing = (await conn.execute(SQL.session_by_id, {"id": session_id})).first()
            if existing is not None and existing.user_id == user.id:
                idempotency.check_replay(existing.idem_hash, fields)
                return web.json_response(
                    session_json(existing), status=201, headers=idempotency.REPLAYED
                )
        await _check_folder(conn, user.id, fields["folder_id"])
        now = now_ms()
        row = {
            "id": session_id,
            "user_id": user.id,
            "folder_id": fields["folder_id"],
            "title": fields["title"],
            "created_ms": now,
            "updated_ms": now,
            "expires_ms": now + state(request).session_ttl_ms,
            "message_count": 0,
            "idem_hash": idempotency.fingerprint(fields) if key else None,
        }
        await conn.execute(insert(S), row)
    changed(request, user.id, "sessions")
    return web.json_response(session_json(StoredSession(**row)), status=201)


async def get_session(request: web.Request) -> web.Response:
    user, _ = await authenticate(request)
    async with state(request).db.engine.connect() as conn:
        found = await owned_session(conn, user.id, request.match_info["id"])
    return web.json_response(session_json(found))


async def update_session(request: web.Request) -> web.Response:
    user, _ = await authenticate(request)
    fields = rules.SESSION_UPDATE(await read_json(request))
    if not fields:
        raise ValidationError("body: must contain at least one field")
    session_id = request.match_info["id"]
    if not ids.is_uuid(session_id):
        raise NotFound("session not found")
    st = state(request)
    async with st.db.write_gate(), st.db.engine.begin() as conn:
        if fields.get("folder_id") is not None:  # a missing session is reported before a folder
            await owned_session(conn, user.id, session_id)
            await _check_folder(conn, user.id, fields["folder_id"])
        now = now_ms()
        changes = {**fields, "updated_ms": now, "expires_ms": now + st.session_ttl_ms}
        params = {"sid": session_id, "uid": user.id, "now": now, **changes}
        found = (await conn.execute(SQL.update_owned, params)).first()
        if found is None:
            raise NotFound("session not found")
    changed(request, user.id, "sessions")
    return web.json_response(session_json(found))


async def delete_session(request: web.Request) -> web.Response:
    user, _ = await authenticate(request)
    session_id = request.match_info["id"]
    if not ids.is_uuid(session_id):
        raise NotFound("session not found")
    db = state(request).db
    async with db.write_gate(), db.engine.begin() as conn:
        params = {"sid": session_id, "uid": user.id, "now": now_ms()}
        if (await conn.execute(SQL.delete_owned, params)).first() is None:
            raise NotFound("session not found")
        await conn.execute(SQL.delete_messages, {"sid": session_id})
        await conn.execute(SQL.delete_context, {"sid": session_id})
    changed(request, user.id, "sessions", "messages")
    return web.Response(status=204)


async def delete_session_rows(db: Db, session_ids: list[str]) -> None:
    if not session_ids:
        return
    await db.execute(delete(M).where(M.c.session_id.in_(session_ids)))
    await db.execute(delete(C).where(C.c.session_id.in_(session_ids)))
    await db.execute(delete(S).where(S.c.id.in_(session_ids)))


async def get_context(request: web.Request) -> web.Response:
    user, _ = await authenticate(request)
    async with state(request).db.engine.connect() as conn:
        found = await owned_session(conn, user.id, request.match_info["id"])
        stored = (await conn.execute(SQL.context_by_id, {"id": found.id})).first()
    if stored is None:
        return web.json_response(render.context(found.id, {}, None))
    return web.json_response(
        render.context(found.id, json.loads(stored.context), stored.updated_ms)
    )


async def put_context(request: web.Request) -> web.Response:
    user, _ = await authenticate(request)
    fields = rules.CONTEXT(await read_json(request))
    session_id = request.match_info["id"]
    if not ids.is_uuid(session_id):
        raise NotFound("session not found")
    st = state(request)
    text = json.dumps(fields["context"], separators=(",", ":"))
    async with st.db.write_gate(), st.db.engine.begin() as conn:
        now = now_ms()
        touched = {"updated_ms": now, "expires_ms": now + st.session_ttl_ms}
        params = {"sid": session_id, "uid": user.id, "now": now, **touched}
        if (await conn.execute(SQL.update_owned, params)).first() is None:
            raise NotFound("session not found")
        context = {"sid": session_id, "text": text, "now": now}
        stored = await conn.execute(SQL.update_context, context)
        if stored.rowcount == 0:
            row = {"session_id": session_id, "context": text, "updated_ms": now}
            await conn.execute(insert(C), row)
    changed(request, user.id, "sessions")
    return web.json_response(render.context(session_id, fields["context"], now))


async def list_messages(request: web.Request) -> web.Response:
    user, _ = await authenticate(request)
    page = page_from_query(request.query)
    async with state(request).db.engine.connect() as conn:
        body = await query_messages(conn, user.id, request.match_info["id"], page)
    return web.json_response(body)


async def _bump(
    db: Db, session_id: str, count: int, ttl_ms: int, now: int, owner: str | None = None
) -> int | None:
    """Add ``count`` to the session's message counter with one ``UPDATE ... RETURNING`` (so
    concurrent appends get distinct ``seq`` numbers: the row is locked, or SQLite serialises the
    writers); the new counter, or None if no such session (owned by ``owner``, when given)."""
    params: dict[str, Any] = {"sid": session_id, "n": count, "now": now, "expires": now + ttl_ms}
    if owner is not None:
        params["uid"] = owner
    result = await db.execute(SQL.bump if owner is None else SQL.bump_owned, params)
    last: int | None = result.scalar()
    return last


async def append_messages(
    db: AsyncSession,
    found: Any,
    entries: list[tuple[str | None, str, str, str | None]],
    ttl_ms: int,
) -> list[Message]:
    """Append ``(id, role, content, fingerprint)`` messages to a session in the ORM session's
    transaction; they are written when it flushes (a duplicate id fails at commit). An entry
    without an id is a tutor turn's: id and fingerprint come from its ``seq``
    (:func:`idempotency.turn_message`)."""
    now = now_ms()
    last = await _bump(db, found.id, len(entries), ttl_ms, now)
    if last is None:  # deleted since it was found
        raise NotFound("session not found")
    first_seq = last - len(entries) + 1
    created: list[Message] = []
    for offset, (message_id, role, content, fp) in enumerate(entries):
        seq = first_seq + offset
        if message_id is None:
            message_id, fp = idempotency.turn_message(found.user_id, found.id, seq, role, content)
        created.append(
            Message(
                id=message_id,
                session_id=found.id,
                user_id=found.user_id,
                seq=seq,
                role=role,
                content=content,
                created_ms=now,
                idem_hash=fp,
            )
        )
    db.add_all(created)
    return created


async def create_message(request: web.Request) -> web.Response:
    user, _ = await authenticate(request)
    key = idempotency.key_from(request.headers)
    fields = rules.MESSAGE(await read_json(request))
    session_id = request.match_info["id"]
    if not ids.is_uuid(session_id):
        raise NotFound("session not found")
    st = state(request)
    message_id = ids.new_id("message", user.id, key)
    fp = idempotency.fingerprint(fields) if key else None
    async with st.db.write_gate(), st.db.engine.begin() as conn:
        if key is not None:
            await owned_session(conn, user.id, session_id)
            existing = (await conn.execute(SQL.message_by_id, {"id": message_id})).first()
            if existing is not None and existing.user_id == user.id:
                idempotency.check_replay(existing.idem_hash, fields)
                return web.json_response(
                    message_json(existing), status=201, headers=idempotency.REPLAYED
                )
        now = now_ms()
        seq = await _bump(conn, session_id, 1, st.session_ttl_ms, now, owner=user.id)
        if seq is None:
            raise NotFound("session not found")
        message = StoredMessage(
            message_id, session_id, user.id, seq, fields["role"], fields["content"], now, fp
        )
        await conn.execute(insert(M), message._asdict())
    changed(request, user.id, "sessions", "messages")
    return web.json_response(message_json(message), status=201)


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/api/sessions", list_sessions)
    r.add_post("/api/sessions", create_session)
    r.add_get("/api/sessions/{id}", get_session)
    r.add_patch("/api/sessions/{id}", update_session)
    r.add_delete("/api/sessions/{id}", delete_session)
    r.add_get("/api/sessions/{id}/context", get_context)
    r.add_put("/api/sessions/{id}/context", put_context)
    r.add_get("/api/sessions/{id}/messages", list_messages)
    r.add_post("/api/sessions/{id}/messages", create_message)
