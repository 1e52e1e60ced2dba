"""Property tests: random JSON and garbage bytes at every endpoint of both backends: 4xx, no 5xx.

Each backend runs in-process (with the local model server for the model-backed routes) on a
loop in a background thread, one per backend for this module; hypothesis drives a synchronous
httpx client at it. Every example gets a freshly minted token, so a fuzzed logout revokes only
its own token. An answer below 400 is allowed only where the random body happened to be valid.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from banyan.backends.common import tokens
from banyan.testing import serve

EXAMPLES = settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# (method, path template, fields the body may carry). {session}/{folder} are the fuzz user's own.
ENDPOINTS: list[tuple[str, str, tuple[str, ...]]] = [
    ("POST", "/api/auth/register", ("email", "password", "name")),
    ("POST", "/api/auth/login", ("email", "password")),
    ("POST", "/api/auth/logout", ()),
    ("GET", "/api/auth/me", ()),
    ("GET", "/api/folders", ()),
    ("POST", "/api/folders", ("name",)),
    ("PATCH", "/api/folders/{folder}", ("name",)),
    ("DELETE", "/api/folders/{random}", ()),
    ("GET", "/api/sessions", ()),
    ("POST", "/api/sessions", ("title", "folder_id")),
    ("GET", "/api/sessions/{session}", ()),
    ("PATCH", "/api/sessions/{session}", ("title", "folder_id")),
    ("DELETE", "/api/sessions/{random}", ()),
    ("GET", "/api/sessions/{session}/context", ()),
    ("PUT", "/api/sessions/{session}/context", ("context",)),
    ("GET", "/api/sessions/{session}/messages", ()),
    ("POST", "/api/sessions/{session}/messages", ("role", "content")),
    ("POST", "/api/sessions/{session}/ask", ("text",)),
    ("GET", "/api/whiteboard/fuzz-room", ()),
    ("GET", "/api/whiteboard/fuzz-room/snapshots", ()),
    ("POST", "/api/whiteboard/fuzz-room/snapshots", ("name",)),
    ("POST", "/api/whiteboard/fuzz-room/snapshots/{random}/restore", ()),
    ("POST", "/api/agents/analyze", ("text",)),
    ("POST", "/api/agents/plan", ("goal", "level")),
    ("POST", "/api/agents/session-analysis", ("session_id",)),
    ("POST", "/api/agents/run", ("text", "goal")),
    ("GET", "/api/agents", ()),
    ("POST", "/api/documents", ("file", "title")),
    ("GET", "/api/documents", ()),
    ("GET", "/api/documents/{random}", ()),
    ("DELETE", "/api/documents/{random}", ()),
    ("POST", "/api/quizzes", ("session_id", "document_id", "count")),
    ("GET", "/api/quizzes/{random}", ()),
    ("POST", "/api/quizzes/{random}/attempts", ("answers",)),
    ("GET", "/api/jobs/{random}", ()),
    ("POST", "/api/analytics/events", ("events",)),
    ("GET", "/api/analytics/summary", ()),
]
BODY_METHODS = {"POST", "PUT", "PATCH"}
IGNORES_BODY = {"/api/auth/logout", "/api/whiteboard/fuzz-room/snapshots/{random}/restore"}

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


def bodies(fields: tuple[str, ...]) -> st.SearchStrategy[Any]:
    """Anything JSON, or objects built from the endpoint's own field names with random values."""
    keys = st.sampled_from(fields) | st.text(max_size=8) if fields else st.text(max_size=8)
    return json_values | st.dictionaries(keys, json_values, max_size=len(fields) + 2)


@dataclass
class Backend:
    kind: str
    base_url: str
    user_id: str
    ids: dict[str, str]
    http: httpx.Client

    def path(self, template: str, random_id: str | None = None) -> str:
        return template.format(random=random_id or str(uuid.uuid4()), **self.ids)

    def send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One request with a freshly minted token (a fuzzed logout revokes only that one)."""
        token, _ = tokens.issue(self.user_id)
        headers = {"Authorization": f"Bearer {token}"}
        return self.http.request(method, path, headers=headers, **kwargs)


class LoopThread:
    """An event loop in a daemon thread; ``run(coro)`` waits for a coroutine scheduled on it."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Any) -> Any:
        future: Future[Any] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return future.result(timeout=60)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()


