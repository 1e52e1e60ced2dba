"""Contract: hostile input is refused with 400 and the exact same body on every backend.

Request bodies (docs/api.md, "Request bodies"): malformed JSON, nesting deeper than 64 levels,
invalid UTF-8, lone surrogates, NaN / Infinity, floats that overflow, integers beyond 64 bits and
U+0000 in text. Cursors: anything that does not decode to a valid position (a huge number, a
negative one, an id that is not a UUID, a non-canonical encoding). Sockets: the same rules per
frame, answered with an error frame on a socket that stays open.
"""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any

import aiohttp
import httpx
import pytest
import pytest_asyncio

from banyan.backends.contract.client import User
from banyan.backends.contract.shadow import wait_on_both
from banyan.backends.contract.targets import Target

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest_asyncio.fixture(loop_scope="session", autouse=True)
async def user_on_both(user: User) -> None:
    """Shadow targets: the candidate holds the user before the first compared refusal (the
    registration's copy could otherwise arrive after it, and the candidate answer 401)."""
    await wait_on_both(user.client, "/api/auth/me", lambda _: True)


NOT_JSON = "request body is not valid JSON"
TOO_DEEP = "request body is not valid JSON: nested deeper than 64 levels"
SURROGATE = "request body is not valid JSON: a string holds a lone surrogate"
INT64 = "must be between -9223372036854775808 and 9223372036854775807"
BAD_CURSOR = {"error": {"code": "validation_error", "message": "cursor: is invalid"}}


def refused(response: httpx.Response, code: str, message: str) -> None:
    """400 with exactly this body: both backends must answer hostile input identically."""
    assert response.status_code == 400, (response.status_code, response.text[:300])
    assert response.json() == {"error": {"code": code, "message": message}}


def nested(levels: int) -> Any:
    """A JSON value ``levels`` deep (an object counts one level, as does a list)."""
    value: Any = {}
    for _ in range(levels - 1):
        value = {"a": value}
    return value


async def session_of(user: User) -> str:
    created = await user.client.post("/api/sessions", json={"title": "hostile"})
    assert created.status_code == 201, created.text
    return str(created.json()["id"])


async def test_a_hundred_thousand_brackets_are_refused(user: User) -> None:
    for path in ("/api/folders", "/api/agents/analyze", "/api/analytics/events"):
        refused(await user.client.post(path, content=b"[" * 100_000), "invalid_json", TOO_DEEP)
    closed = b"[" * 100_000 + b"]" * 100_000
    refused(await user.client.post("/api/folders", content=closed), "invalid_json", TOO_DEEP)
    text = b'{"name": "' + b"[" * 99 + b'"}'  # brackets inside a string are text
    assert (await user.client.post("/api/folders", content=text)).status_code == 201


async def test_sixty_four_levels_pass_and_sixty_five_do_not(user: User) -> None:
    path = f"/api/sessions/{await session_of(user)}/context"
    # the body object is level 1, so its context may be 63 levels deep
    fits = await user.client.put(path, content=json.dumps({"context": nested(63)}))
    assert fits.status_code == 200, fits.text
    deeper = await user.client.put(path, content=json.dumps({"context": nested(64)}))
    refused(deeper, "invalid_json", TOO_DEEP)
    lists = json.dumps({"context": {"a": [[[[[]]]]]}}).replace("[]", "[" * 60 + "]" * 60)
    refused(await user.client.put(path, content=lists), "invalid_json", TOO_DEEP)


async def test_lone_surrogates_are_refused(user: User) -> None:
    session = await session_of(user)
    cases = [
        ("/api/folders", b'{"name": "\\ud800"}'),
        ("/api/folders", b'{"name": "ok \\udfff"}'),
        ("/api/sessions", b'{"title": "a\\ud83d"}'),  # a high half without its low half
        (f"/api/sessions/{session}/messages", b'{"role": "user", "content": "\\udc00x"}'),
        ("/api/agents/analyze", b'{"\\ud800": "key"}'),
    ]
    for path, body in cases:
        refused(await user.client.post(path, content=body), "invalid_json", SURROGATE)
    paired = await user.client.post("/api/folders", content=b'{"name": "ok \\ud83d\\ude00"}')
    assert paired.status_code == 201 and paired.json()["name"] == "ok \U0001f600"


async def test_invalid_utf8_and_non_json_numbers_are_refused(user: User) -> None:
    path = f"/api/sessions/{await session_of(user)}/context"
    for body in (
        b'{"name": "\xff"}',
        b'{"name": "\xed\xa0\x80"}',  # a surrogate encoded in UTF-8 (CESU) is not UTF-8
        b'\xef\xbb\xbf{"name": "bom"}',
    ):
        refused(await user.client.post("/api/folders", content=body), "invalid_json", NOT_JSON)
    for literal in (b"NaN", b"Infinity", b"-Infinity"):
        body = b'{"context": {"x": ' + literal + b"}}"
        refused(await user.client.put(path, content=body), "invalid_json", NOT_JSON)


