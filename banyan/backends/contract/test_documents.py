"""Contract: documents — multipart upload (202 and a processing job), the job's result (text,
chunks, summary and keywords from the summarizer agent), paged list, get, delete, idempotent
uploads, and every refusal (400, 401, 404, 409, 413, 415)."""

from __future__ import annotations

import httpx
import pytest

from banyan.backends.common import documents
from banyan.backends.common.agents import catalog
from banyan.backends.common.llm import DEFAULT_MODEL, LLM, LLMSettings
from banyan.backends.contract.client import User, assert_error
from banyan.backends.contract.targets import Target
from banyan.backends.contract.uploads import tiny_pdf, upload, wait_settled

pytestmark = pytest.mark.asyncio(loop_scope="session")

NOTES = (
    b"# Cells\n\nCells are the basic unit of life. They divide by **mitosis**.\n\n"
    b"- Plant cells have chloroplasts.\n- Animal cells do not.\n"
)
FIELDS = {
    "id",
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
    "created_at",
    "updated_at",
}


async def summarized(target: Target, text: str) -> dict[str, object]:
    """What the summarizer agent's contract prompt gets from the model, asked directly."""
    assert target.model_url is not None
    settings = LLMSettings(base_url=target.model_url, api_key="contract", model=DEFAULT_MODEL)
    agent = catalog.SUMMARIZER
    inputs = {"text": documents.summary_input(documents.chunk(text))}
    async with LLM(settings) as llm:
        output, _ = await llm.complete_json(
            agent.build_messages(inputs), agent.output_schema, name=agent.name
        )
    return output


async def test_upload_is_processed_in_the_background(target: Target, user: User) -> None:
    answer = await upload(user.client, "cells.md", NOTES)
    assert answer.status_code == 202, answer.text
    body = answer.json()
    assert set(body) == FIELDS
    assert body["status"] == "queued" and body["title"] == "cells.md"
    assert (body["filename"], body["media_type"], body["size"]) == (
        "cells.md",
        "text/markdown",
        len(NOTES),
    )
    assert body["summary"] is None and body["keywords"] == [] and body["chunks"] == 0
    done = await wait_settled(user.client, body["id"])
    assert done["status"] == "ready", done
    expected_text = documents.extract_text("text/markdown", NOTES)
    assert done["text"] == expected_text and "**" not in done["text"]
    assert done["chunks"] == len(documents.chunk(expected_text)) and done["error"] is None
    assert done["summary"] and done["keywords"] and done["job_id"] == body["job_id"]
    if target.model_url is not None:
        expected = await summarized(target, expected_text)
        assert (done["summary"], done["keywords"]) == (expected["summary"], expected["keywords"])
    job = await user.client.get(f"/api/jobs/{body['job_id']}")
    assert job.status_code == 200 and job.json()["status"] == "succeeded"
    assert job.json()["result"] == {"document_id": body["id"], "chunks": done["chunks"]}


async def test_pdf_and_plain_text(user: User) -> None:
    pdf = await upload(user.client, "cells.pdf", tiny_pdf("Mitochondria release energy."))
    plain = await upload(
        user.client,
        "notes.txt",
        b"Osmosis moves water.",
        title="  Water  ",
        content_type="text/plain",
    )
    assert pdf.status_code == plain.status_code == 202, (pdf.text, plain.text)
    assert pdf.json()["media_type"] == "application/pdf"
    assert plain.json()["title"] == "Water"
    read = await wait_settled(user.client, pdf.json()["id"])
    assert read["status"] == "ready" and read["text"] == "Mitochondria release energy."
    assert (await wait_settled(user.client, plain.json()["id"]))["text"] == "Osmosis moves water."


