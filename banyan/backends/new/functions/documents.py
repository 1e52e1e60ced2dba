"""Documents as functions: ``documents.create`` (a mutation: the row and its processing job commit
together), ``documents.list`` / ``documents.get`` (queries), ``documents.delete``, and the job
itself, ``documents.process`` (an action: it reads the upload, runs extraction and the summarizer
outside any transaction, then stores the result and the chunks with ``documents.store``).

The multipart upload is read by :mod:`banyan.backends.new.uploads`, which hands the parsed file here.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import delete, insert, select, update

from banyan.backends.common import document_jobs, document_tables, idempotency, ids
from banyan.backends.common import jobs as job_rules
from banyan.backends.common import validate as v
from banyan.backends.common.agents.framework import AgentContext
from banyan.backends.common.clock import now_ms
from banyan.backends.common.errors import NotFound
from banyan.backends.common.pagination import encode_cursor, newest_first_after, page_from_query
from banyan.backends.new.functions import jobs
from banyan.backends.new.functions.agents import runner_of
from banyan.backends.new.functions.common import CALLER, KEY, OPTIONAL_KEY, anything
from banyan.backends.new.runtime.context import ActionCtx, MutationCtx, QueryCtx
from banyan.backends.new.runtime.http import Reply
from banyan.backends.new.runtime.registry import action, mutation, query
from banyan.backends.new.runtime.schema import documents as tables
from banyan.backends.new.runtime.schema import jobs as job_table

documents, chunks = tables.documents, tables.chunks
_LIST = [documents.c[name] for name in document_tables.LIST_COLUMNS]
_ONE = [*_LIST, documents.c.text]


async def owned_document(ctx: QueryCtx, user_id: str, document_id: str) -> dict[str, Any]:
    row = None
    if ids.is_uuid(document_id):
        row = (
            (await ctx.read(select(*_ONE).where(documents.c.id == document_id))).mappings().first()
        )
    if row is None or row["user_id"] != user_id:
        raise NotFound("document not found")
    return dict(row)


@mutation(
    "documents.create",
    {
        "upload": anything(),  # banyan.backends.common.uploads.Upload, already checked
        **CALLER,
        **KEY,
    },
    optional=OPTIONAL_KEY,
)
async def create(ctx: MutationCtx, args: dict[str, Any]) -> Reply:
    user_id, key, sent = args["caller"]["id"], args.get("idempotency_key"), args["upload"]
    fields = sent.fingerprint_fields()
    document_id = ids.new_id("document", user_id, key)
    if key is not None:
        existing = (
            (await ctx.read(select(*_ONE).where(documents.c.id == document_id))).mappings().first()
        )
        if existing is not None and existing["user_id"] == user_id:
            idempotency.check_replay(existing["idem_hash"], fields)
            return Reply(document_tables.render(existing), 202, dict(idempotency.REPLAYED))
    now = now_ms()
    job_id = document_jobs.job_id(document_id)
    idem_hash = idempotency.fingerprint(fields) if key else None
    row = document_tables.new_row(
        document_id, user_id, sent, job_id=job_id, idem_hash=idem_hash, now=now
    )
    await ctx.write(insert(documents).values(**row))
    await jobs.enqueue(
        ctx,
        document_jobs.KIND,
        {"document_id": document_id},
        user_id=user_id,
        priority=document_jobs.PRIORITY,
        job_id=job_id,
    )
    return Reply(document_tables.render(row), 202)


@query("documents.list", {"query": anything(), **CALLER, **KEY}, optional=OPTIONAL_KEY)
async def list_documents(ctx: QueryCtx, args: dict[str, Any]) -> dict[str, Any]:
    page = page_from_query(args["query"])
    stmt = select(*_LIST).where(documents.c.user_id == args["caller"]["id"])
    if page.after is not None:
        stmt = stmt.where(newest_first_after(documents, page.after, args["caller"]["id"]))
    stmt = stmt.order_by(documents.c.created_ms.desc(), documents.c.id.desc())
    rows = list((await ctx.read(stmt.limit(page.limit + 1))).mappings())
    more = len(rows) > page.limit
    rows = rows[: page.limit]
    cursor = encode_cursor(rows[-1]["created_ms"], rows[-1]["id"]) if more and rows else None
    return {"items": [document_tables.render(r) for r in rows], "next_cursor": cursor}


@query("documents.get", {"id": v.string(), **CALLER, **KEY}, optional=OPTIONAL_KEY)
async def get_document(ctx: QueryCtx, args: dict[str, Any]) -> dict[str, Any]:
    row = await owned_document(ctx, args["caller"]["id"], args["id"])
    return document_tables.render(row, with_text=True)


@mutation("documents.delete", {"id": v.string(), **CALLER, **KEY}, optional=OPTIONAL_KEY)
async def delete_document(ctx: MutationCtx, args: dict[str, Any]) -> Reply:
    row = await owned_document(ctx, args["caller"]["id"], args["id"])
    await ctx.write(delete(chunks).where(chunks.c.document_id == row["id"]))
    await ctx.write(delete(documents).where(documents.c.id == row["id"]))
    await ctx.write(delete(jobs.jobs).where(jobs.jobs.c.id == row["job_id"]))
    return Reply(status=204)


# -- the processing job --------------------------------------------------------------------------


@query("documents.upload_of", {"id": v.string()})
async def upload_of(ctx: QueryCtx, args: dict[str, Any]) -> dict[str, Any] | None:
    found = await ctx.read(
        select(
            documents.c.user_id, documents.c.media_type, documents.c.data, documents.c.job_id
        ).where(documents.c.id == args["id"])
    )
    row = found.mappings().first()
    return dict(row) if row is not None else None


@mutation(
    "documents.mark",
    {"id": v.string(), "job_id": v.string(), "status": anything(), "error": anything()},
    optional={"error"},
)
async def mark(ctx: MutationCtx, args: dict[str, Any]) -> bool:
    done = await ctx.write(
        update(documents)
        .where(documents.c.id == args["id"], documents.c.job_id == args["job_id"])
        .values(status=args["status"], error=args.get("error"), updated_ms=now_ms())
    )
    return bool(done.rowcount)


@mutation("documents.store", {"id": v.string(), "job_id": v.string(), "done": anything()})
async def store(ctx: MutationCtx, args: dict[str, Any]) -> bool:
    done: document_jobs.Processed = args["done"]
    kept = await ctx.write(
        update(documents)
        .where(documents.c.id == args["id"], documents.c.job_id == args["job_id"])
        .values(
            status="ready",
            error=None,
            text=done.text,
            summary=done.summary,
            keywords=json.dumps(done.keywords),
            chunks=len(done.chunks),
            updated_ms=now_ms(),
        )
    )
    if not kept.rowcount:
        return False
    await ctx.write(delete(chunks).where(chunks.c.document_id == args["id"]))
    pieces = [{"document_id": args["id"], "idx": i, "text": t} for i, t in enumerate(done.chunks)]
    await ctx.write(insert(chunks).values(pieces))
    return True


@action(document_jobs.KIND, {"document_id": v.string()})
async def process(ctx: ActionCtx, args: dict[str, Any]) -> dict[str, Any]:
    document_id = args["document_id"]
    job_id = document_jobs.job_id(document_id)
    row = await ctx.run_query("documents.upload_of", {"id": document_id})
    marked = row is not None and await ctx.run_mutation(
        "documents.mark", {"id": document_id, "job_id": job_id, "status": "processing"}
    )
    if row is None or not marked:
        return {"document_id": document_id, "skipped": "the document was deleted"}
    agent_ctx = AgentContext(user_id=row["user_id"])
    try:
        done = await document_jobs.process(
            runner_of(ctx.runtime), row["media_type"], row["data"], agent_ctx
        )
    except Exception as exc:
        attempts = await ctx.run_query("documents.attempts", {"job_id": job_id})
        status = document_jobs.status_after_failure(attempts[0], attempts[1])
        error = job_rules.describe(exc)
        await ctx.run_mutation(
            "documents.mark",
            {"id": document_id, "job_id": job_id, "status": status, "error": error},
        )
        raise
    await ctx.run_mutation("documents.store", {"id": document_id, "job_id": job_id, "done": done})
    return {"document_id": document_id, "chunks": len(done.chunks)}


@query("documents.attempts", {"job_id": v.string()})
async def attempts_of(ctx: QueryCtx, args: dict[str, Any]) -> tuple[int, int]:
    """The job's attempts so far and its limit (the current attempt included)."""
    found = await ctx.read(
        select(jobs.jobs.c.attempts, jobs.jobs.c.max_attempts).where(
            jobs.jobs.c.id == args["job_id"]
        )
    )
    row = found.first()
    return (int(row[0]), int(row[1])) if row is not None else (1, 1)


@mutation("documents.settle")
async def settle_documents(ctx: MutationCtx, args: dict[str, Any]) -> dict[str, int]:
    """Mark failed the documents whose job died with its worker on the last attempt."""
    done = await ctx.write(
        document_tables.fail_documents_of_dead_jobs(tables.documents, job_table, now_ms())
    )
    return {"failed": int(done.rowcount or 0)}


jobs.periodic("documents.settle")
