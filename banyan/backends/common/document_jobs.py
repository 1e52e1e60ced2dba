"""The document processing job, the same on both backends: extract the text, cut it into chunks,
ask the summarizer agent for a summary and keywords.

The job kind is :data:`KIND`, its id :func:`job_id` (derived from the document, so a mirrored
upload names the same job on both sides), its priority :data:`PRIORITY` (above system jobs). A
failed attempt leaves the document ``queued`` with the error while the job will retry, ``failed``
once the job is dead.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from banyan.backends.common import documents, jobs
from banyan.backends.common.agents.framework import AgentContext, AgentRunner

KIND = "documents.process"
PRIORITY = 10


def job_id(document_id: str) -> str:
    return jobs.job_id_for(f"document:{document_id}")


@dataclass(frozen=True, slots=True)
class Processed:
    text: str
    chunks: list[str]
    summary: str
    keywords: list[str]


async def process(
    runner: AgentRunner, media_type: str, data: bytes, ctx: AgentContext
) -> Processed:
    text = await asyncio.to_thread(documents.extract_text, media_type, data)
    if not text.strip():
        raise documents.ExtractionError("the document has no readable text")
    chunks = documents.chunk(text)
    answer = await runner.run("summarizer", {"text": documents.summary_input(chunks)}, ctx)
    return Processed(text, chunks, answer.output["summary"], list(answer.output["keywords"]))


def status_after_failure(attempts: int, max_attempts: int) -> str:
    return "failed" if attempts >= max_attempts else "queued"
