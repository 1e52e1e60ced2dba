"""Both stores kept in step by stamped, mirrored writes: ``banyan data verify`` finds nothing.

Both real backends (SQLite) and the deterministic model server run behind the stamping stand-in
for the proxy (``tests/backends/stamping_front.py``). A scripted population — register, login,
folders, sessions, context, messages, tutor turns over the socket and over HTTP, whiteboard edits,
snapshots and a restore, documents, quizzes and attempts, analytics, logout — is written while the
primary flips between legacy and new; writes made just before a logout are delivered after it.
Then ``banyan data verify`` compares the two stores: zero differences, times included. The same
write sent to both stores without a stamp is a difference, which is what the stamps remove.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from pycrdt import Array, Doc, Map, Text
from sqlalchemy import text

from banyan.backends.common import tokens
from banyan.backends.datatools.cli import main as data_main
from banyan.backends.datatools.stores import open_engine
from banyan.backends.datatools.verify import verify
from banyan.backends.legacy.app import create_app as legacy_app
from banyan.backends.model.server import create_app as model_app
from banyan.backends.new.app import create_app as new_app
from banyan.serving import serve
from tests.backends.stamping_front import Copy, StampingFront

PASSWORD = "correct horse battery"


@dataclass
class Stack:
    front: StampingFront
    stores: dict[str, str]


@pytest.fixture
async def stack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Stack]:
    stores = {
        "legacy": f"sqlite+aiosqlite:///{tmp_path / 'legacy.db'}",
        "new": f"sqlite+aiosqlite:///{tmp_path / 'new.db'}",
    }
    async with serve(model_app()) as model_url:
        monkeypatch.setenv("OPENAI_BASE_URL", model_url + "/v1")
        # legacy rolls analytics up every 0.3 s, new only once a minute: the stores' rollups
        # differ when verify runs, their counts do not
        legacy = legacy_app(stores["legacy"], gc_interval=0.3, whiteboard_grace=0.2)
        new = new_app(stores["new"], gc_interval=60, whiteboard_grace=0.2)
        async with (
            serve(legacy) as legacy_url,
            serve(new) as new_url,
            httpx.AsyncClient(timeout=30) as http,
        ):
            urls = {"legacy": legacy_url, "new": new_url}
            yield Stack(StampingFront(http, urls, os.environ[tokens.SECRET_ENV]), stores)


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def ok(answer: Any, status: int = 201) -> dict[str, Any]:
    response: httpx.Response = await answer
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json() if response.content else {}
    return body


async def register(front: StampingFront, email: str) -> tuple[str, str]:
    """A registration mirrored to the other store, delivered twice there; (token, user id)."""
    body = {"email": email, "password": PASSWORD, "name": "Ada"}
    first = await ok(front.write("POST", "/api/auth/register", body=body))
    again = await front.deliver_one(front_copy(front, "/api/auth/register"))
    assert again.status_code == 201 and again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == front.delivered[-2].json()  # the same body as the first delivery
    assert front.delivered[-2].json()["token"] == first["token"]  # both stores minted one token
    return first["token"], first["user"]["id"]


def front_copy(front: StampingFront, target: str) -> Copy:
    """The copy last delivered for ``target`` (to deliver it again, as a retrying queue would)."""
    answer = next(a for a in reversed(front.delivered) if a.request.url.path == target)
    request = answer.request
    headers = {k: v for k, v in request.headers.items() if k.lower() != "x-banyan-stamp"}
    return Copy(
        front.other,
        request.method,
        target,
        headers,
        request.content,
        request.headers["x-banyan-stamp"],
    )


async def sessions_and_messages(front: StampingFront, token: str) -> dict[str, str]:
    folder = await ok(front.write("POST", "/api/folders", token=token, body={"name": "Maths"}))
    spare = await ok(front.write("POST", "/api/folders", token=token, body={"name": "Spare"}))
    await ok(
        front.write("PATCH", f"/api/folders/{folder['id']}", token=token, body={"name": "Algebra"}),
        200,
    )
    made = await ok(
        front.write(
            "POST",
            "/api/sessions",
            token=token,
            body={"title": "Fractions", "folder_id": folder["id"]},
        )
    )
    other = await ok(
        front.write(
            "POST", "/api/sessions", token=token, body={"title": "Spare", "folder_id": spare["id"]}
        )
    )
    sid = made["id"]
    await ok(front.write("PATCH", f"/api/sessions/{sid}", token=token, body={"title": "Frac"}), 200)
    await ok(
        front.write(
            "PUT", f"/api/sessions/{sid}/context", token=token, body={"context": {"level": 2}}
        ),
        200,
    )
    for question in ("what is 1/2 + 1/4?", "and 2/3?"):
        await ok(
            front.write(
                "POST",
                f"/api/sessions/{sid}/messages",
                token=token,
                body={"role": "user", "content": question},
            )
        )
    return {"session": sid, "other": other["id"], "folder": folder["id"], "spare": spare["id"]}


async def tutoring_and_deletes(front: StampingFront, token: str, made: dict[str, str]) -> None:
    sid = made["session"]
    turn = await front.tutor_turn(sid, token, "explain common denominators")
    assert turn["question"]["seq"] == 3 and turn["answer"]["seq"] == 4
    await ok(
        front.write("POST", f"/api/sessions/{sid}/ask", token=token, body={"text": "why?"}), 200
    )
    await ok(front.write("DELETE", f"/api/folders/{made['spare']}", token=token), 204)
    doomed = await ok(front.write("POST", "/api/sessions", token=token, body={"title": "gone"}))
    await ok(front.write("DELETE", f"/api/sessions/{doomed['id']}", token=token), 204)


def draw(shape: str) -> Any:
    def change(doc: Doc) -> None:
        doc.get("shapes", type=Map)[shape] = {"kind": "rect", "x": 1, "y": 2, "w": 3, "h": 4}
        doc.get("order", type=Array).append(shape)
        doc.get("notes", type=Text).insert(0, f"{shape} ")

    return change


async def whiteboard(front: StampingFront, token: str) -> None:
    await front.board_edit("lesson-1", token, draw("a"))
    snap = await ok(
        front.write("POST", "/api/whiteboard/lesson-1/snapshots", token=token, body={"name": "v1"})
    )
    await front.board_edit("lesson-1", token, draw("b"))
    restored = await ok(
        front.write(
            "POST", f"/api/whiteboard/lesson-1/snapshots/{snap['id']}/restore", token=token
        ),
        200,
    )
    assert sorted(restored["doc"]["shapes"]) == ["a"]
    await front.board_edit("lesson-1", token, draw("c"))


async def documents_and_quizzes(front: StampingFront, token: str, sid: str) -> None:
    request = front.http.build_request(
        "POST",
        "http://x/",
        files={"file": ("notes.md", b"# Fractions\n\nA half is two quarters.\n" * 20)},
        data={"title": "Notes"},
    )
    upload = await ok(
        front.write(
            "POST",
            "/api/documents",
            token=token,
            content=request.read(),
            content_type=request.headers["Content-Type"],
        ),
        202,
    )
    for backend in ("legacy", "new"):
        await ready(front, backend, token, upload["id"])
    for source in ({"document_id": upload["id"]}, {"session_id": sid}):
        quiz = await ok(
            front.write("POST", "/api/quizzes", token=token, body={**source, "count": 2})
        )
        answers = {"answers": [0] * quiz["count"]}
        await ok(
            front.write("POST", f"/api/quizzes/{quiz['id']}/attempts", token=token, body=answers)
        )


async def ready(front: StampingFront, backend: str, token: str, document_id: str) -> None:
    url = front.urls[backend] + f"/api/documents/{document_id}"
    for _ in range(500):
        got = (await front.http.get(url, headers=auth(token))).json()
        if got["status"] == "ready":
            return
        assert got["status"] != "failed", got
        await asyncio.sleep(0.02)
    raise AssertionError(f"{backend} never processed document {document_id}")


async def analytics(front: StampingFront, token: str, sid: str) -> None:
    events = [
        {"name": "page.view"},
        {"name": "quiz.done", "session_id": sid, "properties": {"score": 1}},
    ]
    await ok(
        front.write("POST", "/api/analytics/events", token=token, body={"events": events}), 202
    )


async def logout_with_writes_on_their_way(front: StampingFront, token: str) -> None:
    """Sessions created, then a logout at once: the logout reaches the other store first (it is
    mirrored in every mode), the creates after it — and are accepted there."""
    for title in ("late 1", "late 2", "late 3"):
        await ok(
            front.write("POST", "/api/sessions", token=token, body={"title": title}, defer=True)
        )
    await ok(front.write("POST", "/api/auth/logout", token=token), 204)
    for delivered in await front.deliver():
        assert delivered.status_code == 201, delivered.text
    for backend in ("legacy", "new"):
        plain = await front.http.get(front.urls[backend] + "/api/sessions", headers=auth(token))
        assert plain.status_code == 401 and plain.json()["error"]["code"] == "token_revoked"


async def rollup_rows(url: str, *, wait: bool = False) -> int:
    """Rows in a store's ``analytics_rollups`` (waiting up to 10 s for the first, with ``wait``)."""
    engine = open_engine(url)
    try:
        for _ in range(500):
            async with engine.connect() as conn:
                found = int(
                    (
                        await conn.execute(text("SELECT COUNT(*) FROM analytics_rollups"))
                    ).scalar_one()
                )
            if found or not wait:
                return found
            await asyncio.sleep(0.02)
        return 0
    finally:
        await engine.dispose()


