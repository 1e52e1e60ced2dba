"""Tests for banyan/backends/common/tutor: the WS protocol and the HTTP answer, over real sockets.

The turn runner here stands in for a backend's (which stores messages and calls the model): it
streams the question's words back, and fails on purpose for the words ``fail`` and ``failmid``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import httpx
import pytest
from aiohttp import web

from banyan import stamps
from banyan.backends.common import clock, tokens
from banyan.backends.common.errors import UpstreamFailed, error_middleware
from banyan.backends.common.tutor.events import Done, Token, TurnEvent, answer_http
from banyan.backends.common.tutor.prompt import HISTORY_TURNS, HistoryMessage, build_messages
from banyan.backends.common.tutor.socket import MAX_FRAME_BYTES, TutorHub, serve_tutor
from banyan.serving import serve


class Recorder:
    def __init__(self) -> None:
        self.cancelled = 0
        self.started = asyncio.Event()
        self.times: list[int] = []  # the clock each turn ran at

    async def run(self, user: str, session: str, text: str) -> AsyncIterator[TurnEvent]:
        self.times.append(clock.now_ms())
        if text == "fail":
            raise UpstreamFailed("model is down")
        try:
            for i, word in enumerate(text.split()):
                self.started.set()
                if word == "failmid":
                    raise UpstreamFailed("model dropped the stream")
                if word == "slow":
                    await asyncio.sleep(30)
                yield Token(("" if i == 0 else " ") + word)
                await asyncio.sleep(0)
            yield Done({"role": "user", "content": text}, {"role": "assistant", "content": text})
        except asyncio.CancelledError:
            self.cancelled += 1
            raise


@pytest.fixture
async def tutor() -> AsyncIterator[tuple[str, Recorder, TutorHub]]:
    recorder, hub = Recorder(), TutorHub()

    async def ws_handler(request: web.Request) -> web.StreamResponse:
        return await serve_tutor(
            request,
            user_id="u",
            session_id=request.match_info["sid"],
            runner=recorder.run,
            hub=hub,
        )

    async def ask_handler(request: web.Request) -> web.StreamResponse:
        text = (await request.json())["text"]
        return await answer_http(request, recorder.run("u", "s", text))

    app = web.Application(middlewares=[error_middleware])
    app.router.add_get("/ws/tutor/{sid}", ws_handler)
    app.router.add_post("/ask", ask_handler)
    async with serve(app) as url:
        yield url, recorder, hub


async def collect_turn(ws: aiohttp.ClientWebSocketResponse) -> list[dict[str, Any]]:
    frames = []
    while True:
        frame = await asyncio.wait_for(ws.receive_json(), 5)
        frames.append(frame)
        if frame["type"] in ("done", "error"):
            return frames


async def test_turns_stream_tokens_in_order(tutor: tuple[str, Recorder, TutorHub]) -> None:
    url, _, _ = tutor
    async with aiohttp.ClientSession() as session, session.ws_connect(url + "/ws/tutor/s1") as ws:
        await ws.send_json({"type": "ask", "text": "what is a fraction"})
        await ws.send_json({"type": "ask", "text": "and a ratio", "id": "mine"})
        first, second = await collect_turn(ws), await collect_turn(ws)
    assert [f["text"] for f in first if f["type"] == "token"] == ["what", " is", " a", " fraction"]
    assert first[-1]["type"] == "done" and first[-1]["turn"] == "t1"
    assert first[-1]["answer"]["content"] == "what is a fraction"
    assert {f["turn"] for f in second} == {"mine"}


async def test_bad_frames_get_error_frames_and_the_socket_lives(
    tutor: tuple[str, Recorder, TutorHub],
) -> None:
    url, _, _ = tutor
    cases = [
        ("{nope", "invalid_json"),
        ("[1]", "validation_error"),
        (json.dumps({"type": "shout"}), "unknown_type"),
        (json.dumps({"type": "ask"}), "validation_error"),
        (json.dumps({"type": "ask", "text": "  "}), "validation_error"),
        (json.dumps({"type": "ask", "text": "x" * 5000}), "validation_error"),
        (json.dumps({"type": "ask", "text": "x", "id": 7}), "validation_error"),
        (json.dumps({"type": "ask", "text": "fail"}), "upstream_failed"),
        (json.dumps({"type": "ask", "text": "ok failmid"}), "upstream_failed"),
    ]
    async with aiohttp.ClientSession() as session, session.ws_connect(url + "/ws/tutor/s2") as ws:
        for raw, code in cases:
            await ws.send_str(raw)
            frames = await collect_turn(ws)
            assert frames[-1]["type"] == "error" and frames[-1]["code"] == code, raw
        await ws.send_bytes(b"\x00")
        assert (await ws.receive_json())["code"] == "validation_error"
        await ws.send_json({"type": "ping"})
        assert await ws.receive_json() == {"type": "pong"}


async def test_a_stamped_ask_runs_its_turn_at_the_stamps_time(
    tutor: tuple[str, Recorder, TutorHub],
) -> None:
    """A shadow copy of a turn carries the primary's time (banyan.stamps, method ASK, bound to
    the socket's path and the turn id): the turn runs at that time; a stamp made for another
    turn, another socket or with another secret is refused and the turn is not run."""
    url, recorder, _ = tutor
    at = clock.wall_ms() - 5_000  # a primary stamp: within 10 min of the reader

    def stamp(path: str, turn: str, secret: str | None = None) -> str:
        return stamps.make_stamp(
            secret=secret or tokens.secret(), method=stamps.ASK, target=path, key=turn, ms=at
        )

    async with aiohttp.ClientSession() as session, session.ws_connect(url + "/ws/tutor/s9") as ws:
        await ws.send_json({"type": "ask", "text": "a b", "stamp": stamp("/ws/tutor/s9", "t1")})
        assert (await collect_turn(ws))[-1]["type"] == "done"
        refused = [
            stamp("/ws/tutor/s9", "t1"),  # this is t2
            stamp("/ws/tutor/other", "t3"),
            stamp("/ws/tutor/s9", "t4", secret="another-secret-of-enough-length-0123456789"),
            "v1.not-a-stamp",
        ]
        for n, bad in enumerate(refused, start=2):
            await ws.send_json({"type": "ask", "text": "c", "stamp": bad})
            frames = await collect_turn(ws)
            assert frames == [frames[-1]] and frames[-1]["code"] == "invalid_stamp", bad
            assert frames[-1]["turn"] == f"t{n}"
        await ws.send_json({"type": "ask", "text": "d", "stamp": 7})
        assert (await collect_turn(ws))[-1]["code"] == "validation_error"
        await ws.send_json({"type": "ask", "text": "unstamped"})
        assert (await collect_turn(ws))[-1]["type"] == "done"
    assert recorder.times[0] == at and len(recorder.times) == 2
    assert recorder.times[1] >= at + 5_000  # its own clock again


async def test_oversize_frame_closes_with_1009(tutor: tuple[str, Recorder, TutorHub]) -> None:
    url, _, _ = tutor
    async with aiohttp.ClientSession() as session, session.ws_connect(url + "/ws/tutor/s3") as ws:
        await ws.send_str("x" * (MAX_FRAME_BYTES + 10))
        message = await ws.receive()
        assert message.type == aiohttp.WSMsgType.CLOSE and message.data == 1009


async def test_second_connection_sees_the_others_turns(
    tutor: tuple[str, Recorder, TutorHub],
) -> None:
    url, _, hub = tutor
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(url + "/ws/tutor/s4") as a,
        session.ws_connect(url + "/ws/tutor/s4") as b,
    ):
        await a.send_json({"type": "ping"})
        await a.receive_json()
        await b.send_json({"type": "ping"})
        await b.receive_json()
        assert hub.connections("s4") == 2
        await a.send_json({"type": "ask", "text": "shared question"})
        await collect_turn(a)
        seen = await asyncio.wait_for(b.receive_json(), 5)
        assert seen["type"] == "turn" and seen["question"]["content"] == "shared question"
    for _ in range(50):
        if hub.connections("s4") == 0:
            break
        await asyncio.sleep(0.02)
    assert hub.connections("s4") == 0


async def test_vanishing_client_cancels_the_running_turn(
    tutor: tuple[str, Recorder, TutorHub],
) -> None:
    url, recorder, hub = tutor
    async with aiohttp.ClientSession() as session:
        ws = await session.ws_connect(url + "/ws/tutor/s5")
        await ws.send_json({"type": "ask", "text": "go slow please"})
        await asyncio.wait_for(recorder.started.wait(), 5)
        await ws.close()
    for _ in range(100):
        if recorder.cancelled and hub.connections("s5") == 0:
            break
        await asyncio.sleep(0.02)
    assert recorder.cancelled == 1 and hub.connections("s5") == 0


async def test_http_answer_json_and_sse(tutor: tuple[str, Recorder, TutorHub]) -> None:
    url, _, _ = tutor
    async with httpx.AsyncClient(base_url=url) as client:
        plain = await client.post("/ask", json={"text": "two words"})
        assert plain.status_code == 200
        assert plain.json()["answer"]["content"] == "two words"
        failed = await client.post("/ask", json={"text": "fail"})
        assert failed.status_code == 502 and failed.json()["error"]["code"] == "upstream_failed"
        headers = {"Accept": "text/event-stream"}
        async with client.stream("POST", "/ask", json={"text": "a b c"}, headers=headers) as sse:
            assert sse.headers["content-type"].startswith("text/event-stream")
            body = "".join([chunk async for chunk in sse.aiter_text()])
        events = [block.split("\n") for block in body.strip().split("\n\n")]
        assert [e[0] for e in events] == ["event: token"] * 3 + ["event: done"]
        assert json.loads(events[1][1][len("data: ") :]) == {"text": " b"}
        mid = await client.post("/ask", json={"text": "ok failmid"}, headers=headers)
        assert "event: error" in mid.text and "upstream_failed" in mid.text
        early = await client.post("/ask", json={"text": "fail"}, headers=headers)
        assert early.status_code == 502


def test_prompt_is_deterministic_and_bounded() -> None:
    history = [HistoryMessage("user" if i % 2 else "assistant", f"m{i}") for i in range(30)]
    messages = build_messages("Fractions", {"b": 1, "a": [1, 2]}, history, "  why?  ")
    assert messages[0]["role"] == "system"
    assert messages[0]["content"].endswith('Session: Fractions\nContext: {"a":[1,2],"b":1}')
    assert len(messages) == HISTORY_TURNS + 2
    assert messages[1]["content"] == "m10" and messages[-1] == {"role": "user", "content": "why?"}
    assert "Context" not in build_messages("T", {}, [], "q")[0]["content"]
