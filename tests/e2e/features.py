"""What a member of the runbook's population does with the features beyond folders and sessions:
the web app, agents, documents and their jobs, quizzes, analytics, a whiteboard room's REST face
and the live channel — each a short visit of real requests through the proxy, as the web app makes
them, with the frontend's retry rule. Anything else than the expected answer is a failure in the
tally (:class:`tests.e2e.traffic.Tally`), as in :func:`tests.e2e.traffic.call`.

Every visit asks for what a store holds the same way on both sides once the writes are mirrored:
a document is read back (and its job) a few actions after its upload, a whiteboard snapshot is of
the user's own room, the live channel's first answer is the user's folders.
"""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

import aiohttp

from tests.e2e.traffic import ATTEMPTS, Tally, User, _ws_connect, call, exchange

ASSET = re.compile(r"""["']/?(assets/[^"']+)["']""")  # the page names them relative


async def fetch(
    http: aiohttp.ClientSession,
    tally: Tally,
    method: str,
    url: str,
    expect: int,
    *,
    headers: dict[str, str],
    form: dict[str, Any] | None = None,
) -> bytes | None:
    """:func:`tests.e2e.traffic.exchange` for a page, an asset or a multipart upload: the raw
    body (the form built afresh for each attempt)."""
    data = None if form is None else (lambda: _form(form))
    done = await exchange(http, tally, method, url, expect, headers=headers, data=data)
    return None if done is None else done[2]


def _form(fields: dict[str, Any]) -> aiohttp.FormData:
    data = aiohttp.FormData()
    for name, value in fields.items():
        if isinstance(value, tuple):
            filename, content_type, content = value
            data.add_field(name, content, filename=filename, content_type=content_type)
        else:
            data.add_field(name, value)
    return data


async def web(http: aiohttp.ClientSession, tally: Tally, base: str) -> None:
    """The web app's page, then the first asset it names (no auth, as a browser loads it)."""
    page = await fetch(http, tally, "GET", f"{base}/", 200, headers={})
    if page is None:
        return
    found = ASSET.search(page.decode(errors="replace"))
    if found is None:
        tally.fail("GET /: the page names no asset")
        return
    await fetch(http, tally, "GET", f"{base}/{found.group(1)}", 200, headers={})


async def agents(http: aiohttp.ClientSession, tally: Tally, base: str, user: User) -> None:
    await call(http, tally, "GET", f"{base}/api/agents", 200, headers=user.auth)
    await call(http, tally, "POST", f"{base}/api/agents/analyze", 200, headers=user.auth,
               body={"text": "Fractions: adding 1/2 and 1/3 gives 5/6."})  # fmt: skip


async def upload(
    http: aiohttp.ClientSession, tally: Tally, base: str, user: User, key: str
) -> dict[str, Any] | None:
    """A markdown note uploaded as a document (202, queued with its job)."""
    note = f"# Notes {key}\n\nPhotosynthesis turns light into chemical energy.\n".encode()
    raw = await fetch(http, tally, "POST", f"{base}/api/documents", 202,
                      headers={**user.auth, "Idempotency-Key": f"d-{key}"},
                      form={"file": (f"notes-{key}.md", "text/markdown", note)})  # fmt: skip
    return None if raw is None else dict(json.loads(raw))


async def documents(
    http: aiohttp.ClientSession, tally: Tally, base: str, user: User, document: dict[str, Any]
) -> None:
    """The uploaded document and the list, read back, then the processing job of every document
    listed (the user's uploads so far, this one included), as the documents page shows them."""
    await call(http, tally, "GET", f"{base}/api/documents/{document['id']}", 200, headers=user.auth)
    listed = await call(http, tally, "GET", f"{base}/api/documents", 200, headers=user.auth)
    jobs = [item["job_id"] for item in listed[2]["items"]] if listed else [document["job_id"]]
    for job_id in jobs:
        await call(http, tally, "GET", f"{base}/api/jobs/{job_id}", 200, headers=user.auth)


