"""Tests of banyan/proxy/turn_mirror.py: tutor turns answered over the WebSocket by new reach
legacy.

Real parts throughout: the model server, both backends on SQLite, the proxy with its durable mirror
queue; a real aiohttp WebSocket client asks, and legacy is read directly afterwards.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import jwt
import pytest
from aiohttp import WSMessage, WSMsgType

from banyan.backends.common.ids import turn_key
from banyan.backends.model.server import create_app as model_app
from banyan.isotime import iso_ms
from banyan.proxy.shadow import shadow_from_env
from banyan.proxy.stamping import Stamper, WriteStamp
from banyan.proxy.turn_mirror import TurnMirrorTap, credentials, tutor_session
from banyan.serving import serve
from tests.proxy.conftest import (
    real_backends_behind_proxy,
    stored_messages,
    turn_messages,
    tutor_session_of,
    tutor_turn,
)

FLAGS = """\
version: 1
backends:
  legacy: {legacy}
  new: {new}
features:
  tutor:
    routes: ["/api/sessions/*/ask", "/ws/tutor/*"]
    mode: new
    writes: mirror
  core:
    routes: ["/api/**"]
    mode: new
    writes: mirror
default: legacy
"""


@pytest.fixture
async def stack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[dict[str, str]]:
    async with serve(model_app()) as model_url:
        monkeypatch.setenv("OPENAI_BASE_URL", model_url + "/v1")
        async with real_backends_behind_proxy(tmp_path, FLAGS) as urls:
            yield urls


async def test_turns_over_the_socket_reach_legacy_in_order(stack: dict[str, str]) -> None:
    async with httpx.AsyncClient(base_url=stack["proxy"], timeout=10) as http:
        token, auth, sid = await tutor_session_of(http, "turns@example.com")
        ws_url = stack["proxy"].replace("http", "ws") + f"/ws/tutor/{sid}?token={token}"
        async with aiohttp.ClientSession() as session, session.ws_connect(ws_url) as ws:
            first = await tutor_turn(ws, "What is a fraction?")
            second = await tutor_turn(ws, "And a decimal?")
    on_legacy = await stored_messages(stack["legacy"], sid, auth, 4)
    assert on_legacy == turn_messages(first, second)
    # the very messages new stored: same ids (keyed by session and seq) and times (stamped)
    async with httpx.AsyncClient(base_url=stack["legacy"], timeout=10) as direct:
        items = (await direct.get(f"/api/sessions/{sid}/messages", headers=auth)).json()["items"]
    stored = [t[part] for t in (first, second) for part in ("question", "answer")]
    assert [(m["id"], m["created_at"]) for m in items] == [
        (m["id"], m["created_at"]) for m in stored
    ]


def test_paths_credentials_and_frames_that_are_not_turns() -> None:
    assert tutor_session("/ws/tutor/abc") == "abc"
    assert tutor_session("/ws/whiteboard/abc") is None
    assert credentials({"Authorization": "Bearer a"}, {"token": "b"}) == "Bearer a"
    assert credentials({}, {"token": "b"}) == "Bearer b"
    assert credentials({}, {}) is None
    sent: list[dict[str, Any]] = []
    tap = TurnMirrorTap(
        feature="tutor",
        target="legacy",
        session_id="s",
        authorization="Bearer x",
        submit=lambda **write: sent.append(write),
        hold=lambda: lambda: None,
    )
    for data in ("not json", json.dumps([1]), json.dumps({"type": "token", "text": "a"})):
        tap.from_upstream(WSMessage(WSMsgType.TEXT, data, None))
    tap.from_upstream(WSMessage(WSMsgType.BINARY, b"\x00", None))
    tap.from_client(WSMessage(WSMsgType.TEXT, json.dumps({"type": "done"}), None))
    broken = {"type": "done", "question": {"role": "user"}, "answer": None}
    tap.from_upstream(WSMessage(WSMsgType.TEXT, json.dumps(broken), None))
    assert sent == [] and tap.mirrored == 0
    done = {"type": "done", "question": {"id": "q1", "role": "user", "content": "hi"}}
    tap.from_upstream(WSMessage(WSMsgType.TEXT, json.dumps(done), None))
    assert sent[0]["path_qs"] == "/api/sessions/s/messages"
    assert sent[0]["headers"]["Idempotency-Key"] == "tutor-turn:q1"  # no seq: by its id
    assert json.loads(sent[0]["body"]) == {"role": "user", "content": "hi"}
    assert sent[0]["stamp"] is None  # no stamper: the target's own clock


def test_a_turn_is_keyed_by_session_and_seq_and_stamped_at_its_time() -> None:
    sent: list[dict[str, Any]] = []
    user = "0b7c1e6f-4b1a-5d8e-9a35-62616e79616e"
    token = jwt.encode({"sub": user}, "k" * 40, algorithm="HS256")
    tap = TurnMirrorTap(
        feature="tutor",
        target="legacy",
        session_id="s1",
        authorization=f"Bearer {token}",
        submit=lambda **write: sent.append(write),
        hold=lambda: lambda: None,
        stamper=Stamper("s" * 40),
    )
    question = {"id": "q", "role": "user", "content": "hi", "seq": 3}
    answer = {"id": "a", "role": "assistant", "content": "yo", "seq": 4}
    question["created_at"] = "2026-11-23T07:00:00.123Z"
    answer["created_at"] = "not a time"  # unreadable: left to the target's clock
    done = {"type": "done", "question": question, "answer": answer}
    tap.from_upstream(WSMessage(WSMsgType.TEXT, json.dumps(done), None))
    assert [w["idempotency_key"] for w in sent] == [turn_key("s1", 3), turn_key("s1", 4)]
    assert sent[0]["stamp"] == WriteStamp(1_795_417_200_123, "POST", turn_key("s1", 3), user)
    assert sent[1]["stamp"] is None
    assert iso_ms("2026-11-23T07:00:00.123+00:00") == 1_795_417_200_123
    assert iso_ms("2026-11-23T07:00:00.123") == 1_795_417_200_123
    assert iso_ms(None) is None


async def test_a_shadowed_socket_not_sampled_still_mirrors_its_turns_to_the_candidate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In shadow mode with ``parity.sample: 0`` no socket is teed for comparison: its turns must
    still reach the candidate's store, as the feature's unsampled HTTP writes do."""
    shadowed = FLAGS.replace("mode: new", "mode: shadow\n    parity: {{sample: 0}}")
    async with serve(model_app()) as model_url:
        monkeypatch.setenv("OPENAI_BASE_URL", model_url + "/v1")
        shadow = shadow_from_env(tmp_path / "flags.yaml")
        async with real_backends_behind_proxy(tmp_path, shadowed, shadow=shadow) as urls:
            async with httpx.AsyncClient(base_url=urls["proxy"], timeout=10) as http:
                token, auth, sid = await tutor_session_of(http, "unsampled@example.com")
                ws_url = urls["proxy"].replace("http", "ws") + f"/ws/tutor/{sid}?token={token}"
                async with aiohttp.ClientSession() as session, session.ws_connect(ws_url) as ws:
                    turn = await tutor_turn(ws, "What is a fraction?")
            on_new = await stored_messages(urls["new"], sid, auth, 2)
    assert on_new == turn_messages(turn)
