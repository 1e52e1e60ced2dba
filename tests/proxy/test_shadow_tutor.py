"""Tests of banyan/proxy/shadow/taps/tutor.py with the real backends: a sampled, shadowed tutor
socket leaves both stores holding the same turns, down to their times.

Real parts: the model server, legacy and new on SQLite, the proxy in shadow mode with every socket
sampled; a real aiohttp WebSocket client asks, and both stores are read directly afterwards.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import pytest

from banyan.backends.model.server import create_app as model_app
from banyan.proxy.shadow import Shadow, TutorTap, shadow_from_env
from banyan.serving import serve
from tests.proxy.conftest import real_backends_behind_proxy, tutor_session_of, tutor_turn

FLAGS = """\
version: 1
backends:
  legacy: {legacy}
  new: {new}
features:
  tutor:
    routes: ["/ws/tutor/*"]
    mode: shadow
    writes: mirror
    parity: {{sample: 100}}
  core:
    routes: ["/api/**"]
    mode: legacy
    writes: mirror
default: legacy
"""


async def stored(base_url: str, sid: str, auth: dict[str, str], count: int) -> dict[str, Any]:
    """The session and its messages on one backend, read directly once it holds ``count``
    messages (or after 20 s)."""
    async with httpx.AsyncClient(base_url=base_url, timeout=10) as direct:
        for _ in range(400):
            messages = (await direct.get(f"/api/sessions/{sid}/messages", headers=auth)).json()
            if len(messages.get("items", [])) >= count:
                break
            await asyncio.sleep(0.05)
        session = (await direct.get(f"/api/sessions/{sid}", headers=auth)).json()
    times = [(m["id"], m["role"], m["created_at"], m["content"]) for m in messages.get("items", [])]
    return {"messages": times, "updated_at": session.get("updated_at")}


async def ask_through_two_sockets(ws_url: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """A question through one socket, the next through a new one (as the web app asks): the
    two turns' ``done`` frames."""
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(ws_url) as ws:
            first = await tutor_turn(ws, "What is a fraction?")
        async with session.ws_connect(ws_url) as ws:
            second = await tutor_turn(ws, "And a decimal?")
    return first, second


