"""Tests of banyan/backends/new/functions/quizzes.py over HTTP with the real model server: replays
never
ask the model, a failing model stores nothing, racing keyed creates store one quiz, cached reads."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from banyan.backends.common.ids import user_id_for
from banyan.backends.model.server import create_app as model_app
from banyan.backends.new.app import RUNTIME, create_app
from banyan.backends.new.functions.agents import runner_of
from banyan.backends.new.runtime.engine import Runtime
from banyan.backends.new.runtime.schema import quizzes as tables
from banyan.serving import serve


@dataclass
class Running:
    http: httpx.AsyncClient
    runtime: Runtime

    def writer_calls(self) -> int:
        return int(runner_of(self.runtime).metrics().get("quiz-writer", {}).get("calls", 0))

    async def stored(self) -> int:
        async with self.runtime.engine.connect() as conn:
            count = await conn.execute(select(func.count()).select_from(tables.quizzes))
            return int(count.scalar_one())


Stack = Callable[..., AbstractAsyncContextManager[Running]]


@pytest.fixture
def stack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Stack:
    @asynccontextmanager
    async def start(**faults: Any) -> AsyncIterator[Running]:
        async with serve(model_app(**faults)) as model_url:
            monkeypatch.setenv("OPENAI_BASE_URL", model_url + "/v1")
            monkeypatch.setenv("BANYAN_LLM_RETRIES", "0")
            app = create_app(f"sqlite+aiosqlite:///{tmp_path / 'new.db'}")
            runner_of(app[RUNTIME]).backoff = 0.01
            async with serve(app) as url, httpx.AsyncClient(base_url=url, timeout=30) as http:
                yield Running(http, app[RUNTIME])

    return start


async def signup(http: httpx.AsyncClient) -> dict[str, str]:
    response = await http.post(
        "/api/auth/register", json={"email": "q@x.io", "password": "password1", "name": "N"}
    )
    return {"Authorization": f"Bearer {response.json()['token']}"}


async def studied_session(http: httpx.AsyncClient, auth: dict[str, str]) -> str:
    session = (await http.post("/api/sessions", json={"title": "Cells"}, headers=auth)).json()
    await http.post(
        f"/api/sessions/{session['id']}/messages",
        json={"role": "user", "content": "What does a mitochondrion do?"},
        headers=auth,
    )
    return str(session["id"])


async def test_replays_and_races_store_one_quiz_and_ask_the_model_once(stack: Stack) -> None:
    async with stack() as running:
        http = running.http
        auth = await signup(http)
        body = {"session_id": await studied_session(http, auth), "count": 2}
        keyed = {**auth, "Idempotency-Key": "k"}
        answers = await asyncio.gather(
            *(http.post("/api/quizzes", json=body, headers=keyed) for _ in range(3))
        )
        assert {a.status_code for a in answers} == {201}
        assert len({a.json()["id"] for a in answers}) == 1 and await running.stored() == 1
        calls = running.writer_calls()
        again = await http.post("/api/quizzes", json=body, headers=keyed)
        assert again.headers["Idempotent-Replayed"] == "true" and running.writer_calls() == calls


async def test_reads_are_cached_per_user_not_per_token(stack: Stack) -> None:
    async with stack() as running:
        http, cache = running.http, running.runtime.cache
        auth = await signup(http)
        body = {"session_id": await studied_session(http, auth), "count": 1}
        quiz = (await http.post("/api/quizzes", json=body, headers=auth)).json()
        login = await http.post(
            "/api/auth/login", json={"email": "q@x.io", "password": "password1"}
        )
        second = {"Authorization": f"Bearer {login.json()['token']}"}
        user_id = user_id_for("q@x.io")
        key = cache.key("quizzes.get", {"id": quiz["id"], "user_id": user_id}, user_id)
        assert (await http.get(f"/api/quizzes/{quiz['id']}", headers=auth)).json() == quiz
        assert cache.get(key) == (True, quiz)  # one entry for the user, whatever the token
        assert (await http.get(f"/api/quizzes/{quiz['id']}", headers=second)).json() == quiz


async def test_a_failing_model_stores_nothing(stack: Stack) -> None:
    async with stack(fail_rate=1.0) as running:
        http = running.http
        auth = await signup(http)
        body = {"session_id": await studied_session(http, auth), "count": 1}
        response = await http.post("/api/quizzes", json=body, headers=auth)
        assert response.status_code == 502 and response.json()["error"]["code"] == "upstream_failed"
        assert await running.stored() == 0
