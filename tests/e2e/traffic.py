"""Real clients for the migration drill: session CRUD over HTTP, tutor turns and whiteboard editors
over WebSockets, each behaving as the frontend does (docs/operations.md, "What clients see").

Retry rule of the frontend: a request that fails with a transport error, 502, 503 or 504 is sent
again (up to ``ATTEMPTS`` times, backing off from 50 ms), with the same ``Idempotency-Key`` for a
create. Anything else that is not the expected status is a failure, and so is a request that still
fails after its retries. Every failure is kept with what was asked and what came back.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from pycrdt import Array, Map, Text

from banyan.backends.common.whiteboard.client import WhiteboardClient

ATTEMPTS = 8
RETRY_STATUSES = frozenset({502, 503, 504})


@dataclass
class User:
    email: str
    token: str
    id: str

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@dataclass
class Created:
    """A session created through the proxy, as the client last saw it."""

    user: User
    id: str
    title: str
    backend: str  # X-Banyan-Backend of the create
    message_ids: list[str] = field(default_factory=list)


@dataclass
class Tally:
    requests: int = 0
    retried: int = 0
    failures: list[str] = field(default_factory=list)
    backends: dict[str, int] = field(default_factory=dict)
    created: list[Created] = field(default_factory=list)
    turns: int = 0
    ws_connects: int = 0
    reconnects: int = 0

    def fail(self, what: str) -> None:
        self.failures.append(f"{time.strftime('%H:%M:%S')} {what}")


Body = Callable[[], Any]  # a fresh request body per attempt (a multipart form is read once)


async def exchange(
    session: aiohttp.ClientSession,
    tally: Tally,
    method: str,
    url: str,
    expect: int,
    *,
    headers: dict[str, str],
    json_body: Any = None,
    data: Body | None = None,
) -> tuple[int, dict[str, str], bytes] | None:
    """One logical request with the frontend's retry rule: status, headers and raw body, or
    None (and a failure in the tally) if it failed. ``data`` builds a non-JSON body afresh for
    each attempt."""
    tally.requests += 1
    last = ""
    for attempt in range(ATTEMPTS):
        if attempt:
            tally.retried += 1
            await asyncio.sleep(min(0.05 * 2 ** (attempt - 1), 1.0))
        body = data() if data is not None else None
        try:
            async with session.request(
                method, url, headers=headers, json=json_body, data=body
            ) as response:
                raw = await response.read()
                status = response.status
                answer_headers = dict(response.headers)
        except (aiohttp.ClientError, TimeoutError) as exc:
            last = f"{type(exc).__name__}: {exc}"
            continue
        if status in RETRY_STATUSES:
            last = f"{status} {raw[:200]!r}"
            continue
        backend = answer_headers.get("X-Banyan-Backend", "?")
        tally.backends[backend] = tally.backends.get(backend, 0) + 1
        if status != expect:
            tally.fail(f"{method} {url}: {status} (want {expect}) via {backend}: {raw[:300]!r}")
            return None
        return status, answer_headers, raw
    tally.fail(f"{method} {url}: still failing after {ATTEMPTS} attempts: {last}")
    return None


async def call(
    session: aiohttp.ClientSession,
    tally: Tally,
    method: str,
    url: str,
    expect: int,
    *,
    headers: dict[str, str],
    body: Any = None,
) -> tuple[int, dict[str, str], Any] | None:
    """:func:`exchange` with a JSON body both ways; None (and a failure) if it failed."""
    done = await exchange(session, tally, method, url, expect, headers=headers, json_body=body)
    if done is None:
        return None
    status, answer_headers, raw = done
    return status, answer_headers, json.loads(raw) if raw else None


async def session_worker(
    base: str, user: User, name: str, tally: Tally, stop: asyncio.Event, pause: float = 0.02
) -> None:
    """Create, read, rename, add a message to and read back one fresh session after another."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20)) as http:
        n = 0
        while not stop.is_set():
            n += 1
            key = f"{name}-{n}"
            created = await call(
                http,
                tally,
                "POST",
                f"{base}/api/sessions",
                201,
                headers={**user.auth, "Idempotency-Key": key},
                body={"title": f"drill {key}"},
            )
            if created is None:
                continue
            _, headers, session = created
            record = Created(user, session["id"], session["title"], headers["X-Banyan-Backend"])
            tally.created.append(record)
            url = f"{base}/api/sessions/{record.id}"
            got = await call(http, tally, "GET", url, 200, headers=user.auth)
            if got is not None and got[2]["title"] != record.title:
                tally.fail(f"GET {url}: title {got[2]['title']!r}, want {record.title!r}")
            renamed = await call(
                http, tally, "PATCH", url, 200, headers=user.auth, body={"title": f"{key} (edited)"}
            )
            if renamed is not None:
                record.title = renamed[2]["title"]
            message = await call(
                http,
                tally,
                "POST",
                f"{url}/messages",
                201,
                headers={**user.auth, "Idempotency-Key": f"{key}-m"},
                body={"role": "user", "content": f"note {key}"},
            )
            if message is not None:
                record.message_ids.append(message[2]["id"])
            listed = await call(http, tally, "GET", f"{url}/messages", 200, headers=user.auth)
            if listed is not None:
                seen = [m["id"] for m in listed[2]["items"]]
                if seen != record.message_ids:
                    tally.fail(f"GET {url}/messages: {seen}, want {record.message_ids}")
            await asyncio.sleep(pause)