def as_stored(*turns: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """What the primary's ``done`` frames say it stored, as :func:`stored` lists messages."""
    return [
        (turn[part]["id"], turn[part]["role"], turn[part]["created_at"], turn[part]["content"])
        for turn in turns
        for part in ("question", "answer")
    ]


@asynccontextmanager
async def shadowed_tutor(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    email: str,
    token_delay_ms: int = 0,
    candidate_delay_ms: int | None = None,
) -> AsyncIterator[tuple[dict[str, str], Shadow, str, dict[str, str], str]]:
    """The model server, both backends and the proxy shadowing the tutor socket; a user with a
    study session: (urls, the shadow, the socket's URL, the user's auth headers, the session).
    ``candidate_delay_ms``: new gets a model server of its own, that much slower per token."""
    async with (
        serve(model_app(token_delay_ms=token_delay_ms)) as model_url,
        serve(model_app(token_delay_ms=candidate_delay_ms or 0)) as candidate_model_url,
    ):
        monkeypatch.setenv("OPENAI_BASE_URL", model_url + "/v1")
        new_env = None
        if candidate_delay_ms is not None:
            new_env = {"OPENAI_BASE_URL": candidate_model_url + "/v1"}
        shadow = shadow_from_env(tmp_path / "flags.yaml")
        async with real_backends_behind_proxy(
            tmp_path, FLAGS, shadow=shadow, new_env=new_env
        ) as urls:
            async with httpx.AsyncClient(base_url=urls["proxy"], timeout=10) as http:
                token, auth, sid = await tutor_session_of(http, email)
            ws_url = urls["proxy"].replace("http", "ws") + f"/ws/tutor/{sid}?token={token}"
            yield urls, shadow, ws_url, auth, sid


async def test_a_shadowed_turn_is_stored_at_the_primarys_time_on_both_sides(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The candidate's copy of each turn waits for the primary's and carries its time: the same
    message ids and times, the same session time, on both stores (before, the candidate stored
    the turn at its own clock and ``banyan data verify`` found every shadowed turn different)."""
    async with shadowed_tutor(tmp_path, monkeypatch, "shadowed@example.com") as stack:
        urls, shadow, ws_url, auth, sid = stack
        async with aiohttp.ClientSession() as session, session.ws_connect(ws_url) as ws:
            first = await tutor_turn(ws, "What is a fraction?")
            await asyncio.sleep(0.05)  # the turns' times differ from each other
            second = await tutor_turn(ws, "And a decimal?")
        on_legacy = await stored(urls["legacy"], sid, auth, 4)
        on_new = await stored(urls["new"], sid, auth, 4)
        await shadow.recorder.flush()
        summary = await shadow.recorder.store.summary()
    assert on_legacy["messages"] == as_stored(first, second)
    assert on_new == on_legacy
    assert first["question"]["created_at"] != second["question"]["created_at"]
    feature = next(f for f in summary["features"] if f["feature"] == "tutor")
    assert feature["compared"] == 2 and feature["mismatched"] == 0, feature


async def test_an_ask_the_client_left_mid_stream_reaches_neither_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The candidate's copy of a turn leaves only once the primary stored it: a client that goes
    away mid-stream leaves no turn on either side."""
    slow = 10  # ms between tokens: a turn long enough to leave
    async with shadowed_tutor(tmp_path, monkeypatch, "leaver@example.com", slow) as stack:
        urls, _, ws_url, auth, sid = stack
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(ws_url) as ws:
                await tutor_turn(ws, "What is a fraction?")
                await ws.send_json({"type": "ask", "text": "Tell me a long story " * 40})
                frame = await ws.receive_json(timeout=10)
                assert frame["type"] == "token", frame  # mid-stream: leave now
        await asyncio.sleep(1.0)  # what either side would store by now, it has stored
        on_legacy = await stored(urls["legacy"], sid, auth, 2)
        on_new = await stored(urls["new"], sid, auth, 2)
    assert len(on_legacy["messages"]) == 2, on_legacy
    assert on_new == on_legacy


async def test_a_turn_the_candidate_did_not_finish_in_time_is_written_through(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A candidate that lags past the tap's wait once the client left has its socket closed
    mid-turn, which stores nothing there: the primary's turn is written through to its store
    instead, at the primary's time (before, ``banyan data verify`` found the turn on legacy only
    and every later message of the session at another ``seq``)."""
    monkeypatch.setattr(TutorTap, "converge_seconds", 0.05)  # the candidate is always too late
    slow = 20  # ms between tokens: the candidate's copy of the turn outlasts the wait
    async with shadowed_tutor(tmp_path, monkeypatch, "lagging@example.com", slow) as stack:
        urls, _, ws_url, auth, sid = stack
        first, second = await ask_through_two_sockets(ws_url)
        on_legacy = await stored(urls["legacy"], sid, auth, 4)
        on_new = await stored(urls["new"], sid, auth, 4)
    assert on_legacy["messages"] == as_stored(first, second)
    assert on_new == on_legacy


async def test_an_ask_waits_for_the_turn_still_streaming_on_the_candidate_through_another_socket(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A user leaves a socket and asks again through a new one while the candidate, slower than
    the primary, still streams the first turn: the second ask reaches the candidate once that
    turn is stored, so it reads the same session the primary read (before, it left after the
    write fence's 2 s, and the candidate answered it without the first turn in its history: a
    mismatch on the report that was only the proxy's, and a different answer in its store)."""
    # about 5.5 s a turn on the candidate: longer than the socket's and the ask's waits of 2 s
    # each, well within the wait once the client left (the turn is not cut and written through)
    monkeypatch.setattr(TutorTap, "converge_seconds", 30.0)
    async with shadowed_tutor(
        tmp_path, monkeypatch, "two-sockets@example.com", candidate_delay_ms=100
    ) as stack:
        urls, shadow, ws_url, auth, sid = stack
        first, second = await ask_through_two_sockets(ws_url)
        on_legacy = await stored(urls["legacy"], sid, auth, 4)
        on_new = await stored(urls["new"], sid, auth, 4)
        await shadow.recorder.flush()
        summary = await shadow.recorder.store.summary()
    assert on_legacy["messages"] == as_stored(first, second)
    assert on_new == on_legacy  # the same answers too
    feature = next(f for f in summary["features"] if f["feature"] == "tutor")
    assert feature["compared"] == 2 and feature["mismatched"] == 0, feature