async def quizzes(
    http: aiohttp.ClientSession, tally: Tally, base: str, user: User, session_id: str, key: str
) -> None:
    """A one-question quiz on the session, read back, attempted, and shown again."""
    made = await call(http, tally, "POST", f"{base}/api/quizzes", 201,
                      headers={**user.auth, "Idempotency-Key": f"q-{key}"},
                      body={"session_id": session_id, "count": 1})  # fmt: skip
    if made is None:
        return
    url = f"{base}/api/quizzes/{made[2]['id']}"
    await call(http, tally, "GET", url, 200, headers=user.auth)
    await call(http, tally, "POST", f"{url}/attempts", 201,
               headers={**user.auth, "Idempotency-Key": f"a-{key}"},
               body={"answers": [0] * len(made[2]["questions"])})  # fmt: skip
    await call(http, tally, "GET", url, 200, headers=user.auth)  # the page with the result


async def analytics(
    http: aiohttp.ClientSession, tally: Tally, base: str, user: User, key: str
) -> None:
    events = {"events": [{"name": "lesson_opened"}, {"name": "quiz_taken"}]}
    await call(http, tally, "POST", f"{base}/api/analytics/events", 202,
               headers={**user.auth, "Idempotency-Key": f"e-{key}"}, body=events)  # fmt: skip
    await call(http, tally, "GET", f"{base}/api/analytics/summary", 200, headers=user.auth)


async def page_view(
    http: aiohttp.ClientSession, tally: Tally, base: str, user: User, key: str
) -> None:
    """The event the web app sends for every page it shows."""
    await call(http, tally, "POST", f"{base}/api/analytics/events", 202,
               headers={**user.auth, "Idempotency-Key": f"v-{key}"},
               body={"events": [{"name": "page_viewed"}]})  # fmt: skip


async def whiteboard(
    http: aiohttp.ClientSession, tally: Tally, base: str, user: User, key: str
) -> None:
    """The REST face of a room of the user's own: read it, snapshot it, list its snapshots."""
    url = f"{base}/api/whiteboard/own-{key}"
    await call(http, tally, "GET", url, 200, headers=user.auth)
    await call(http, tally, "POST", f"{url}/snapshots", 201,
               headers={**user.auth, "Idempotency-Key": f"w-{key}"},
               body={"name": f"snapshot {key}"})  # fmt: skip
    await call(http, tally, "GET", f"{url}/snapshots", 200, headers=user.auth)


async def live(http: aiohttp.ClientSession, tally: Tally, base: str, user: User) -> None:
    """The live channel: subscribe to the user's folders, take the first result, leave. A socket
    the proxy closes with 1012 (``websocket: reconnect``: the feature moved) is opened again, as
    the web app does (docs/operations.md, section 3)."""
    url = f"{'ws' + base.removeprefix('http')}/ws/live?token={user.token}"
    for _ in range(ATTEMPTS):
        ws = await _ws_connect(http, url, tally)
        if ws is None:
            return
        try:
            closed = await _first_result(ws, tally)
        finally:
            await ws.close()
        if closed != 1012:
            if closed is not None:
                tally.fail(f"WS /ws/live: closed before a result ({closed})")
            return
        tally.reconnects += 1
    tally.fail(f"WS /ws/live: closed with 1012 {ATTEMPTS} times in a row")


async def _first_result(ws: aiohttp.ClientWebSocketResponse, tally: Tally) -> int | None:
    """Subscribe and read up to the first result: None once read (or a failure tallied), else
    the code the socket closed with before it."""
    try:
        await ws.send_json({"type": "subscribe", "id": "folders", "query": "folders.list",
                           "args": {}})  # fmt: skip
    except (aiohttp.ClientError, ConnectionError):  # closed as it opened: the close code says
        return ws.close_code or 0
    try:
        async with asyncio.timeout(10):
            async for message in ws:
                if message.type != aiohttp.WSMsgType.TEXT:
                    continue
                frame = json.loads(message.data)
                if frame["type"] == "result":
                    return None
                if frame["type"] == "error":
                    tally.fail(f"WS /ws/live: error frame {frame}")
                    return None
    except TimeoutError:
        tally.fail("WS /ws/live: no result within 10 s")
        return None
    return ws.close_code or 0
