"""Tests of legacy documents (banyan/backends/legacy/documents.py) beyond the contract suite: a
document
deleted while its job runs stays deleted, and its job ends without writing anything back; the
document of a job that died with its worker settles as failed."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
import pytest
from aiohttp import web

from banyan.backends.legacy.app import create_app
from banyan.backends.legacy.documents import settle_documents
from banyan.backends.legacy.state import STATE
from banyan.backends.model.server import create_app as model_app
from banyan.serving import serve


async def test_a_document_deleted_mid_job_stays_deleted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    await deleted_mid_job(create_app, tmp_path, monkeypatch)


async def deleted_mid_job(
    factory: Callable[[str], web.Application], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Shared by the legacy and new tests: upload against a slow model, delete while processing."""
    async with serve(model_app(latency_ms=400)) as model_url:
        monkeypatch.setenv("OPENAI_BASE_URL", model_url + "/v1")
        app = factory(f"sqlite+aiosqlite:///{tmp_path / 'docs.db'}")
        async with serve(app) as url, httpx.AsyncClient(base_url=url, timeout=10) as client:
            sent = {"email": "del@example.com", "password": "password-1", "name": "D"}
            token = (await client.post("/api/auth/register", json=sent)).json()["token"]
            client.headers["Authorization"] = f"Bearer {token}"
            files = {"file": ("x.txt", b"Short lived.")}
            document = (await client.post("/api/documents", files=files)).json()
            path = f"/api/documents/{document['id']}"
            for _ in range(100):
                if (await client.get(path)).json()["status"] == "processing":
                    break
                await asyncio.sleep(0.02)
            assert (await client.delete(path)).status_code == 204
            await asyncio.sleep(0.6)  # the summary arrives after the delete
            assert (await client.get(path)).status_code == 404
            assert (await client.get("/api/documents")).json()["items"] == []
            assert (await client.get(f"/api/jobs/{document['job_id']}")).status_code == 404


async def test_a_document_of_a_dead_job_settles_as_failed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def settle(app: web.Application) -> None:
        assert await settle_documents(app[STATE], None) == {"failed": 1}  # type: ignore[arg-type]

    await dead_job_settles(create_app, settle, tmp_path, monkeypatch)


async def dead_job_settles(
    factory: Callable[[str], web.Application],
    settle: Callable[[web.Application], Awaitable[None]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Shared by the legacy and new tests: a job buried by the tick (its worker died on the last
    attempt) leaves its document ``failed`` once the settle job ran, not ``processing`` forever."""
    db = tmp_path / "settle.db"
    async with serve(model_app(latency_ms=5000)) as model_url:
        monkeypatch.setenv("OPENAI_BASE_URL", model_url + "/v1")
        app = factory(f"sqlite+aiosqlite:///{db}")
        async with serve(app) as url, httpx.AsyncClient(base_url=url, timeout=10) as client:
            sent = {"email": "settle@example.com", "password": "password-1", "name": "S"}
            token = (await client.post("/api/auth/register", json=sent)).json()["token"]
            client.headers["Authorization"] = f"Bearer {token}"
            files = {"file": ("x.txt", b"Never summarised.")}
            document = (await client.post("/api/documents", files=files)).json()
            with sqlite3.connect(db) as con:  # what the tick does to a job whose worker died
                con.execute("UPDATE jobs SET status='dead' WHERE id=?", (document["job_id"],))
                con.execute(
                    "UPDATE documents SET status='processing' WHERE id=?", (document["id"],)
                )
            await settle(app)
            got = (await client.get(f"/api/documents/{document['id']}")).json()
            assert got["status"] == "failed" and "dead letters" in got["error"]
