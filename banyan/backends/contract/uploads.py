"""Helpers of the documents and jobs contract tests: upload a file, wait for its processing job,
and a tiny hand-written PDF (one page, one line of text) that any PDF reader extracts. On a
shadow target the waits watch both backends directly first (see
:func:`banyan.backends.contract.shadow.wait_on_both`), so only settled states are compared."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx

from banyan.backends.contract.shadow import wait_on_both

SETTLED = ("ready", "failed")


def tiny_pdf(text: str) -> bytes:
    """A minimal valid PDF showing ``text`` in Helvetica (ASCII without parentheses)."""
    stream = f"BT /F1 18 Tf 72 720 Td ({text}) Tj ET".encode()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    for offset in offsets:
        out += b"%010d 00000 n \n" % offset
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    return bytes(out)


async def upload(
    client: httpx.AsyncClient,
    filename: str,
    data: bytes,
    *,
    title: str | None = None,
    content_type: str | None = None,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    part: tuple[Any, ...] = (
        (filename, data) if content_type is None else (filename, data, content_type)
    )
    form = {"title": title} if title is not None else None
    return await client.post("/api/documents", files={"file": part}, data=form, headers=headers)


async def wait_settled(
    client: httpx.AsyncClient, document_id: str, *, timeout: float = 20.0
) -> dict[str, Any]:
    """Poll the document until its processing job has settled it (ready or failed)."""
    path = f"/api/documents/{document_id}"
    await wait_on_both(client, path, lambda b: b["status"] in SETTLED, timeout=timeout)
    deadline = time.monotonic() + timeout
    while True:
        answer = await client.get(f"/api/documents/{document_id}")
        assert answer.status_code == 200, answer.text
        body: dict[str, Any] = answer.json()
        if body["status"] in SETTLED or time.monotonic() > deadline:
            if body["status"] == "ready":  # its job records the outcome just after, per store
                job = f"/api/jobs/{body['job_id']}"
                await wait_on_both(client, job, lambda j: j["status"] == "succeeded")
            return body
        await asyncio.sleep(0.05)


async def wait_job(
    client: httpx.AsyncClient, job_id: str, statuses: tuple[str, ...], *, timeout: float = 20.0
) -> dict[str, Any]:
    path = f"/api/jobs/{job_id}"
    await wait_on_both(client, path, lambda b: b["status"] in statuses, timeout=timeout)
    deadline = time.monotonic() + timeout
    while True:
        answer = await client.get(f"/api/jobs/{job_id}")
        assert answer.status_code == 200, answer.text
        body: dict[str, Any] = answer.json()
        if body["status"] in statuses or time.monotonic() > deadline:
            return body
        await asyncio.sleep(0.05)
