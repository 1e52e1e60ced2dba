"""Tutoring as functions: a turn is the action ``tutor.turn``, which reads the session with the
query ``tutor.load``, streams the model's answer (outside any transaction) and stores both
messages with the mutation ``tutor.store`` — whose commit pushes ``/ws/live`` like every message
write. ``tutor.replay`` finds a pair stored under an ``Idempotency-Key`` (ids ``...:<key>:q`` and
``...:<key>:a``), so a repeat never asks the model again.

The model client is the app's (``runtime.settings["llm"]``, see :mod:`banyan.backends.new.realtime`).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from banyan.backends.common import idempotency, ids
from banyan.backends.common import validate as v
from banyan.backends.common.tutor.events import Done, Token, TurnEvent
from banyan.backends.common.tutor.prompt import HISTORY_TURNS, HistoryMessage
from banyan.backends.common.tutor.turn import SessionState, Streamer, run_turn
from banyan.backends.new.functions.common import CALLER, KEY, OPTIONAL_KEY, anything
from banyan.backends.new.functions.sessions import append, message_json, owned_session
from banyan.backends.new.runtime.context import ActionCtx, MutationCtx, QueryCtx
from banyan.backends.new.runtime.registry import action, mutation, query
from banyan.backends.new.runtime.schema import contexts, messages

LLM_SETTING = "llm"


@dataclass(frozen=True, slots=True)
class Turn:
    """What ``tutor.turn`` returns: the turn's events, and whether it is a stored replay."""

    events: AsyncIterator[TurnEvent]
    replayed: bool = False


def turn_ids(user_id: str, key: str) -> tuple[str, str]:
    """The question's and the answer's ids under an ``Idempotency-Key`` (without one they come
    from the messages' ``seq`` when stored: :func:`idempotency.turn_message`)."""
    return ids.derived_id("message", user_id, f"{key}:q"), ids.derived_id(
        "message", user_id, f"{key}:a"
    )


@query("tutor.load", {"id": v.string(), **CALLER})
async def load(ctx: QueryCtx, args: dict[str, Any]) -> dict[str, Any]:
    """The session's title, context and last messages (the prompt's inputs)."""
    row = await owned_session(ctx, args["caller"]["id"], args["id"])
    stored = (
        (await ctx.read(select(contexts.c.context).where(contexts.c.session_id == row["id"])))
        .scalars()
        .first()
    )
    recent = (
        await ctx.read(
            select(messages.c.role, messages.c.content)
            .where(messages.c.session_id == row["id"])
            .order_by(messages.c.seq.desc())
            .limit(HISTORY_TURNS)
        )
    ).all()
    return {
        "title": row["title"],
        "context": json.loads(stored) if stored is not None else {},
        "history": [[role, content] for role, content in reversed(recent)],
    }


async def _pair(ctx: QueryCtx, user_id: str, question_id: str, answer_id: str) -> Any:
    found = {
        r["id"]: r
        for r in (
            await ctx.read(select(messages).where(messages.c.id.in_([question_id, answer_id])))
        ).mappings()
    }
    question, answer = found.get(question_id), found.get(answer_id)
    if question is None or answer is None or question["user_id"] != user_id:
        return None
    return question, answer


@query(
    "tutor.replay",
    {"id": v.string(), "text": v.string(), "idempotency_key": v.string(), **CALLER},
)
async def replay(ctx: QueryCtx, args: dict[str, Any]) -> dict[str, Any] | None:
    """The pair stored under the key, or None; 409 when the key came with another text."""
    user_id = args["caller"]["id"]
    await owned_session(ctx, user_id, args["id"])
    found = await _pair(ctx, user_id, *turn_ids(user_id, args["idempotency_key"]))
    if found is None:
        return None
    idempotency.check_replay(found[0]["idem_hash"], {"text": args["text"]})
    return {"question": message_json(found[0]), "answer": message_json(found[1])}


@mutation(
    "tutor.store",
    {
        "id": v.string(),
        "question": v.string(),
        "answer": v.string(max_len=1_000_000, strip=False),
        "message_ids": anything(),
        "fingerprint": v.nullable(v.string()),
        **CALLER,
    },
)
async def store(ctx: MutationCtx, args: dict[str, Any]) -> dict[str, Any]:
    """Both messages of a turn in one transaction (a concurrent repeat of a key finds its pair)."""
    user_id = args["caller"]["id"]
    session = await owned_session(ctx, user_id, args["id"])
    question_id, answer_id = args["message_ids"] or (None, None)
    if question_id is not None and answer_id is not None and args["fingerprint"] is not None:
        found = await _pair(ctx, user_id, question_id, answer_id)
        if found is not None:
            return {"question": message_json(found[0]), "answer": message_json(found[1])}
    question, answer = await append(
        ctx,
        session,
        [
            (question_id, "user", args["question"], args["fingerprint"]),
            (answer_id, "assistant", args["answer"], args["fingerprint"]),
        ],
    )
    return {"question": message_json(question), "answer": message_json(answer)}


async def _replayed(pair: dict[str, Any]) -> AsyncIterator[TurnEvent]:
    yield Token(pair["answer"]["content"])
    yield Done(pair["question"], pair["answer"])


@action("tutor.turn", {"id": v.string(), "text": v.string(), **CALLER, **KEY}, OPTIONAL_KEY)
async def turn(ctx: ActionCtx, args: dict[str, Any]) -> Turn:
    caller, session_id, text = args["caller"], args["id"], args["text"]
    key = args.get("idempotency_key")
    if key is not None:
        pair = await ctx.run_query(
            "tutor.replay",
            {"id": session_id, "text": text, "idempotency_key": key, "caller": caller},
        )
        if pair is not None:
            return Turn(_replayed(pair), replayed=True)
    message_ids = list(turn_ids(caller["id"], key)) if key is not None else None
    fingerprint = idempotency.fingerprint({"text": text}) if key else None

    async def load_state() -> SessionState:
        found = await ctx.run_query("tutor.load", {"id": session_id, "caller": caller})
        history = [HistoryMessage(role, content) for role, content in found["history"]]
        return SessionState(found["title"], found["context"], history)

    async def store_pair(question: str, answer: str) -> tuple[dict[str, Any], dict[str, Any]]:
        try:
            stored = await ctx.run_mutation(
                "tutor.store",
                {
                    "id": session_id,
                    "question": question,
                    "answer": answer,
                    "message_ids": message_ids,
                    "fingerprint": fingerprint,
                    "caller": caller,
                },
            )
        except IntegrityError:  # a concurrent repeat of the same key committed first
            if key is None:
                raise
            stored = await ctx.run_query(
                "tutor.replay",
                {"id": session_id, "text": text, "idempotency_key": key, "caller": caller},
            )
            if stored is None:
                raise
        return stored["question"], stored["answer"]

    llm: Streamer = ctx.runtime.settings[LLM_SETTING]
    return Turn(run_turn(llm, text, load=load_state, store=store_pair))
