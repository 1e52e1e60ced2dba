"""Study sessions, their context document and their messages.

A session expires ``session_ttl`` after its last write; an expired session is treated as gone
everywhere (404) until the collector deletes it. Lists are paged with the contract's cursors:
sessions newest first, messages by ``seq``.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web
from sqlalchemy import and_, delete, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from backends.common import idempotency, ids, render, rules
from backends.common.clock import now_ms
from backends.common.errors import NotFound, ValidationError
from backends.common.pagination import Page, encode_cursor, page_from_query
from backends.common.validate import read_json
from backends.legacy.auth import authenticate
from backends.legacy.db import Folder, Message, SessionContext, StudySession
from backends.legacy.state import changed, state


def session_json(s: StudySession) -> dict[str, Any]:
    return render.session(
        s.id, s.title, s.folder_id, s.created_ms, s.updated_ms, s.expires_ms, s.message_count
    )


def message_json(m: Message) -> dict[str, Any]:
    return render.message(m.id, m.session_id, m.seq, m.role, m.content, m.created_ms)


async def owned_session(db: AsyncSession, user_id: str, session_id: str) -> StudySession:
    found = await db.get(StudySession, session_id) if ids.is_uuid(session_id) else None
    if found is None or found.user_id != user_id or found.expires_ms <= now_ms():
        raise NotFound("session not found")
    return found


async def _check_folder(db: AsyncSession, user_id: str, folder_id: str | None) -> None:
    if folder_id is None:
        return
    folder = await db.get(Folder, folder_id) if ids.is_uuid(folder_id) else None
    if folder is None or folder.user_id != user_id:
        raise NotFound("folder not found")


# -- queries shared by HTTP and /ws/live ------------------------------------------------------


async def query_sessions(
    db: AsyncSession, user_id: str, folder: str | None, page: Page
) -> dict[str, Any]:
    query = select(StudySession).where(
        StudySession.user_id == user_id, StudySession.expires_ms > now_ms()
    )
    if folder == "none":
        query = query.where(StudySession.folder_id.is_(None))
    elif folder is not None:
        await _check_folder(db, user_id, folder)
        query = query.where(StudySession.folder_id == folder)
    if page.after is not None:
        c = page.after
        query = query.where(
            or_(
                StudySession.created_ms < c.created_ms,
                and_(StudySession.created_ms == c.created_ms, StudySession.id < c.id),
            )
        )
    rows = list(
        (
            await db.execute(
                query.order_by(StudySession.created_ms.desc(), StudySession.id.desc()).limit(
                    page.limit + 1
                )
            )
        ).scalars()
    )
    more = len(rows) > page.limit
    rows = rows[: page.limit]
    cursor = encode_cursor(rows[-1].created_ms, rows[-1].id) if more and rows else None
    return {"items": [session_json(s) for s in rows], "next_cursor": cursor}


async def query_messages(
    db: AsyncSession, user_id: str, session_id: str, page: Page
) -> dict[str, Any]:
    await owned_session(db, user_id, session_id)
    query = select(Message).where(Message.session_id == session_id)
    if page.after is not None:
        query = query.where(Message.seq > page.after.created_ms)
    rows = list((await db.execute(query.order_by(Message.seq).limit(page.limit + 1))).scalars())
    more = len(rows) > page.limit
    rows = rows[: page.limit]
    cursor = encode_cursor(rows[-1].seq, rows[-1].id) if more and rows else None
    return {"items": [message_json(m) for m in rows], "next_cursor": cursor}


# -- handlers ----------------------------------------------------------------------------------


async def list_sessions(request: web.Request) -> web.Response:
    user, _ = await authenticate(request)
    page = page_from_query(request.query)
    async with state(request).db.session() as db:
        body = await query_sessions(db, user.id, request.query.get("folder_id"), page)
    return web.json_response(body)


async def create_session(request: web.Request) -> web.Response:
    user, _ = await authenticate(request)
    key = idempotency.key_from(request.headers)
    fields = rules.SESSION_CREATE(await read_json(request))
    fields.setdefault("folder_id", None)
    session_id = ids.new_id("session", user.id, key)
    st = state(request)
    async with st.db.session() as db:
        if key is not None:
            existing = await db.get(StudySession, session_id)
            if existing is not None and existing.user_id == user.id:
                idempotency.check_replay(existing.idem_hash, fields)
                return web.json_response(
                    session_json(existing), status=201, headers=idempotency.REPLAYED
                )
        await _check_folder(db, user.id, fields["folder_id"])
        now = now_ms()
        created = StudySession(
            id=session_id,
            user_id=user.id,
            folder_id=fields["folder_id"],
            title=fields["title"],
            created_ms=now,
            updated_ms=now,
            expires_ms=now + st.session_ttl_ms,
            message_count=0,
            idem_hash=idempotency.fingerprint(fields) if key else None,
        )
        db.add(created)
        await db.commit()
    changed(request, user.id, "sessions")
    return web.json_response(session_json(created), status=201)


async def get_session(request: web.Request) -> web.Response:
    user, _ = await authenticate(request)
    async with state(request).db.session() as db:
        found = await owned_session(db, user.id, request.match_info["id"])
    return web.json_response(session_json(found))


async def update_session(request: web.Request) -> web.Response:
    user, _ = await authenticate(request)
    fields = rules.SESSION_UPDATE(await read_json(request))
    if not fields:
        raise ValidationError("body: must contain at least one field")
    st = state(request)
    async with st.db.session() as db:
        found = await owned_session(db, user.id, request.match_info["id"])
        if "folder_id" in fields:
            await _check_folder(db, user.id, fields["folder_id"])
            found.folder_id = fields["folder_id"]
        if "title" in fields:
            found.title = fields["title"]
        now = now_ms()
        found.updated_ms, found.expires_ms = now, now + st.session_ttl_ms
        await db.commit()
    changed(request, user.id, "sessions")
    return web.json_response(session_json(found))


async def delete_session(request: web.Request) -> web.Response:
    user, _ = await authenticate(request)
    async with state(request).db.session() as db:
        found = await owned_session(db, user.id, request.match_info["id"])
        await delete_session_rows(db, [found.id])
        await db.commit()
    changed(request, user.id, "sessions", "messages")
    return web.Response(status=204)


async def delete_session_rows(db: AsyncSession, session_ids: list[str]) -> None:
    if not session_ids:
        return
    await db.execute(delete(Message).where(Message.session_id.in_(session_ids)))
    await db.execute(delete(SessionContext).where(SessionContext.session_id.in_(session_ids)))
    await db.execute(delete(StudySession).where(StudySession.id.in_(session_ids)))


async def get_context(request: web.Request) -> web.Response:
    user, _ = await authenticate(request)
    async with state(request).db.session() as db:
        found = await owned_session(db, user.id, request.match_info["id"])
        stored = await db.get(SessionContext, found.id)
    if stored is None:
        return web.json_response(render.context(found.id, {}, None))
    return web.json_response(
        render.context(found.id, json.loads(stored.context), stored.updated_ms)
    )


async def put_context(request: web.Request) -> web.Response:
    user, _ = await authenticate(request)
    fields = rules.CONTEXT(await read_json(request))
    st = state(request)
    async with st.db.session() as db:
        found = await owned_session(db, user.id, request.match_info["id"])
        now = now_ms()
        stored = await db.get(SessionContext, found.id)
        text = json.dumps(fields["context"], separators=(",", ":"))
        if stored is None:
            db.add(SessionContext(session_id=found.id, context=text, updated_ms=now))
        else:
            stored.context, stored.updated_ms = text, now
        found.updated_ms, found.expires_ms = now, now + st.session_ttl_ms
        await db.commit()
    changed(request, user.id, "sessions")
    return web.json_response(render.context(found.id, fields["context"], now))


async def list_messages(request: web.Request) -> web.Response:
    user, _ = await authenticate(request)
    page = page_from_query(request.query)
    async with state(request).db.session() as db:
        body = await query_messages(db, user.id, request.match_info["id"], page)
    return web.json_response(body)


async def append_messages(
    db: AsyncSession,
    found: StudySession,
    entries: list[tuple[str, str, str, str | None]],
    ttl_ms: int,
) -> list[Message]:
    """Append ``(id, role, content, fingerprint)`` messages to a session in the open transaction.

    The counter is bumped with one ``UPDATE ... RETURNING`` so concurrent appends to one session
    get distinct ``seq`` numbers (the row is locked, or SQLite serialises the writers)."""
    now = now_ms()
    last = (
        await db.execute(
            update(StudySession)
            .where(StudySession.id == found.id)
            .values(
                message_count=StudySession.message_count + len(entries),
                updated_ms=now,
                expires_ms=now + ttl_ms,
            )
            .returning(StudySession.message_count)
            .execution_options(synchronize_session=False)
        )
    ).scalar_one()
    first_seq = last - len(entries) + 1
    created = []
    for offset, (message_id, role, content, fp) in enumerate(entries):
        message = Message(
            id=message_id,
            session_id=found.id,
            user_id=found.user_id,
            seq=first_seq + offset,
            role=role,
            content=content,
            created_ms=now,
            idem_hash=fp,
        )
        db.add(message)
        created.append(message)
    found.message_count, found.updated_ms, found.expires_ms = last, now, now + ttl_ms
    return created


async def create_message(request: web.Request) -> web.Response:
    user, _ = await authenticate(request)
    key = idempotency.key_from(request.headers)
    fields = rules.MESSAGE(await read_json(request))
    st = state(request)
    message_id = ids.new_id("message", user.id, key)
    async with st.db.session() as db:
        found = await owned_session(db, user.id, request.match_info["id"])
        if key is not None:
            existing = await db.get(Message, message_id)
            if existing is not None and existing.user_id == user.id:
                idempotency.check_replay(existing.idem_hash, fields)
                return web.json_response(
                    message_json(existing), status=201, headers=idempotency.REPLAYED
                )
        fp = idempotency.fingerprint(fields) if key else None
        (message,) = await append_messages(
            db, found, [(message_id, fields["role"], fields["content"], fp)], st.session_ttl_ms
        )
        await db.commit()
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