async def test_out_of_range_numbers_are_refused(user: User) -> None:
    path = f"/api/sessions/{await session_of(user)}/context"
    huge = await user.client.put(path, content=b'{"context": {"a": {"b": [1, 1e400]}}}')
    refused(huge, "validation_error", "context.a.b[1]: must be a finite number")
    for number in (b"9223372036854775808", b"-9223372036854775809", b"1" + b"0" * 300):
        body = b'{"context": {"n": ' + number + b"}}"
        response = await user.client.put(path, content=body)
        refused(response, "validation_error", f"context.n: {INT64}")
    edge = b'{"context": {"max": 9223372036854775807, "min": -9223372036854775808, "f": 1e308}}'
    kept = await user.client.put(path, content=edge)
    assert kept.status_code == 200, kept.text
    assert kept.json()["context"] == {"max": 2**63 - 1, "min": -(2**63), "f": 1e308}
    count = await user.client.post("/api/quizzes", content=b'{"session_id": "x", "count": 1e999}')
    refused(count, "validation_error", "count: must be a finite number")
    top = await user.client.post("/api/folders", content=b"123456789012345678901234567890")
    refused(top, "validation_error", f"body: {INT64}")


async def test_nul_characters_are_refused(user: User) -> None:
    refused(
        await user.client.post("/api/folders", content=b'{"name": "a\\u0000b"}'),
        "validation_error",
        "name: must not contain U+0000",
    )
    path = f"/api/sessions/{await session_of(user)}/context"
    refused(
        await user.client.put(path, content=b'{"context": {"k": ["ok", "\\u0000"]}}'),
        "validation_error",
        "context.k[1]: must not contain U+0000",
    )


def cursor_of(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


async def test_cursors_that_name_no_position_are_refused(user: User) -> None:
    session = await session_of(user)
    some_id = str(uuid.uuid4())
    bad = [
        cursor_of(f"99999999999999999999999:{some_id}"),  # beyond 64 bits
        cursor_of(f"9223372036854775808:{some_id}"),
        cursor_of(f"-5:{some_id}"),
        cursor_of(f" 5:{some_id}"),
        cursor_of(f"1_000:{some_id}"),
        cursor_of(f"\u0661\u0662:{some_id}"),  # Arabic-Indic digits int() would take
        cursor_of(f"5:{some_id.upper()}"),
        cursor_of("5:not-a-uuid"),
        cursor_of(f"5:{some_id}\u0000"),
        cursor_of(f"5:{some_id}") + "==",  # padding the encoding never writes
        cursor_of(f"5:{some_id}") + "!",
        "%%%",
    ]
    for path in ("/api/sessions", f"/api/sessions/{session}/messages", "/api/documents"):
        for cursor in bad:
            response = await user.client.get(path, params={"cursor": cursor})
            assert response.status_code == 400, (path, cursor, response.text)
            assert response.json() == BAD_CURSOR, (path, cursor)
        fine = await user.client.get(path, params={"cursor": cursor_of(f"5:{some_id}")})
        assert fine.status_code == 200, fine.text


HOSTILE_FRAMES = [
    ('{"type": "ping", "x": "\\ud800"}', "invalid_json"),
    ('{"type": "ping", "x": 1e400}', "validation_error"),
    ('{"type": "ping", "x": NaN}', "invalid_json"),
]
DEEP_FRAME = ("[" * 60_000, "invalid_json")  # under the tutor socket's 64 KiB frame limit


async def test_sockets_refuse_hostile_frames_and_stay_open(target: Target, user: User) -> None:
    session = await session_of(user)
    frames = list(HOSTILE_FRAMES)
    if not target.shadowed:  # the shadow proxy's own frame capture is not ours to test here
        frames.append(DEEP_FRAME)
    async with aiohttp.ClientSession() as http:
        async with http.ws_connect(f"{target.ws_url}/ws/live?token={user.token}") as ws:
            await refuses_and_stays_open(ws, frames)
        tutor = f"{target.ws_url}/ws/tutor/{session}?token={user.token}"
        async with http.ws_connect(tutor) as ws:
            await refuses_and_stays_open(ws, frames)
            await ws.send_json({"type": "ask", "text": "Still there?"})
            while (answer := await ws.receive_json(timeout=30))["type"] == "token":
                pass
            assert answer["type"] == "done", answer


async def refuses_and_stays_open(
    ws: aiohttp.ClientWebSocketResponse, frames: list[tuple[str, str]]
) -> None:
    for raw, code in frames:
        await ws.send_str(raw)
        error = await ws.receive_json(timeout=5)
        assert (error["type"], error["code"]) == ("error", code), (raw[:40], error)
    await ws.send_json({"type": "ping"})
    assert await ws.receive_json(timeout=5) == {"type": "pong"}