async def tutor_worker(
    base: str,
    user: User,
    sessions: list[str],
    tally: Tally,
    stop: asyncio.Event,
    turns_per_socket: int = 2,
) -> None:
    """Open ``/ws/tutor/{id}`` on a fresh session, ask a couple of questions, close; again."""
    ws_base = "ws" + base.removeprefix("http")
    async with aiohttp.ClientSession() as http:
        index = 0
        while not stop.is_set():
            session_id = sessions[index % len(sessions)]
            index += 1
            url = f"{ws_base}/ws/tutor/{session_id}?token={user.token}"
            ws = await _ws_connect(http, url, tally)
            if ws is None:
                continue
            try:
                for turn in range(turns_per_socket):
                    await ws.send_json({"type": "ask", "text": f"what is {index}+{turn}?"})
                    if not await _read_turn(ws, tally, url):
                        break
                    tally.turns += 1
            finally:
                await ws.close()


async def _ws_connect(
    http: aiohttp.ClientSession, url: str, tally: Tally
) -> aiohttp.ClientWebSocketResponse | None:
    tally.requests += 1
    last = ""
    for attempt in range(ATTEMPTS):
        if attempt:
            tally.retried += 1
            await asyncio.sleep(min(0.05 * 2 ** (attempt - 1), 1.0))
        try:
            ws = await http.ws_connect(url, timeout=aiohttp.ClientWSTimeout(ws_close=5))
        except aiohttp.WSServerHandshakeError as exc:
            last = f"handshake {exc.status}"
            if exc.status in RETRY_STATUSES:
                continue
            break
        except (aiohttp.ClientError, TimeoutError) as exc:
            last = f"{type(exc).__name__}: {exc}"
            continue
        tally.ws_connects += 1
        return ws
    tally.fail(f"WS {url.split('?')[0]}: {last}")
    return None


async def _read_turn(ws: aiohttp.ClientWebSocketResponse, tally: Tally, url: str) -> bool:
    text = ""
    try:
        async with asyncio.timeout(20):
            async for message in ws:
                if message.type != aiohttp.WSMsgType.TEXT:
                    continue
                frame = json.loads(message.data)
                if frame["type"] == "token":
                    text += frame["text"]
                elif frame["type"] == "done":
                    if frame["answer"]["content"] != text:
                        tally.fail(f"WS {url.split('?')[0]}: streamed text != stored answer")
                    return True
                elif frame["type"] == "error":
                    tally.fail(f"WS {url.split('?')[0]}: error frame {frame}")
                    return False
    except TimeoutError:
        tally.fail(f"WS {url.split('?')[0]}: no answer within 20 s")
        return False
    tally.fail(f"WS {url.split('?')[0]}: closed mid-turn ({ws.close_code})")
    return False


class Editor:
    """One whiteboard user: a pycrdt replica that keeps drawing and reconnects when told to."""

    def __init__(self, name: str, user: User, base: str, room: str, tally: Tally) -> None:
        self.name = name
        self.user = user
        self.url = f"{'ws' + base.removeprefix('http')}/ws/whiteboard/{room}?token={user.token}"
        self.tally = tally
        self.client = WhiteboardClient()
        self.shapes = self.client.doc.get("shapes", type=Map)
        self.order = self.client.doc.get("order", type=Array)
        self.notes = self.client.doc.get("notes", type=Text)
        self.drawn: list[str] = []

    async def connect(self, http: aiohttp.ClientSession) -> bool:
        self.tally.requests += 1
        for attempt in range(ATTEMPTS):
            if attempt:
                self.tally.retried += 1
                await asyncio.sleep(min(0.05 * 2 ** (attempt - 1), 1.0))
            self.client.close_code = None
            try:
                await self.client.connect(http, self.url)
                await self.client.wait_synced()
            except aiohttp.WSServerHandshakeError as exc:
                if exc.status not in RETRY_STATUSES:
                    self.tally.fail(f"whiteboard {self.name}: handshake {exc.status}")
                    return False
                continue
            except (aiohttp.ClientError, TimeoutError):
                with contextlib.suppress(Exception):
                    await self.client.close()
                continue
            self.tally.ws_connects += 1
            return True
        self.tally.fail(f"whiteboard {self.name}: could not connect")
        return False

    async def close_code(self) -> int | None:
        """The code the server closed with, once the client's reader has seen the close."""
        for _ in range(50):
            if self.client.close_code is not None:
                return self.client.close_code
            await asyncio.sleep(0.02)
        return None

    async def draw(self, n: int) -> None:
        shape = f"{self.name}-{n}"
        self.drawn.append(shape)

        def change(doc: Any) -> None:
            with doc.transaction():
                self.shapes[shape] = {"kind": "rect", "x": n, "y": len(self.name)}
                self.order.append(shape)
                self.notes += f"{shape};"

        await self.client.edit(change)

    async def run(self, http: aiohttp.ClientSession, stop: asyncio.Event, pause: float) -> None:
        if not await self.connect(http):
            return
        n = 0
        while not stop.is_set():
            if not self.client.connected:
                code = await self.close_code()
                if code != 1012:  # the proxy moved the feature: reconnect, as y-websocket does
                    self.tally.fail(f"whiteboard {self.name}: socket closed with {code}")
                self.tally.reconnects += 1
                if not await self.connect(http):
                    return
            n += 1
            await self.draw(n)
            await asyncio.sleep(pause)
