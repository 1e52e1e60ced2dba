"""Hostile socket frames under shadow (issue 15): the taps that read frames to compare them
(banyan/parity/ws_capture.py, banyan/proxy/turn_mirror.py) must never let a frame end the user's
socket. A frame of 100,000 ``[`` once raised ``RecursionError`` inside the tap, and the proxy closed
the client's socket with 1001 instead of passing the backend's ``invalid_json`` answer on."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from banyan.backends.contract.client import register
from banyan.backends.contract.shadow import shadow_flags
from banyan.backends.contract.targets import Target, serve_backend, sqlite_url
from banyan.parity.store import ParityRecorder, ParityStore
from banyan.parity.ws_capture import LiveAnswers
from banyan.proxy.app import create_app
from banyan.proxy.shadow import Shadow
from banyan.serving import serve

DEEP = "[" * 60_000  # under the live socket's 64 KiB frame limit


@pytest.fixture
async def proxy(tmp_path: Path) -> AsyncIterator[str]:
    async with (
        serve_backend("legacy", sqlite_url(tmp_path, "legacy")) as legacy,
        serve_backend("new", sqlite_url(tmp_path, "new")) as new,
    ):
        flags = tmp_path / "flags.yaml"
        flags.write_text(shadow_flags(legacy, new, "legacy"))
        shadow = Shadow(ParityRecorder(ParityStore(sqlite_url(tmp_path, "parity"))))
        app = create_app(flags, access_log=False, health_interval=0.5, shadow=shadow)
        async with serve(app) as url:
            yield url


async def next_text(ws: aiohttp.ClientWebSocketResponse) -> dict[str, object]:
    message = await ws.receive(timeout=10)
    assert message.type == aiohttp.WSMsgType.TEXT, (message.type, message.data, ws.close_code)
    frame = json.loads(message.data)
    assert isinstance(frame, dict)
    return frame


async def test_a_deeply_nested_live_frame_gets_the_backends_answer_and_the_socket_lives(
    proxy: str,
) -> None:
    user = await register(Target("proxy", proxy, "legacy", via_proxy=True))
    await user.client.aclose()
    url = proxy.replace("http", "ws", 1) + f"/ws/live?token={user.token}"
    async with aiohttp.ClientSession() as session, session.ws_connect(url) as ws:
        await ws.send_str(DEEP)
        refused = await next_text(ws)
        assert refused["type"] == "error" and refused["code"] == "invalid_json", refused
        await ws.send_str(json.dumps({"type": "subscribe", "id": "f", "query": "folders.list"}))
        answer = await next_text(ws)
        assert answer["type"] == "result" and answer["id"] == "f", answer
        assert not ws.closed


async def test_a_tap_that_fails_stops_comparing_and_the_socket_goes_on(
    proxy: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An injected fault: whatever a tap raises, the bridge logs it, stops feeding that tap and
    keeps relaying (banyan/proxy/websocket.py)."""

    def broken(self: LiveAnswers, raw: str) -> str | None:
        raise RuntimeError("injected tap failure")

    monkeypatch.setattr(LiveAnswers, "sent", broken)
    user = await register(Target("proxy", proxy, "legacy", via_proxy=True))
    await user.client.aclose()
    url = proxy.replace("http", "ws", 1) + f"/ws/live?token={user.token}"
    async with aiohttp.ClientSession() as session, session.ws_connect(url) as ws:
        for n in range(2):
            await ws.send_str(
                json.dumps({"type": "subscribe", "id": f"f{n}", "query": "folders.list"})
            )
            answer = await next_text(ws)
            assert answer["type"] == "result" and answer["id"] == f"f{n}", answer