async def test_stamped_mirrored_writes_leave_no_difference(
    stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    front = stack.front
    token, _user = await register(front, "ada@example.org")
    clash = {"email": "ada@example.org", "password": "another password", "name": "Ada"}
    assert (await front.write("POST", "/api/auth/register", body=clash)).status_code == 409
    login = await ok(
        front.write(
            "POST", "/api/auth/login", body={"email": "ada@example.org", "password": PASSWORD}
        ),
        200,
    )
    assert login["user"] == (await ok(front.read("/api/auth/me", token), 200))["user"]
    made = await sessions_and_messages(front, token)
    front.flip()  # new serves
    await tutoring_and_deletes(front, token, made)
    await whiteboard(front, token)
    front.flip()  # legacy serves
    await documents_and_quizzes(front, token, made["session"])
    await analytics(front, token, made["session"])
    front.flip()  # new serves
    await front.tutor_turn(made["session"], token, "one more question")
    await logout_with_writes_on_their_way(front, token)
    assert await rollup_rows(stack.stores["legacy"], wait=True) > 0  # legacy's job folded them
    assert await rollup_rows(stack.stores["new"]) == 0  # new's has not run yet

    both = ["--legacy", stack.stores["legacy"], "--new", stack.stores["new"]]
    assert await asyncio.to_thread(data_main, ["verify", *both]) == 0
    out = capsys.readouterr().out
    assert "stores match" in out
    reports = {r.table: r for r in await verify(stack.stores["legacy"], stack.stores["new"])}
    matched = {name: r.matched for name, r in reports.items()}
    assert matched["users"] == 1 and matched["revoked_tokens"] == 1
    assert matched["study_sessions->sessions"] == 5 and matched["messages"] == 8
    assert matched["whiteboard_snapshots"] == 1 and matched["whiteboard_updates (rooms)"] == 1
    assert matched["documents"] == 1 and matched["quizzes"] == 2 and matched["quiz_attempts"] == 2
    assert matched["analytics_rollups (hourly counts)"] >= 1

    # the counterfactual: the same write to both stores without a stamp differs in its times
    for backend in ("legacy", "new"):
        fresh = await front.http.post(
            front.urls[backend] + "/api/auth/login",
            json={"email": "ada@example.org", "password": PASSWORD},
        )
        relogged = fresh.json()["token"]
        headers = {**auth(relogged), "Idempotency-Key": "unstamped"}
        made_here = await front.http.post(
            front.urls[backend] + "/api/sessions", json={"title": "raw"}, headers=headers
        )
        assert made_here.status_code == 201
        await asyncio.sleep(0.01)
    reports = {r.table: r for r in await verify(stack.stores["legacy"], stack.stores["new"])}
    (differs,) = reports["study_sessions->sessions"].differences
    assert differs.kind == "differs"
    assert set(differs.columns) == {"created_ms", "updated_ms", "expires_ms"}
