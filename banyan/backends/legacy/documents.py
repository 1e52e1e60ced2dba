"""Documents on the legacy backend: upload (multipart, 202 + a processing job), list, get, delete,
and the ``documents.process`` job handler.

The upload stores the file and enqueues its job in one transaction; the job (on the app's job
worker) extracts, chunks and summarises (:mod:`banyan.backends.common.document_jobs`) and writes the
result with the chunks in one transaction. A document deleted while its job runs stays deleted.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web
from sqlalchemy import MetaData, delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from banyan.backends.common import document_jobs, document_tables, idempotency, ids
from banyan.backends.common import jobs as q
from banyan.backends.common.agents.framework import AgentContext
from banyan.backends.common.clock import now_ms
from banyan.backends.common.errors import NotFound
from banyan.backends.common.pagination import encode_cursor, newest_first_after, page_from_query
from banyan.backends.common.uploads import read_upload
from banyan.backends.legacy import jobs
from banyan.backends.legacy.agents import runner_of
from banyan.backends.legacy.auth import authenticate
from banyan.backends.legacy.state import LegacyState, state

metadata = MetaData()  # migration 3
TABLES = document_tables.define_tables(metadata)
documents = TABLES.documents
chunks = TABLES.chunks
_LIST = [documents.c[name] for name in document_tables.LIST_COLUMNS]
_ONE = [*_LIST, documents.c.text]


async def _owned(conn: AsyncConnection, user_id: str, document_id: str) -> dict[str, Any]:
    row = None
    if ids.is_uuid(document_id):
        row = (
            (await conn.execute(select(*_ONE).where(documents.c.id == document_id)))
            .mappings()
            .first()
        )
    if row is None or row["user_id"] != user_id:
        raise NotFound("document not found")
    return dict(row)


async def upload(request: web.Request) -> web.Response:
    user, _ = await authenticate(request)
    key = idempotency.key_from(request.headers)
    sent = await read_upload(request)
    fields = sent.fingerprint_fields()
    document_id = ids.new_id("document", user.id, key)
    st = state(request)
    async with st.db.engine.begin() as conn:
        if key is not None:
            existing = (
                (await conn.execute(select(*_ONE).where(documents.c.id == document_id)))
                .mappings()
                .first()
            )
            if existing is not None and existing["user_id"] == user.id:
                idempotency.check_replay(existing["idem_hash"], fields)
                return web.json_response(
                    document_tables.render(existing), status=202, headers=idempotency.REPLAYED
                )
        now = now_ms()
        job_id = document_jobs.job_id(document_id)
        idem_hash = idempotency.fingerprint(fields) if key else None
        row = document_tables.new_row(
            document_id, user.id, sent, job_id=job_id, idem_hash=idem_hash, now=now
        )
        await conn.execute(insert(documents).values(**row))
        await jobs.enqueue(
            conn,
            st,
            document_jobs.KIND,
            {"document_id": document_id},
            user_id=user.id,
            priority=document_jobs.PRIORITY,
            job_id=job_id,
        )
    jobs.wake(st)
    return web.json_response(document_tables.render(row), status=202)


async def list_documents(request: web.Request) -> web.Response:
    user, _ = await authenticate(request)
    page = page_from_query(request.query)
    query = select(*_LIST).where(documents.c.user_id == user.id)
    if page.after is not None:
        query = query.where(newest_first_after(documents, page.after, user.id))
    query = query.order_by(documents.c.created_ms.desc(), documents.c.id.desc())
    async with state(request).db.engine.connect() as conn:
        rows = list((await conn.execute(query.limit(page.limit + 1))).mappings())
    more = len(rows) > page.limit
    rows = rows[: page.limit]
    cursor = encode_cursor(rows[-1]["created_ms"], rows[-1]["id"]) if more and rows else None
    return web.json_response(
        {"items": [document_tables.render(r) for r in rows], "next_cursor": cursor}
    )


async def get_document(request: web.Request) -> web.Response:
    user, _ = await authenticate(request)
    async with state(request).db.engine.connect() as conn:
        row = await _owned(conn, user.id, request.match_info["id"])
    return web.json_response(document_tables.render(row, with_text=True))


async def delete_document(request: web.Request) -> web.Response:
    user, _ = await authenticate(request)
    async with state(request).db.engine.begin() as conn:
        row = await _owned(conn, user.id, request.match_info["id"])
        await conn.execute(delete(chunks).where(chunks.c.document_id == row["id"]))
        await conn.execute(delete(documents).where(documents.c.id == row["id"]))
        await conn.execute(delete(jobs.jobs).where(jobs.jobs.c.id == row["job_id"]))
    return web.Response(status=204)


# -- the processing job --------------------------------------------------------------------------


async def _set(st: LegacyState, document_id: str, job_id: str, **values: Any) -> int:
    async with st.db.engine.begin() as conn:
        done = await conn.execute(
            update(documents)
            .where(documents.c.id == document_id, documents.c.job_id == job_id)
            .values(updated_ms=now_ms(), **values)
        )
    return int(done.rowcount or 0)


@jobs.handler(document_jobs.KIND)
async def process_document(st: LegacyState, job: q.ClaimedJob) -> dict[str, Any]:
    document_id = str(job.args["document_id"])
    async with st.db.engine.connect() as conn:
        row = (
            (
                await conn.execute(
                    select(documents.c.user_id, documents.c.media_type, documents.c.data).where(
                        documents.c.id == document_id
                    )
                )
            )
            .mappings()
            .first()
        )
    if row is None or not await _set(st, document_id, job.id, status="processing"):
        return {"document_id": document_id, "skipped": "the document was deleted"}
    ctx = AgentContext(user_id=row["user_id"])
    try:
        done = await document_jobs.process(runner_of(st), row["media_type"], row["data"], ctx)
    except Exception as exc:
        status = document_jobs.status_after_failure(job.attempts, job.max_attempts)
        await _set(st, document_id, job.id, status=status, error=q.describe(exc))
        raise
    async with st.db.engine.begin() as conn:
        kept = await conn.execute(
            update(documents)
            .where(documents.c.id == document_id, documents.c.job_id == job.id)
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
        if kept.rowcount:
            await conn.execute(delete(chunks).where(chunks.c.document_id == document_id))
            pieces = [
                {"document_id": document_id, "idx": i, "text": t} for i, t in enumerate(done.chunks)
            ]
            await conn.execute(insert(chunks), pieces)
    return {"document_id": document_id, "chunks": len(done.chunks)}


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/documents", list_documents)
    app.router.add_post("/api/documents", upload)
    app.router.add_get("/api/documents/{id}", get_document)
    app.router.add_delete("/api/documents/{id}", delete_document)


@jobs.periodic("documents.settle")
async def settle_documents(st: LegacyState, _job: q.ClaimedJob) -> dict[str, int]:
    """Mark failed the documents whose job died with its worker on the last attempt."""
    async with st.db.engine.begin() as conn:
        done = await conn.execute(
            document_tables.fail_documents_of_dead_jobs(documents, jobs.jobs, now_ms())
        )
    return {"failed": int(done.rowcount or 0)}
