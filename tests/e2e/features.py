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

from tests.e2e.traffic import ATTEMPTS, RETRY_STATUSES, Tally, User, _ws_connect, call

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
    """:func:`tests.e2e.traffic.call` for a page, an asset or a multipart upload: the raw body."""
    tally.requests += 1
    last = ""
    for attempt in range(ATTEMPTS):
        if attempt:
            tally.retried += 1
            await asyncio.sleep(min(0.05 * 2 ** (attempt - 1), 1.0))
        data = _form(form) if form is not None else None
        try:
            async with http.request(method, url, headers=headers, data=data) as response:
                raw, status = await response.read(), response.status
                backend = response.headers.get("X-Banyan-Backend", "?")
        except (aiohttp.ClientError, TimeoutError) as exc:
            last = f"{type(exc).__name__}: {exc}"
            continue
        if status in RETRY_STATUSES:
            last = f"{status} {raw[:200]!r}"
            continue
        tally.backends[backend] = tally.backends.get(backend, 0) + 1
        if status != expect:
            tally.fail(f"{method} {url}: {status} (want {expect}) via {backend}: {raw[:300]!r}")
            return None
        return raw
    tally.fail(f"{method} {url}: still failing after {ATTEMPTS} attempts: {last}")
    return None


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
    """The uploaded document, the list and the document's processing job, read back."""
    await call(http, tally, "GET", f"{base}/api/documents/{document['id']}", 200, headers=user.auth)
    await call(http, tally, "GET", f"{base}/api/documents", 200, headers=user.auth)
    await call(http, tally, "GET", f"{base}/api/jobs/{document['job_id']}", 200, headers=user.auth)


async def quizzes(
    http: aiohttp.ClientSession, tally: Tally, base: str, user: User, session_id: str, key: str
) -> None:
    """A one-question quiz on the session, read back and attempted."""
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


async def analytics(
    http: aiohttp.ClientSession, tally: Tally, base: str, user: User, key: str
) -> None:
    events = {"events": [{"name": "lesson_opened"}, {"name": "quiz_taken"}]}
    await call(http, tally, "POST", f"{base}/api/analytics/events", 202,
               headers={**user.auth, "Idempotency-Key": f"e-{key}"}, body=events)  # fmt: skip
    await call(http, tally, "GET", f"{base}/api/analytics/summary", 200, headers=user.auth)


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
    """The live channel: subscribe to the user's folders, take the first result, leave."""
    url = f"{'ws' + base.removeprefix('http')}/ws/live?token={user.token}"
    ws = await _ws_connect(http, url, tally)
    if ws is None:
        return
    try:
        await ws.send_json({"type": "subscribe", "id": "folders", "query": "folders.list",
                           "args": {}})  # fmt: skip
        async with asyncio.timeout(10):
            async for message in ws:
                if message.type != aiohttp.WSMsgType.TEXT:
                    continue
                frame = json.loads(message.data)
                if frame["type"] == "result":
                    return
                if frame["type"] == "error":
                    tally.fail(f"WS /ws/live: error frame {frame}")
                    return
        tally.fail(f"WS /ws/live: closed before a result ({ws.close_code})")
    except TimeoutError:
        tally.fail("WS /ws/live: no result within 10 s")
    finally:
        await ws.close()
