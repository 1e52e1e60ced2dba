"""Live tutoring on the legacy backend: ``POST /api/sessions/{id}/ask`` (JSON or SSE) and
``/ws/tutor/{session_id}``.

A turn loads the session's title, context and last messages with the ORM, streams the model's
answer through the shared turn engine (:mod:`banyan.backends.common.tutor`), then stores the
question and
the answer in one transaction and tells ``/ws/live`` subscribers. With an ``Idempotency-Key`` the
two messages get ids derived from the key (``...:<key>:q`` and ``...:<key>:a``); a repeat returns
the stored pair without asking the model again.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from banyan.backends.common import idempotency, ids, rules
from banyan.backends.common.model_client import install_llm, llm_of
from banyan.backends.common.tutor.events import Done, Token, TurnEvent, answer_http
from banyan.backends.common.tutor.prompt import HISTORY_TURNS, HistoryMessage
from banyan.backends.common.tutor.socket import TutorHub, serve_tutor
from banyan.backends.common.tutor.turn import SessionState, run_turn
from banyan.backends.common.validate import read_json
from banyan.backends.legacy.auth import authenticate
from banyan.backends.legacy.db import Message, SessionContext
from banyan.backends.legacy.sessions import append_messages, message_json, owned_session
from banyan.backends.legacy.state import STATE, LegacyState

HUB: web.AppKey[TutorHub] = web.AppKey("legacy_tutor_hub", TutorHub)


def turn_ids(user_id: str, key: str) -> tuple[str, str]:
    """The question's and the answer's message ids under an ``Idempotency-Key`` (without one,
    they come from the messages' ``seq`` when stored: :func:`idempotency.turn_message`)."""
    return ids.derived_id("message", user_id, f"{key}:q"), ids.derived_id(
        "message", user_id, f"{key}:a"
    )


async def load_state(st: LegacyState, user_id: str, session_id: str) -> SessionState:
    async with st.db.session() as db:
        found = await owned_session(db, user_id, session_id)
        stored = await db.get(SessionContext, found.id)
        rows = (
            await db.execute(
                select(Message)
                .where(Message.session_id == found.id)
                .order_by(Message.seq.desc())
                .limit(HISTORY_TURNS)
            )
        ).scalars()
        history = [HistoryMessage(m.role, m.content) for m in reversed(list(rows))]
    context = json.loads(stored.context) if stored is not None else {}
    return SessionState(found.title, context, history)


async def stored_pair(
    st: LegacyState, user_id: str, question_id: str, answer_id: str, fields: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """The pair stored under an idempotency key (409 when it came from another body)."""
    async with st.db.session() as db:
        question = await db.get(Message, question_id)
        answer = await db.get(Message, answer_id)
    if question is None or answer is None or question.user_id != user_id:
        return None
    idempotency.check_replay(question.idem_hash, fields)
    return message_json(question), message_json(answer)


async def store_pair(
    st: LegacyState,
    user_id: str,
    session_id: str,
    question: str,
    answer: str,
    *,
    message_ids: tuple[str, str] | None,
    fingerprint: str | None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    ids_of = message_ids or (None, None)
    async with st.db.session() as db:
        found = await owned_session(db, user_id, session_id)
        entries = [
            (ids_of[0], "user", question, fingerprint),
            (ids_of[1], "assistant", answer, fingerprint),
        ]
        stored_q, stored_a = await append_messages(db, found, entries, st.session_ttl_ms)
        try:
            await db.commit()
        except IntegrityError:  # a concurrent repeat of the same key stored the pair first
            await db.rollback()
            if message_ids is None:
                raise
            again = await stored_pair(st, user_id, *message_ids, {"text": question})
            if again is None:
                raise
            return again
    if st.live is not None:
        st.live.changed(user_id, {"sessions", "messages"})
    return message_json(stored_q), message_json(stored_a)


def turn(
    app: web.Application,
    user_id: str,
    session_id: str,
    text: str,
    *,
    key: str | None = None,
) -> AsyncIterator[TurnEvent]:
    st = app[STATE]
    message_ids = turn_ids(user_id, key) if key is not None else None
    fingerprint = idempotency.fingerprint({"text": text.strip()}) if key else None

    async def load() -> SessionState:
        return await load_state(st, user_id, session_id)

    async def store(question: str, answer: str) -> tuple[dict[str, Any], dict[str, Any]]:
        return await store_pair(
            st,
            user_id,
            session_id,
            question,
            answer,
            message_ids=message_ids,
            fingerprint=fingerprint,
        )

    return run_turn(llm_of(app), text, load=load, store=store)


async def replayed(pair: tuple[dict[str, Any], dict[str, Any]]) -> AsyncIterator[TurnEvent]:
    """A stored turn told again: the whole answer as one token, then the pair."""
    yield Token(pair[1]["content"])
    yield Done(*pair)


async def ask(request: web.Request) -> web.StreamResponse:
    user, _ = await authenticate(request)
    key = idempotency.key_from(request.headers)
    fields = rules.ASK(await read_json(request))
    st = request.app[STATE]
    session_id = request.match_info["id"]
    async with st.db.session() as db:
        await owned_session(db, user.id, session_id)
    if key is not None:
        pair = await stored_pair(st, user.id, *turn_ids(user.id, key), fields)
        if pair is not None:
            return await answer_http(request, replayed(pair), headers=idempotency.REPLAYED)
    return await answer_http(
        request, turn(request.app, user.id, session_id, fields["text"], key=key)
    )


async def tutor_socket(request: web.Request) -> web.StreamResponse:
    user, _ = await authenticate(request, query_token=True)
    session_id = request.match_info["session_id"]
    async with request.app[STATE].db.session() as db:
        await owned_session(db, user.id, session_id)  # 404 before the upgrade

    def runner(user_id: str, sid: str, text: str) -> AsyncIterator[TurnEvent]:
        return turn(request.app, user_id, sid, text)

    return await serve_tutor(
        request, user_id=user.id, session_id=session_id, runner=runner, hub=request.app[HUB]
    )


def add_routes(app: web.Application) -> None:
    install_llm(app)
    hub = app[HUB] = TutorHub()

    async def close_sockets(_: web.Application) -> None:
        await hub.close_all()

    app.on_shutdown.append(close_sockets)
    app.router.add_post("/api/sessions/{id}/ask", ask)
    app.router.add_get("/ws/tutor/{session_id}", tutor_socket)