@pytest.fixture(scope="module", params=["legacy", "new"])
def backend(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    monkeypatch_module: pytest.MonkeyPatch,
) -> Iterator[Backend]:
    kind: str = request.param
    factory = importlib.import_module(f"banyan.backends.{kind}.app").create_app
    model = importlib.import_module("banyan.backends.model.server")
    workdir: Path = tmp_path_factory.mktemp(f"fuzz-{kind}")
    loop = LoopThread()
    model_cm = serve(model.create_app())
    model_url = loop.run(model_cm.__aenter__())
    monkeypatch_module.setenv("OPENAI_BASE_URL", model_url + "/v1")
    monkeypatch_module.setenv("BANYAN_LLM_RETRIES", "0")

    async def build() -> Any:  # the app is created on the loop that serves it
        return factory(f"sqlite+aiosqlite:///{workdir / 'fuzz.db'}")

    app = loop.run(build())
    app_cm = serve(app)
    base_url = loop.run(app_cm.__aenter__())
    try:
        with httpx.Client(base_url=base_url, timeout=30.0) as anon:
            registered = anon.post(
                "/api/auth/register",
                json={
                    "email": f"fuzz-{uuid.uuid4().hex[:8]}@example.com",
                    "password": "p" * 12,
                    "name": "Fuzz",
                },
            )
            assert registered.status_code == 201, registered.text
            auth = {"Authorization": f"Bearer {registered.json()['token']}"}
            folder = anon.post("/api/folders", json={"name": "f"}, headers=auth).json()
            session = anon.post("/api/sessions", json={"title": "s"}, headers=auth).json()
            yield Backend(
                kind,
                base_url,
                registered.json()["user"]["id"],
                {"folder": folder["id"], "session": session["id"]},
                anon,
            )
    finally:
        loop.run(app_cm.__aexit__(None, None, None))
        loop.run(model_cm.__aexit__(None, None, None))
        loop.close()


@pytest.fixture(scope="module")
def monkeypatch_module() -> Iterator[pytest.MonkeyPatch]:
    with pytest.MonkeyPatch.context() as patch:
        yield patch


def check(response: httpx.Response, *, must_fail: bool) -> None:
    """Never a 5xx; every error is the contract's JSON body; ``must_fail`` demands a 4xx."""
    assert response.status_code < 500, (response.status_code, response.text[:300])
    if must_fail:
        assert 400 <= response.status_code < 500, (response.status_code, response.text[:300])
    if response.status_code >= 400:
        body = response.json()
        assert set(body) == {"error"}, body
        assert isinstance(body["error"]["code"], str) and body["error"]["code"], body
        assert isinstance(body["error"]["message"], str), body


def endpoint_id(endpoint: tuple[str, str, tuple[str, ...]]) -> str:
    return f"{endpoint[0]} {endpoint[1]}"


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=endpoint_id)
def test_random_json_bodies(backend: Backend, endpoint: tuple[str, str, tuple[str, ...]]) -> None:
    method, template, fields = endpoint

    @EXAMPLES
    @given(body=bodies(fields))
    def run(body: Any) -> None:
        response = backend.send(method, backend.path(template), content=json.dumps(body).encode())
        reads_body = method in BODY_METHODS and template not in IGNORES_BODY
        check(response, must_fail=reads_body and not isinstance(body, dict))

    run()


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=endpoint_id)
def test_garbage_bytes(backend: Backend, endpoint: tuple[str, str, tuple[str, ...]]) -> None:
    method, template, _ = endpoint

    @EXAMPLES
    @given(raw=st.binary(max_size=200))
    def run(raw: bytes) -> None:
        response = backend.send(method, backend.path(template), content=raw)
        is_object = False
        with contextlib.suppress(ValueError, UnicodeDecodeError):
            is_object = isinstance(json.loads(raw), dict)
        reads_body = method in BODY_METHODS and template not in IGNORES_BODY
        check(response, must_fail=reads_body and not is_object)

    run()


@pytest.mark.parametrize("endpoint", [e for e in ENDPOINTS if "{" in e[1]], ids=endpoint_id)
def test_random_path_ids(backend: Backend, endpoint: tuple[str, str, tuple[str, ...]]) -> None:
    method, template, _ = endpoint
    # "." and ".." are not ids: URL normalisation removes them, leaving another endpoint's path
    segment = st.text(
        st.characters(min_codepoint=32, max_codepoint=0x2FF), min_size=1, max_size=40
    ).filter(lambda text: text not in (".", ".."))

    @EXAMPLES
    @given(random_id=segment | st.uuids().map(str))
    def run(random_id: str) -> None:
        path = template.replace("{folder}", "{random}").replace("{session}", "{random}")
        response = backend.send(method, backend.path(path, quote(random_id, safe="")), json={})
        check(response, must_fail=True)

    run()
