"""Tests of banyan/backends/legacy/quizzes.py over HTTP with the real model server behind the
agents."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web
from sqlalchemy import func, select

from banyan.backends.legacy import quizzes
from banyan.backends.legacy.agents import runner_of
from banyan.backends.legacy.app import create_app
from banyan.backends.legacy.state import STATE
from banyan.backends.model.server import create_app as model_app
from banyan.serving import serve


@dataclass
class Running:
    http: httpx.AsyncClient
    app: web.Application

    def writer_calls(self) -> int:
        return int(runner_of(self.app[STATE]).metrics()["quiz-writer"]["calls"])


Stack = Callable[..., AbstractAsyncContextManager[Running]]


@pytest.fixture
def stack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Stack:
    @asynccontextmanager
    async def start(**faults: Any) -> AsyncIterator[Running]:
        async with serve(model_app(**faults)) as model_url:
            monkeypatch.setenv("OPENAI_BASE_URL", model_url + "/v1")
            monkeypatch.setenv("BANYAN_LLM_RETRIES", "0")
            app = create_app(f"sqlite+aiosqlite:///{tmp_path / 'legacy.db'}", gc_interval=60)
            runner_of(app[STATE]).backoff = 0.01
            async with serve(app) as url, httpx.AsyncClient(base_url=url, timeout=30) as http:
                yield Running(http, app)

    return start


async def signup(http: httpx.AsyncClient, email: str = "q@x.io") -> dict[str, str]:
    response = await http.post(
        "/api/auth/register", json={"email": email, "password": "password1", "name": "N"}
    )
    return {"Authorization": f"Bearer {response.json()['token']}"}


async def studied_session(http: httpx.AsyncClient, auth: dict[str, str]) -> str:
    session = (await http.post("/api/sessions", json={"title": "Cells"}, headers=auth)).json()
    for text in ("What does mitochondria do?", "It produces energy for the cell."):
        await http.post(
            f"/api/sessions/{session['id']}/messages",
            json={"role": "user", "content": text},
            headers=auth,
        )
    return str(session["id"])


async def test_quiz_from_a_session_then_an_attempt(stack: Stack) -> None:
    async with stack() as running:
        http = running.http
        auth = await signup(http)
        session_id = await studied_session(http, auth)
        created = await http.post(
            "/api/quizzes", json={"session_id": session_id, "count": 3}, headers=auth
        )
        assert created.status_code == 201, created.text
        quiz = created.json()
        assert quiz["source"] == {"kind": "session", "id": session_id} and quiz["count"] == 3
        assert all(set(q) == {"index", "question", "choices"} for q in quiz["questions"])
        assert (await http.get(f"/api/quizzes/{quiz['id']}", headers=auth)).json() == quiz
        attempt = await http.post(
            f"/api/quizzes/{quiz['id']}/attempts", json={"answers": [0, 1, 2]}, headers=auth
        )
        assert attempt.status_code == 201
        assert attempt.json()["total"] == 3 and len(attempt.json()["results"]) == 3


async def test_keyed_creates_replay_without_the_model(stack: Stack) -> None:
    async with stack() as running:
        http = running.http
        auth = await signup(http)
        session_id = await studied_session(http, auth)
        keyed = {**auth, "Idempotency-Key": "quiz-1"}
        body = {"session_id": session_id, "count": 2}
        first = await http.post("/api/quizzes", json=body, headers=keyed)
        calls = running.writer_calls()
        again = await http.post("/api/quizzes", json=body, headers=keyed)
        assert again.json() == first.json() and again.headers["Idempotent-Replayed"] == "true"
        assert running.writer_calls() == calls
        clash = await http.post("/api/quizzes", json={**body, "count": 3}, headers=keyed)
        assert clash.status_code == 409
        url = f"/api/quizzes/{first.json()['id']}/attempts"
        akey = {**auth, "Idempotency-Key": "a"}
        one = await http.post(url, json={"answers": [1, 1]}, headers=akey)
        two = await http.post(url, json={"answers": [1, 1]}, headers=akey)
        assert one.json() == two.json() and two.headers["Idempotent-Replayed"] == "true"


async def test_racing_keyed_creates_store_one_quiz(stack: Stack) -> None:
    async with stack() as running:
        http = running.http
        auth = await signup(http)
        body = {"session_id": await studied_session(http, auth), "count": 1}
        keyed = {**auth, "Idempotency-Key": "race"}
        answers = await asyncio.gather(
            *(http.post("/api/quizzes", json=body, headers=keyed) for _ in range(3))
        )
        assert {a.status_code for a in answers} == {201}
        assert len({a.json()["id"] for a in answers}) == 1
        async with running.app[STATE].db.session() as db:
            stored = await db.execute(select(func.count()).select_from(quizzes.TABLES.quizzes))
            assert stored.scalar_one() == 1


async def test_a_failing_model_stores_nothing(stack: Stack) -> None:
    async with stack(malformed_rate=1.0) as running:
        http = running.http
        auth = await signup(http)
        session_id = await studied_session(http, auth)
        response = await http.post(
            "/api/quizzes", json={"session_id": session_id, "count": 2}, headers=auth
        )
        assert response.status_code == 502 and response.json()["error"]["code"] == "upstream_failed"
        st = running.app[STATE]
        async with st.db.session() as db:
            stored = await db.execute(select(func.count()).select_from(quizzes.TABLES.quizzes))
            assert stored.scalar_one() == 0
