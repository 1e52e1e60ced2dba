"""Quizzes as functions.

- ``quizzes.create`` (action): a keyed replay is answered by the query ``quizzes.find`` without
  asking the model; otherwise the source text comes from the query ``quizzes.sessionSource`` or
  ``quizzes.documentSource``, the quiz-writer agent writes the questions (outside any
  transaction), and the mutation ``quizzes.insert`` stores the quiz. Nothing is stored when the
  model fails.
- ``quizzes.get`` (cached query: a quiz never changes once written).
- ``quizzes.attempt`` (mutation): scores the answers and stores the attempt in one transaction.

The agent runner is the app's (:func:`banyan.backends.new.functions.agents.runner_of`).
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError

from banyan.backends.common import idempotency, ids, quizzes
from banyan.backends.common import validate as v
from banyan.backends.common.agents.framework import AgentContext
from banyan.backends.common.clock import now_ms
from banyan.backends.common.errors import NotFound, Unprocessable
from banyan.backends.new.functions.agents import runner_of
from banyan.backends.new.functions.common import CALLER, KEY, OPTIONAL_KEY, anything
from banyan.backends.new.functions.sessions import owned_session
from banyan.backends.new.runtime.context import ActionCtx, MutationCtx, QueryCtx
from banyan.backends.new.runtime.http import Reply
from banyan.backends.new.runtime.registry import action, mutation, query
from banyan.backends.new.runtime.schema import documents, messages
from banyan.backends.new.runtime.schema import quizzes as tables


def quiz_json(row: Any) -> dict[str, Any]:
    questions = json.loads(row["questions"])
    return quizzes.quiz_json(
        row["id"], row["source_kind"], row["source_id"], questions, row["created_ms"]
    )


async def _quiz_row(ctx: QueryCtx, user_id: str, quiz_id: str) -> Any:
    q = tables.quizzes
    row = None
    if ids.is_uuid(quiz_id):
        row = (await ctx.read(select(q).where(q.c.id == quiz_id))).mappings().first()
    return row if row is not None and row["user_id"] == user_id else None


async def _owned_quiz(ctx: QueryCtx, user_id: str, quiz_id: str) -> Any:
    row = await _quiz_row(ctx, user_id, quiz_id)
    if row is None:
        raise NotFound("quiz not found")
    return row


@query("quizzes.find", {"id": v.string(), "user_id": v.string(), "fields": anything()})
async def find(ctx: QueryCtx, args: dict[str, Any]) -> dict[str, Any] | None:
    """The quiz stored under a key's id, after checking it was created from the same body."""
    row = await _quiz_row(ctx, args["user_id"], args["id"])
    if row is None:
        return None
    idempotency.check_replay(row["idem_hash"], args["fields"])
    return quiz_json(row)


@query("quizzes.sessionSource", {"id": v.string(), **CALLER})
async def session_source(ctx: QueryCtx, args: dict[str, Any]) -> str:
    found = await owned_session(ctx, args["caller"]["id"], args["id"])
    m = messages
    recent = list(
        (
            await ctx.read(
                select(m.c.role, m.c.content)
                .where(m.c.session_id == found["id"])
                .order_by(m.c.seq.desc())
                .limit(quizzes.SESSION_MESSAGES)
            )
        ).mappings()
    )
    if not recent:
        raise Unprocessable("session has no messages")
    history = [{"role": r["role"], "content": r["content"]} for r in reversed(recent)]
    return quizzes.session_text(found["title"], history)


@query("quizzes.documentSource", {"id": v.string(), **CALLER})
async def document_source(ctx: QueryCtx, args: dict[str, Any]) -> str:
    d, document_id = documents.documents, args["id"]
    row = None
    if ids.is_uuid(document_id):
        query = select(d.c.user_id, d.c.title, d.c.status, d.c.text).where(d.c.id == document_id)
        row = (await ctx.read(query)).mappings().first()
    if row is None or row["user_id"] != args["caller"]["id"]:
        raise NotFound("document not found")
    if row["status"] != "ready" or not row["text"]:
        raise Unprocessable("document is not ready")
    return quizzes.document_text(row["title"], row["text"])


@mutation("quizzes.insert", {"row": anything()})
async def insert_quiz(ctx: MutationCtx, args: dict[str, Any]) -> dict[str, Any]:
    await ctx.write(insert(tables.quizzes).values(**args["row"]))
    return quiz_json(args["row"])