async def test_list_is_paged_newest_first_without_text(
    target: Target, user: User, other: User
) -> None:
    made = []
    for n in range(3):
        answer = await upload(user.client, f"n{n}.txt", f"Note number {n}.".encode())
        made.append(answer.json()["id"])
    await upload(other.client, "theirs.txt", b"Not yours.")
    for document_id in made if target.shadowed else ():  # compare settled lists, not job clocks
        await wait_settled(user.client, document_id)
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": "2", **({"cursor": cursor} if cursor else {})}
        page = await user.client.get("/api/documents", params=params)
        assert page.status_code == 200, page.text
        body = page.json()
        assert all(set(item) == FIELDS for item in body["items"])
        seen += [item["id"] for item in body["items"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen[:3] == made[::-1]
    assert_error(await user.client.get("/api/documents?limit=0"), 400, "validation_error")
    assert_error(await user.client.get("/api/documents?cursor=%%%"), 400, "validation_error")


async def test_get_and_delete(user: User, other: User) -> None:
    document = (await upload(user.client, "gone.txt", b"Soon deleted.")).json()
    path = f"/api/documents/{document['id']}"
    assert_error(await other.client.get(path), 404, "not_found")
    assert_error(await other.client.delete(path), 404, "not_found")
    for bad in ("nope", "00000000-0000-4000-8000-000000000000"):
        assert_error(await user.client.get(f"/api/documents/{bad}"), 404, "not_found")
        assert_error(await user.client.delete(f"/api/documents/{bad}"), 404, "not_found")
    await wait_settled(user.client, document["id"])
    assert (await user.client.delete(path)).status_code == 204
    assert_error(await user.client.get(path), 404, "not_found")
    assert_error(await user.client.delete(path), 404, "not_found")
    assert_error(await user.client.get(f"/api/jobs/{document['job_id']}"), 404, "not_found")
    listed = (await user.client.get("/api/documents")).json()["items"]
    assert document["id"] not in [item["id"] for item in listed]


async def test_idempotent_upload(target: Target, user: User) -> None:
    key = {"Idempotency-Key": "upload-1"}
    first = await upload(user.client, "k.txt", b"Keyed upload.", headers=key)
    if target.shadowed:  # a replay answers the document as it is now: each store's job clock
        await wait_settled(user.client, first.json()["id"])
    again = await upload(user.client, "k.txt", b"Keyed upload.", headers=key)
    assert first.status_code == again.status_code == 202
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert again.json()["id"] == first.json()["id"]
    assert again.json()["job_id"] == first.json()["job_id"]
    changed = await upload(user.client, "k.txt", b"Another body.", headers=key)
    assert_error(changed, 409, "idempotency_conflict")
    await wait_settled(user.client, first.json()["id"])
    assert (await user.client.delete(f"/api/documents/{first.json()['id']}")).status_code == 204
    reborn = await upload(user.client, "k.txt", b"Keyed upload.", headers=key)
    assert reborn.status_code == 202 and "Idempotent-Replayed" not in reborn.headers
    assert reborn.json()["id"] == first.json()["id"]
    assert (await wait_settled(user.client, reborn.json()["id"]))["status"] == "ready"


async def test_bad_uploads_are_refused(user: User) -> None:
    client = user.client
    as_json = await client.post("/api/documents", json={"file": "x"})
    assert_error(as_json, 400, "validation_error", "body: must be multipart/form-data")
    no_file = await client.post("/api/documents", files={"title": (None, "t")})
    assert_error(no_file, 400, "validation_error", "file: is required")
    extra = await client.post(
        "/api/documents", files={"file": ("a.txt", b"x"), "colour": (None, "red")}
    )
    assert_error(extra, 400, "validation_error", "colour: is not a known field")
    empty = await upload(client, "a.txt", b"")
    assert_error(empty, 400, "validation_error", "file: must not be empty")
    long_title = await upload(client, "a.txt", b"x", title="t" * 201)
    assert_error(long_title, 400, "validation_error", "title: must be at most 200 characters")
    blank_title = await upload(client, "a.txt", b"x", title=" ")
    assert_error(blank_title, 400, "validation_error", "title: must not be empty")
    exe = await upload(client, "tool.exe", b"MZ\x90\x00", content_type="application/octet-stream")
    assert_error(exe, 415, "unsupported_media_type")
    huge = await upload(client, "big.txt", b"a" * (documents.MAX_UPLOAD_BYTES + 1))
    assert_error(huge, 413, "payload_too_large")
    assert (await client.get("/api/documents")).json()["items"] == []


async def test_documents_need_a_token(anon: httpx.AsyncClient) -> None:
    some = "00000000-0000-4000-8000-000000000000"
    assert_error(await anon.get("/api/documents"), 401, "unauthorized")
    assert_error(await anon.get(f"/api/documents/{some}"), 401, "unauthorized")
    assert_error(await anon.delete(f"/api/documents/{some}"), 401, "unauthorized")
    sent = await anon.post("/api/documents", files={"file": ("a.txt", b"x")})
    assert_error(sent, 401, "unauthorized")
