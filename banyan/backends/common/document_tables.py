"""Document storage both backends share: the ``documents`` and ``document_chunks`` tables and the
document object of the contract.

Created by :func:`define_tables` on each backend's own ``MetaData`` (migration 3), with identical
names and columns in both stores so the data tools can copy them. ``data`` keeps the uploaded bytes
for the processing job; ``text`` is the extracted text, ``keywords`` a JSON list, ``chunks`` the
number of rows in ``document_chunks`` (``idx`` from 0).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    select,
    update,
)
from sqlalchemy.sql.dml import Update

from banyan.backends.common.clock import iso

STATUSES = ("queued", "processing", "ready", "failed")
LIST_COLUMNS = (
    "id",
    "user_id",
    "title",
    "filename",
    "media_type",
    "size",
    "status",
    "error",
    "summary",
    "keywords",
    "chunks",
    "job_id",
    "idem_hash",
    "created_ms",
    "updated_ms",
)


@dataclass(frozen=True, slots=True)
class DocumentTables:
    documents: Table
    chunks: Table


def define_tables(metadata: MetaData) -> DocumentTables:
    documents = Table(
        "documents",
        metadata,
        Column("id", String(36), primary_key=True),
        Column("user_id", String(36), nullable=False),
        Column("title", String(200), nullable=False),
        Column("filename", String(255), nullable=False),
        Column("media_type", String(100), nullable=False),
        Column("size", Integer, nullable=False),
        Column("status", String(12), nullable=False),
        Column("error", Text),
        Column("summary", Text),
        Column("keywords", Text),
        Column("chunks", Integer, nullable=False),
        Column("text", Text),
        Column("data", LargeBinary, nullable=False),
        Column("job_id", String(36), nullable=False),
        Column("idem_hash", String(64)),
        Column("created_ms", BigInteger, nullable=False),
        Column("updated_ms", BigInteger, nullable=False),
        Index("ix_documents_user_created", "user_id", "created_ms", "id"),
    )
    chunks = Table(
        "document_chunks",
        metadata,
        Column("document_id", String(36), primary_key=True),
        Column("idx", Integer, primary_key=True),
        Column("text", Text, nullable=False),
    )
    return DocumentTables(documents, chunks)


def render(row: Mapping[Any, Any], *, with_text: bool = False) -> dict[str, Any]:
    keywords = row["keywords"]
    body: dict[str, Any] = {
        "id": row["id"],
        "title": row["title"],
        "filename": row["filename"],
        "media_type": row["media_type"],
        "size": row["size"],
        "status": row["status"],
        "error": row["error"],
        "summary": row["summary"],
        "keywords": json.loads(keywords) if keywords is not None else [],
        "chunks": row["chunks"],
        "job_id": row["job_id"],
        "created_at": iso(row["created_ms"]),
        "updated_at": iso(row["updated_ms"]),
    }
    if with_text:
        body["text"] = row["text"]
    return body


def fail_documents_of_dead_jobs(documents: Table, jobs: Table, now: int) -> Update:
    """Documents whose processing job went to the dead letters without the job saying so (its
    worker died during the last attempt) become ``failed`` with the job's error."""
    dead = select(jobs.c.id).where(jobs.c.status == "dead")
    return (
        update(documents)
        .where(documents.c.status.in_(("queued", "processing")), documents.c.job_id.in_(dead))
        .values(
            status="failed",
            error="processing stopped: its job went to the dead letters",
            updated_ms=now,
        )
    )


def new_row(
    document_id: str, user_id: str, upload: Any, *, job_id: str, idem_hash: str | None, now: int
) -> dict[str, Any]:
    """The ``documents`` row of a fresh upload (``upload`` is a
    :class:`banyan.backends.common.uploads.Upload`), queued for its processing job."""
    return {
        "id": document_id,
        "user_id": user_id,
        "title": upload.title,
        "filename": upload.filename,
        "media_type": upload.media_type,
        "size": upload.size,
        "status": "queued",
        "error": None,
        "summary": None,
        "keywords": None,
        "chunks": 0,
        "text": None,
        "data": upload.data,
        "job_id": job_id,
        "idem_hash": idem_hash,
        "created_ms": now,
        "updated_ms": now,
    }
