"""Contract: the tutor — ``POST /api/sessions/{id}/ask`` (JSON, SSE, Idempotency-Key) and
``/ws/tutor/{session_id}`` (ask/token/done/error/pong/turn frames, order, limits, refusals).

The prompt is part of the contract: the answer must equal what the model gives for the prompt
built from the session's state (asked here with the real ``openai`` client), and behind the proxy
the other backend, in the same state, must give the very same turn.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import httpx
import openai
import pytest

from banyan.backends.common.llm import DEFAULT_MODEL
from banyan.backends.common.tutor.prompt import HistoryMessage, build_messages
from banyan.backends.contract.client import PASSWORD, User, anonymous, assert_error, authed
from banyan.backends.contract.targets import Target

pytestmark = pytest.mark.asyncio(loop_scope="session")

FRAME_TIMEOUT = 10.0


async def new_session(user: User, title: str = "Fractions", **headers: str) -> dict[str, Any]:
    response = await user.client.post("/api/sessions", json={"title": title}, headers=headers)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def ask_path(session_id: str) -> str:
    return f"/api/sessions/{session_id}/ask"


def parse_sse(text: str) -> list[tuple[str, Any]]:
    events = []
    for block in text.strip().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines())
        events.append((fields["event"], json.loads(fields["data"])))
    return events


def without_times(pair: dict[str, Any]) -> dict[str, Any]:
    return {k: {f: v for f, v in m.items() if f != "created_at"} for k, m in pair.items()}


async def model_answer(target: Target, messages: list[dict[str, str]]) -> str:
    assert target.model_url is not None
    async with openai.AsyncOpenAI(base_url=target.model_url, api_key="contract") as client:
        stream = await client.chat.completions.create(
            model=DEFAULT_MODEL,
            messages=messages,  # type: ignore[arg-type]
            stream=True,
        )
        assert isinstance(stream, openai.AsyncStream)
        parts = [c.choices[0].delta.content or "" async for c in stream if c.choices]
    return "".join(parts)


# -- HTTP ----------------------------------------------------------------------------------------


async def test_ask_answers_and_stores_both_messages(target: Target, user: User) -> None:
    session = await new_session(user)
    response = await user.client.post(ask_path(session["id"]), json={"text": "  What is 1/2?  "})
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"question", "answer"}
    question, answer = body["question"], body["answer"]
    assert (question["role"], question["content"], question["seq"]) == ("user", "What is 1/2?", 1)
    assert (answer["role"], answer["seq"]) == ("assistant", 2)
    assert answer["content"] and question["session_id"] == answer["session_id"] == session["id"]
    listed = (await user.client.get(f"/api/sessions/{session['id']}/messages")).json()
    assert listed["items"] == [question, answer]
    after = (await user.client.get(f"/api/sessions/{session['id']}")).json()
    assert after["message_count"] == 2
    assert after["expires_at"] >= session["expires_at"]


async def test_answer_follows_the_prompt_contract(target: Target, user: User) -> None:
    if target.model_url is None:
        pytest.skip("the external target's model server is unknown")
    session = await new_session(user, "Photosynthesis")
    context = {"level": "beginner", "goal": "exam"}
    await user.client.put(f"/api/sessions/{session['id']}/context", json={"context": context})
    await user.client.post(
        f"/api/sessions/{session['id']}/messages", json={"role": "user", "content": "Hi"}
    )
    body = (await user.client.post(ask_path(session["id"]), json={"text": "Why green?"})).json()
    messages = build_messages(
        "Photosynthesis", context, [HistoryMessage("user", "Hi")], "Why green?"
    )
    assert body["answer"]["content"] == await model_answer(target, messages)


async def test_same_state_same_turn_on_the_other_backend(target: Target, user: User) -> None:
    if target.peer_url is None:
        pytest.skip("only behind the proxy is the other backend at hand")
    if target.shadowed:
        pytest.skip("shadow mode mirrors the user to the other backend and compares every turn")
    peer = Target("peer", target.peer_url, None)
    async with anonymous(peer) as anon:
        registered = await anon.post(
            "/api/auth/register", json={"email": user.email, "password": PASSWORD, "name": "Ada"}
        )
    assert registered.status_code == 201, registered.text
    assert registered.json()["user"]["id"] == user.id
    key = f"same-{uuid.uuid4()}"
    pairs = []
    async with authed(peer, registered.json()["token"]) as peer_client:
        for client in (user.client, peer_client):
            made = await client.post(
                "/api/sessions", json={"title": "Same"}, headers={"Idempotency-Key": key}
            )
            sid = made.json()["id"]
            await client.put(f"/api/sessions/{sid}/context", json={"context": {"n": 1}})
            asked = await client.post(
                ask_path(sid), json={"text": "Explain"}, headers={"Idempotency-Key": key}
            )
            assert asked.status_code == 200, asked.text
            pairs.append(without_times(asked.json()))
    assert pairs[0] == pairs[1]


async def test_ask_streams_server_sent_events(target: Target, user: User) -> None:
    session = await new_session(user)
    async with user.client.stream(
        "POST",
        ask_path(session["id"]),
        json={"text": "Stream it"},
        headers={"Accept": "text/event-stream"},
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        text = (await response.aread()).decode()
    events = parse_sse(text)
    kinds = [kind for kind, _ in events]
    assert kinds[-1] == "done" and set(kinds[:-1]) == {"token"} and len(kinds) > 2
    done = events[-1][1]
    assert "".join(data["text"] for _, data in events[:-1]) == done["answer"]["content"]
    listed = (await user.client.get(f"/api/sessions/{session['id']}/messages")).json()
    assert listed["items"] == [done["question"], done["answer"]]


async def test_sse_errors_before_the_stream_are_plain_json(target: Target, user: User) -> None:
    response = await user.client.post(
        ask_path(str(uuid.uuid4())), json={"text": "x"}, headers={"Accept": "text/event-stream"}
    )
    assert_error(response, 404, "not_found")


async def test_idempotent_ask_replays_without_asking_again(target: Target, user: User) -> None:
    session = await new_session(user)
    key = {"Idempotency-Key": f"ask-{uuid.uuid4()}"}
    first = await user.client.post(ask_path(session["id"]), json={"text": "Once"}, headers=key)
    assert first.status_code == 200 and "Idempotent-Replayed" not in first.headers
    again = await user.client.post(ask_path(session["id"]), json={"text": "Once"}, headers=key)
    assert again.status_code == 200
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
    streamed = await user.client.post(
        ask_path(session["id"]),
        json={"text": "Once"},
        headers={**key, "Accept": "text/event-stream"},
    )
    assert streamed.headers["Idempotent-Replayed"] == "true"
    events = parse_sse(streamed.text)
    assert events[-1] == ("done", first.json())
    assert (
        "".join(d["text"] for k, d in events if k == "token") == first.json()["answer"]["content"]
    )
    conflict = await user.client.post(ask_path(session["id"]), json={"text": "Other"}, headers=key)
    assert_error(conflict, 409, "idempotency_conflict")
    listed = (await user.client.get(f"/api/sessions/{session['id']}/messages")).json()
    assert [m["seq"] for m in listed["items"]] == [1, 2]


async def test_ask_refuses_bad_input(
    target: Target, user: User, other: User, anon: httpx.AsyncClient
) -> None:
    session = await new_session(user)
    path = ask_path(session["id"])
    assert_error(await anon.post(path, json={"text": "x"}), 401, "unauthorized")
    assert_error(
        await user.client.post(path, json={}), 400, "validation_error", "text: is required"
    )
    assert_error(
        await user.client.post(path, json={"text": "   "}),
        400,
        "validation_error",
        "text: must not be empty",
    )
    assert_error(
        await user.client.post(path, json={"text": "x" * 4001}),
        400,
        "validation_error",
        "text: must be at most 4000 characters",
    )
    assert_error(
        await user.client.post(path, json={"text": "x", "extra": 1}),
        400,
        "validation_error",
        "extra: is not a known field",
    )
    assert_error(await user.client.post(path, content=b"{nope"), 400, "invalid_json")
    assert_error(await other.client.post(path, json={"text": "x"}), 404, "not_found")
    assert_error(await user.client.post(ask_path("nope"), json={"text": "x"}), 404, "not_found")
    listed = (await user.client.get(f"/api/sessions/{session['id']}/messages")).json()
    assert listed["items"] == []


async def test_a_turn_pushes_live_subscriptions(target: Target, user: User) -> None:
    session = await new_session(user)
    async with (
        aiohttp.ClientSession() as http,
        http.ws_connect(f"{target.ws_url}/ws/live?token={user.token}") as live,
    ):
        args = {"session_id": session["id"]}
        await live.send_json(
            {"type": "subscribe", "id": "m", "query": "messages.list", "args": args}
        )
        assert (await live.receive_json(timeout=FRAME_TIMEOUT))["value"]["items"] == []
        body = (await user.client.post(ask_path(session["id"]), json={"text": "Push"})).json()
        while True:
            frame = await live.receive_json(timeout=FRAME_TIMEOUT)
            if frame["type"] == "result" and frame["value"]["items"]:
                break
        assert frame["value"]["items"] == [body["question"], body["answer"]]


# -- WebSocket ------------------------------------------------------------------------------------


@asynccontextmanager
async def tutor_ws(
    target: Target, session_id: str, token: str | None, *, header: bool = False
) -> AsyncIterator[aiohttp.ClientWebSocketResponse]:
    url = f"{target.ws_url}/ws/tutor/{session_id}"
    headers = {}
    if token and header:
        headers["Authorization"] = f"Bearer {token}"
    elif token:
        url += f"?token={token}"
    async with aiohttp.ClientSession() as http, http.ws_connect(url, headers=headers) as ws:
        yield ws


async def frame(ws: aiohttp.ClientWebSocketResponse) -> dict[str, Any]:
    body: dict[str, Any] = await ws.receive_json(timeout=FRAME_TIMEOUT)
    return body


async def until_done(ws: aiohttp.ClientWebSocketResponse) -> list[dict[str, Any]]:
    frames = []
    while True:
        frames.append(await frame(ws))
        if frames[-1]["type"] in ("done", "error"):
            return frames


async def test_ws_streams_tokens_then_done(target: Target, user: User) -> None:
    session = await new_session(user)
    async with tutor_ws(target, session["id"], user.token) as ws:
        await ws.send_json({"type": "ask", "text": "Teach me"})
        frames = await until_done(ws)
        done = frames[-1]
        assert done["type"] == "done" and done["turn"] == "t1"
        tokens = frames[:-1]
        assert tokens and all(f["type"] == "token" and f["turn"] == "t1" for f in tokens)
        assert "".join(f["text"] for f in tokens) == done["answer"]["content"]
        assert done["question"]["content"] == "Teach me"
        await ws.send_json({"type": "ask", "text": "More", "id": "mine"})
        assert (await until_done(ws))[-1]["turn"] == "mine"
    listed = (await user.client.get(f"/api/sessions/{session['id']}/messages")).json()
    assert [m["content"] for m in listed["items"]][::2] == ["Teach me", "More"]


async def test_ws_turns_are_answered_one_at_a_time_in_order(target: Target, user: User) -> None:
    session = await new_session(user)
    async with tutor_ws(target, session["id"], user.token, header=True) as ws:
        for name in ("a", "b", "c"):
            await ws.send_json({"type": "ask", "text": f"Question {name}", "id": name})
        seen: list[str] = []
        for _ in range(3):
            frames = await until_done(ws)
            turns = {f["turn"] for f in frames}
            assert len(turns) == 1, frames  # no interleaving of two turns
            assert frames[-1]["type"] == "done"
            seen.append(frames[-1]["turn"])
        assert seen == ["a", "b", "c"]
    listed = (await user.client.get(f"/api/sessions/{session['id']}/messages")).json()
    questions = [m["content"] for m in listed["items"] if m["role"] == "user"]
    assert questions == ["Question a", "Question b", "Question c"]


async def test_ws_second_connection_sees_the_turn(target: Target, user: User) -> None:
    session = await new_session(user)
    async with (
        tutor_ws(target, session["id"], user.token) as asker,
        tutor_ws(target, session["id"], user.token) as watcher,
    ):
        await watcher.send_json({"type": "ping"})
        assert await frame(watcher) == {"type": "pong"}  # both connections are open
        await asker.send_json({"type": "ask", "text": "Shared"})
        done = (await until_done(asker))[-1]
        seen = await frame(watcher)
        assert seen == {"type": "turn", "question": done["question"], "answer": done["answer"]}


async def test_ws_bad_frames_get_error_frames(target: Target, user: User) -> None:
    session = await new_session(user)
    async with tutor_ws(target, session["id"], user.token) as ws:
        await ws.send_str("{not json")
        error = await frame(ws)
        assert (error["type"], error["code"]) == ("error", "invalid_json")
        await ws.send_json({"type": "dance"})
        assert (await frame(ws))["code"] == "unknown_type"
        await ws.send_json({"type": "ask", "text": "", "id": "e"})
        error = await frame(ws)
        assert (error["code"], error["turn"]) == ("validation_error", "e")
        assert error["message"] == "text: must not be empty"
        await ws.send_json({"type": "ask", "text": 5})
        assert (await frame(ws))["message"] == "text: must be a string"
        await ws.send_json({"type": "ping"})
        assert await frame(ws) == {"type": "pong"}
        await ws.send_json({"type": "ask", "text": "Still here"})
        assert (await until_done(ws))[-1]["type"] == "done"


async def test_ws_oversize_frame_closes_1009(target: Target, user: User) -> None:
    session = await new_session(user)
    async with tutor_ws(target, session["id"], user.token) as ws:
        await ws.send_str(json.dumps({"type": "ask", "text": "x" * (70 * 1024)}))
        message = await ws.receive(timeout=FRAME_TIMEOUT)
        while message.type not in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED):
            message = await ws.receive(timeout=FRAME_TIMEOUT)
        assert ws.close_code == 1009


async def test_ws_refused_before_the_upgrade(target: Target, user: User, other: User) -> None:
    session = await new_session(user)
    cases = [
        (session["id"], None, 401),
        (session["id"], "garbage", 401),
        (str(uuid.uuid4()), user.token, 404),
        ("not-a-uuid", user.token, 404),
        (session["id"], other.token, 404),
    ]
    for session_id, token, status in cases:
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            async with tutor_ws(target, session_id, token):
                pass
        assert refused.value.status == status, (session_id, token)


async def test_ws_client_vanishing_mid_stream_stores_nothing_half(
    target: Target, user: User
) -> None:
    if target.shadowed:
        pytest.skip(
            "either outcome is the contract (the pair or nothing, by when the client leaves): "
            "the two stores may rightly end differently"
        )
    session = await new_session(user)
    async with tutor_ws(target, session["id"], user.token) as ws:
        await ws.send_json({"type": "ask", "text": "Leave early"})
        first = await frame(ws)
        assert first["type"] in ("token", "done")
    await asyncio.sleep(0.2)
    listed = (await user.client.get(f"/api/sessions/{session['id']}/messages")).json()
    assert len(listed["items"]) in (0, 2)  # the pair or nothing, never half a turn
    async with tutor_ws(target, session["id"], user.token) as ws:
        await ws.send_json({"type": "ask", "text": "Back"})
        assert (await until_done(ws))[-1]["type"] == "done"