@action(
    "quizzes.create",
    {
        "session_id": v.string(),
        "document_id": v.string(),
        "count": v.integer(minimum=1, maximum=20),
        **CALLER,
        **KEY,
    },
    optional={"session_id", "document_id", *OPTIONAL_KEY},
)
async def create(ctx: ActionCtx, args: dict[str, Any]) -> Reply:
    user_id, key = args["caller"]["id"], args.get("idempotency_key")
    fields: dict[str, Any] = {
        k: args[k] for k in ("session_id", "document_id", "count") if k in args
    }
    quiz_id = ids.new_id("quiz", user_id, key)
    lookup = {"id": quiz_id, "user_id": user_id, "fields": fields}
    if key is not None:
        existing = await ctx.run_query("quizzes.find", lookup)
        if existing is not None:
            return Reply(existing, 201, dict(idempotency.REPLAYED))
    if "session_id" in fields:
        kind, source_id = "session", fields["session_id"]
        source = "quizzes.sessionSource"
    else:
        kind, source_id = "document", fields["document_id"]
        source = "quizzes.documentSource"
    text = await ctx.run_query(source, {"id": source_id, "caller": args["caller"]})
    agent_ctx = AgentContext(user_id=user_id)
    questions = await quizzes.generate(runner_of(ctx.runtime), text, fields["count"], agent_ctx)
    row = {
        "id": quiz_id,
        "user_id": user_id,
        "source_kind": kind,
        "source_id": source_id,
        "count": len(questions),
        "questions": json.dumps(questions, separators=(",", ":")),
        "created_ms": now_ms(),
        "idem_hash": idempotency.fingerprint(fields) if key else None,
    }
    try:
        created = await ctx.run_mutation("quizzes.insert", {"row": row})
    except IntegrityError:
        existing = await ctx.run_query("quizzes.find", lookup) if key is not None else None
        if existing is None:
            raise
        return Reply(existing, 201, dict(idempotency.REPLAYED))  # the same key raced us and won
    return Reply(created, 201)


@query("quizzes.get", {"id": v.string(), "user_id": v.string()}, cache=True)
async def get_quiz(ctx: QueryCtx, args: dict[str, Any]) -> dict[str, Any]:
    return quiz_json(await _owned_quiz(ctx, args["user_id"], args["id"]))


@action("quizzes.read", {"id": v.string(), **CALLER, **KEY}, optional=OPTIONAL_KEY)
async def read(ctx: ActionCtx, args: dict[str, Any]) -> dict[str, Any]:
    """``GET /api/quizzes/{id}``: the cached read, keyed by user and quiz (not by token)."""
    body: dict[str, Any] = await ctx.run_query(
        "quizzes.get", {"id": args["id"], "user_id": args["caller"]["id"]}
    )
    return body


@mutation(
    "quizzes.attempt",
    {"id": v.string(), "answers": anything(), **CALLER, **KEY},
    optional=OPTIONAL_KEY,
)
async def attempt(ctx: MutationCtx, args: dict[str, Any]) -> Reply:
    user_id, key = args["caller"]["id"], args.get("idempotency_key")
    quiz = await _owned_quiz(ctx, user_id, args["id"])
    questions = json.loads(quiz["questions"])
    answers = quizzes.check_answers(args["answers"], len(questions))
    fields = {"quiz_id": quiz["id"], "answers": answers}
    attempt_id = ids.new_id("attempt", user_id, key)
    a = tables.attempts
    if key is not None:
        existing = (await ctx.read(select(a).where(a.c.id == attempt_id))).mappings().first()
        if existing is not None and existing["user_id"] == user_id:
            idempotency.check_replay(existing["idem_hash"], fields)
            body = quizzes.attempt_json(
                existing["id"],
                existing["quiz_id"],
                questions,
                json.loads(existing["answers"]),
                existing["created_ms"],
            )
            return Reply(body, 201, dict(idempotency.REPLAYED))
    now = now_ms()
    body = quizzes.attempt_json(attempt_id, quiz["id"], questions, answers, now)
    await ctx.write(
        insert(a).values(
            id=attempt_id,
            quiz_id=quiz["id"],
            user_id=user_id,
            answers=json.dumps(answers),
            score=body["score"],
            total=body["total"],
            created_ms=now,
            idem_hash=idempotency.fingerprint(fields) if key else None,
        )
    )
    return Reply(body, 201)
