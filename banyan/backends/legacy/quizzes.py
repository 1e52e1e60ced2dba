"""Quizzes on the legacy backend: generate from a session or a ready document, read, attempt.

Generation reads the source (a session's messages, or a ``ready`` document's text) in one
transaction, asks the quiz-writer agent on the app's agent runner outside of it (the model may
take seconds), then stores the quiz; nothing is stored when the model fails. Creating
calls honour ``Idempotency-Key`` (kinds ``quiz`` and ``attempt``): a replay answers from the store
without asking the model again.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web
from sqlalchemy import MetaData, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from banyan.backends.common import idempotency, ids, quizzes
from banyan.backends.common.agents.framework import AgentContext
from banyan.backends.common.clock import now_ms
from banyan.backends.common.errors import NotFound, Unprocessable
from banyan.backends.common.quiz_tables import define_tables
from banyan.backends.common.validate import read_json
from banyan.backends.legacy.agents import runner_of
from banyan.backends.legacy.auth import authenticate
from banyan.backends.legacy.db import Message
from banyan.backends.legacy.documents import documents
from banyan.backends.legacy.sessions import owned_session
from banyan.backends.legacy.state import state

TABLES = define_tables(MetaData())  # migration 4


def quiz_json(row: Any) -> dict[str, Any]:
    return quizzes.quiz_json(
        row["id"],
        row["source_kind"],
        row["source_id"],
        json.loads(row["questions"]),
        row["created_ms"],
    )


async def _quiz_row(db: AsyncSession, user_id: str, quiz_id: str) -> Any:
    q = TABLES.quizzes
    row = None
    if ids.is_uuid(quiz_id):
        row = (await db.execute(select(q).where(q.c.id == quiz_id))).mappings().first()
    return row if row is not None and row["user_id"] == user_id else None


async def _owned_quiz(db: AsyncSession, user_id: str, quiz_id: str) -> Any:
    row = await _quiz_row(db, user_id, quiz_id)
    if row is None:
        raise NotFound("quiz not found")
    return row


async def _session_source(db: AsyncSession, user_id: str, session_id: str) -> str:
    found = await owned_session(db, user_id, session_id)
    recent = list(
        (
            await db.execute(
                select(Message)
                .where(Message.session_id == found.id)
                .order_by(Message.seq.desc())
                .limit(quizzes.SESSION_MESSAGES)
            )
        ).scalars()
    )
    if not recent:
        raise Unprocessable("session has no messages")
    messages = [{"role": m.role, "content": m.content} for m in reversed(recent)]
    return quizzes.session_text(found.title, messages)


async def _document_source(db: AsyncSession, user_id: str, document_id: str) -> str:
    d = documents
    row = None
    if ids.is_uuid(document_id):
        query = select(d.c.user_id, d.c.title, d.c.status, d.c.text).where(d.c.id == document_id)
        row = (await db.execute(query)).mappings().first()
    if row is None or row["user_id"] != user_id:
        raise NotFound("document not found")
    if row["status"] != "ready" or not row["text"]:
        raise Unprocessable("document is not ready")
    return quizzes.document_text(row["title"], row["text"])


async def create_quiz(request: web.Request) -> web.Response:
    user, _ = await authenticate(request)
    key = idempotency.key_from(request.headers)
    fields = quizzes.check_create(await read_json(request))
    quiz_id = ids.new_id("quiz", user.id, key)
    st = state(request)
    async with st.db.session() as db:
        if key is not None:
            existing = await _quiz_row(db, user.id, quiz_id)
            if existing is not None:
                idempotency.check_replay(existing["idem_hash"], fields)
                return web.json_response(
                    quiz_json(existing), status=201, headers=idempotency.REPLAYED
                )
        if "session_id" in fields:
            kind, source_id = "session", fields["session_id"]
            text = await _session_source(db, user.id, source_id)
        else:
            kind, source_id = "document", fields["document_id"]
            text = await _document_source(db, user.id, source_id)
    ctx = AgentContext(user_id=user.id, request_id=request.headers.get("X-Request-Id"))
    questions = await quizzes.generate(runner_of(st), text, fields["count"], ctx)
    row = {
        "id": quiz_id,
        "user_id": user.id,
        "source_kind": kind,
        "source_id": source_id,
        "count": len(questions),
        "questions": json.dumps(questions, separators=(",", ":")),
        "created_ms": now_ms(),
        "idem_hash": idempotency.fingerprint(fields) if key else None,
    }
    try:
        async with st.db.session() as db:
            await db.execute(insert(TABLES.quizzes).values(**row))
            await db.commit()
    except IntegrityError:
        async with st.db.session() as db:  # the same key raced us and won: answer as a replay
            existing = await _quiz_row(db, user.id, quiz_id)
        if existing is None:
            raise
        idempotency.check_replay(existing["idem_hash"], fields)
        return web.json_response(quiz_json(existing), status=201, headers=idempotency.REPLAYED)
    return web.json_response(quiz_json(row), status=201)


async def get_quiz(request: web.Request) -> web.Response:
    user, _ = await authenticate(request)
    async with state(request).db.session() as db:
        row = await _owned_quiz(db, user.id, request.match_info["id"])
    return web.json_response(quiz_json(row))


async def create_attempt(request: web.Request) -> web.Response:
    user, _ = await authenticate(request)
    key = idempotency.key_from(request.headers)
    given = quizzes.check_attempt(await read_json(request))
    st = state(request)
    a = TABLES.attempts
    async with st.db.session() as db:
        quiz = await _owned_quiz(db, user.id, request.match_info["id"])
        questions = json.loads(quiz["questions"])
        answers = quizzes.check_answers(given, len(questions))
        fields = {"quiz_id": quiz["id"], "answers": answers}
        attempt_id = ids.new_id("attempt", user.id, key)
        if key is not None:
            existing = (await db.execute(select(a).where(a.c.id == attempt_id))).mappings().first()
            if existing is not None and existing["user_id"] == user.id:
                idempotency.check_replay(existing["idem_hash"], fields)
                body = quizzes.attempt_json(
                    existing["id"],
                    existing["quiz_id"],
                    questions,
                    json.loads(existing["answers"]),
                    existing["created_ms"],
                )
                return web.json_response(body, status=201, headers=idempotency.REPLAYED)
        now = now_ms()
        body = quizzes.attempt_json(attempt_id, quiz["id"], questions, answers, now)
        await db.execute(
            insert(a).values(
                id=attempt_id,
                quiz_id=quiz["id"],
                user_id=user.id,
                answers=json.dumps(answers),
                score=body["score"],
                total=body["total"],
                created_ms=now,
                idem_hash=idempotency.fingerprint(fields) if key else None,
            )
        )
        await db.commit()
    return web.json_response(body, status=201)


def add_routes(app: web.Application) -> None:
    app.router.add_post("/api/quizzes", create_quiz)
    app.router.add_get("/api/quizzes/{id}", get_quiz)
    app.router.add_post("/api/quizzes/{id}/attempts", create_attempt)
