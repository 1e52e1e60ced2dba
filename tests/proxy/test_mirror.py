"""Tests for banyan/proxy/mirror.py: durable delivery, retries, dead letters, restarts."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import jwt
import pytest
from aiohttp import web

from banyan import stamps
from banyan.backends.common.ids import user_id_for
from banyan.backends.common.plugin import REGISTER_PATH
from banyan.ports import free_port
from banyan.proxy.mirror import MirrorQueue
from banyan.proxy.mirror_rules import due_lanes, lane_of, outcome
from banyan.proxy.stamping import Stamper, WriteStamp
from banyan.serving import serve


class Recorder:
    """A test upstream that records writes and fails the first ``fail_first`` of them."""

    def __init__(self, fail_first: int = 0) -> None:
        self.fail_first = fail_first
        self.seen: list[dict[str, Any]] = []
        self.app = web.Application()
        self.app.router.add_route("*", "/{tail:.*}", self.handle)

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        if self.fail_first > 0:
            self.fail_first -= 1
            return web.json_response({"error": {"code": "x", "message": "busy"}}, status=503)
        self.seen.append(
            {
                "method": request.method,
                "path": request.path_qs,
                "key": request.headers.get("Idempotency-Key"),
                "auth": request.headers.get("Authorization"),
                "body": body,
                "stamp": request.headers.get("X-Banyan-Stamp"),
                "raw_path": request.raw_path,
            }
        )
        return web.json_response({"ok": True}, status=201)


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


async def wait_until(predicate: Any, timeout: float = 5.0) -> None:
    for _ in range(int(timeout / 0.02)):
        if await predicate():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("condition not reached")


async def enqueue(queue: MirrorQueue, body: bytes = b'{"title": "x"}', key: str = "k1") -> bool:
    return await queue.enqueue(
        feature="sessions",
        target="legacy",
        method="POST",
        path_qs="/api/sessions?x=1",
        headers={"Authorization": "Bearer t", "Content-Type": "application/json", "Host": "h"},
        body=body,
        idempotency_key=key,
    )


async def test_write_is_delivered_with_the_same_key(
    tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    upstream = Recorder(fail_first=2)
    async with serve(upstream.app) as url:
        queue = MirrorQueue(f"sqlite+aiosqlite:///{tmp_path / 'm.db'}", base_delay=0.01)
        await queue.start(session, {"legacy": url})
        assert await enqueue(queue)

        async def delivered() -> bool:
            return (await queue.stats()).delivered == 1

        await wait_until(delivered)
        await queue.stop()
    stats = await _stats(tmp_path)
    assert stats.pending == 0 and stats.dead == 0
    assert queue.retried == 2
    assert upstream.seen == [
        {
            "method": "POST",
            "path": "/api/sessions?x=1",
            "key": "k1",
            "auth": "Bearer t",
            "body": b'{"title": "x"}',
            "stamp": None,  # stored without a time, sent without a stamp
            "raw_path": "/api/sessions?x=1",
        }
    ]


USER = "0b7c1e6f-4b1a-5d8e-9a35-62616e79616e"


async def test_every_delivery_is_stamped_at_the_write_s_time(
    tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    """Retried or not, a delivery carries a mirror stamp of the original write's time, for its
    user, signed for the target as the backend receives it (the backend URL's prefix in front)."""
    upstream = Recorder(fail_first=2)
    secret = "s" * 40
    async with serve(upstream.app) as url:
        queue = MirrorQueue(f"sqlite+aiosqlite:///{tmp_path / 'm.db'}", base_delay=0.05)
        queue.stamper = Stamper(secret)
        await queue.start(session, {"legacy": url + "/base/"})
        await queue.enqueue(
            feature="sessions",
            target="legacy",
            method="POST",
            path_qs="/api/sessions?x=1",
            headers={"Authorization": "Bearer t", "X-Request-Id": "r1"},
            body=b"{}",
            idempotency_key="k1",
            stamp=WriteStamp(1_234, "POST", "k1", USER),
        )
        await queue.enqueue(  # a DELETE without a key: bound to its request id
            feature="sessions",
            target="legacy",
            method="DELETE",
            path_qs="/api/sessions/1",
            headers={"Authorization": "Bearer t", "X-Request-Id": "r2"},
            body=b"",
            idempotency_key="",
            stamp=WriteStamp(5_678, "DELETE", "r2", None),
        )

        async def delivered() -> bool:
            return (await queue.stats()).delivered == 2

        await wait_until(delivered)
        await queue.stop()
    assert queue.retried == 2
    first, second = upstream.seen
    assert first["raw_path"] == "/base/api/sessions?x=1"
    read = stamps.read_stamp(
        first["stamp"], secret=secret, method="POST", target=first["raw_path"], key="k1", now_ms=0
    )
    assert read is not None and (read.ms, read.kind, read.user) == (1_234, "mirror", USER)
    read = stamps.read_stamp(
        second["stamp"],
        secret=secret,
        method="DELETE",
        target="/base/api/sessions/1",
        key="r2",
        now_ms=0,
    )
    assert read is not None and (read.ms, read.user) == (5_678, None)


async def test_a_queue_file_from_before_stamps_gains_their_columns(
    tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as db:  # the table as the first release made it
        db.execute(
            "CREATE TABLE banyan_mirror_writes (id INTEGER PRIMARY KEY AUTOINCREMENT,"
            " feature VARCHAR(200) NOT NULL, target VARCHAR(20) NOT NULL,"
            " method VARCHAR(10) NOT NULL, path_qs TEXT NOT NULL, headers TEXT NOT NULL,"
            " body BLOB NOT NULL, idempotency_key VARCHAR(200) NOT NULL,"
            " attempts INTEGER NOT NULL, next_at FLOAT NOT NULL, status VARCHAR(10) NOT NULL,"
            " last_error TEXT, created_at FLOAT NOT NULL)"
        )
        db.execute(
            "INSERT INTO banyan_mirror_writes (feature, target, method, path_qs, headers, body,"
            " idempotency_key, attempts, next_at, status, created_at) VALUES ('f', 'legacy',"
            " 'POST', '/api/x', '{}', x'7b7d', 'k', 0, 0, 'pending', 0)"
        )
    upstream = Recorder()
    async with serve(upstream.app) as url:
        queue = MirrorQueue(f"sqlite+aiosqlite:///{path}")
        queue.stamper = Stamper("s" * 40)
        await queue.start(session, {"legacy": url})

        async def delivered() -> bool:
            return (await queue.stats()).delivered == 1

        await wait_until(delivered)
        await queue.stop()
    assert upstream.seen[0]["path"] == "/api/x" and upstream.seen[0]["stamp"] is None
    with sqlite3.connect(path) as db:
        columns = {row[1] for row in db.execute("PRAGMA table_info(banyan_mirror_writes)")}
    assert {"stamp_ms", "user_id"} <= columns


async def _stats(tmp_path: Path) -> Any:
    queue = MirrorQueue(f"sqlite+aiosqlite:///{tmp_path / 'm.db'}")
    async with aiohttp.ClientSession() as s:
        await queue.start(s, {})
        try:
            return await queue.stats()
        finally:
            await queue.stop()


async def test_pending_writes_survive_a_restart(
    tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    down = f"http://127.0.0.1:{free_port()}"
    first = MirrorQueue(f"sqlite+aiosqlite:///{tmp_path / 'm.db'}", base_delay=5)
    await first.start(session, {"legacy": down})
    await enqueue(first, key="a")
    await enqueue(first, key="b")

    async def tried() -> bool:
        return first.retried >= 2

    await wait_until(tried, timeout=15.0)  # one lane: b waits behind a, whose retry is 5 s on
    await first.stop()
    upstream = Recorder()
    async with serve(upstream.app) as url:
        second = MirrorQueue(f"sqlite+aiosqlite:///{tmp_path / 'm.db'}", base_delay=5)
        await second.start(session, {"legacy": url})
        # the backoff of 5 s is still running: force the due time, as an operator retry would
        from sqlalchemy import update

        from banyan.proxy.mirror_store import mirror_writes

        assert second.engine is not None
        async with second.engine.begin() as conn:
            await conn.execute(update(mirror_writes).values(next_at=0))
        second._wake.set()

        async def all_delivered() -> bool:
            return len(upstream.seen) == 2

        await wait_until(all_delivered)
        await second.stop()
    assert [s["key"] for s in upstream.seen] == ["a", "b"]


async def test_dead_letters_are_kept_and_can_be_retried(
    tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    upstream = Recorder(fail_first=3)
    async with serve(upstream.app) as url:
        queue = MirrorQueue(
            f"sqlite+aiosqlite:///{tmp_path / 'm.db'}", base_delay=0.01, max_attempts=3
        )
        await queue.start(session, {"legacy": url})
        await enqueue(queue)

        async def dead() -> bool:
            return (await queue.stats()).dead == 1

        await wait_until(dead)
        letters = await queue.dead_letters()
        assert letters[0]["attempts"] == 3 and "503" in letters[0]["last_error"]
        assert await queue.retry_dead() == 1

        async def delivered() -> bool:
            return queue.delivered == 1

        await wait_until(delivered)
        await queue.stop()


async def test_oversize_and_unknown_target(tmp_path: Path, session: aiohttp.ClientSession) -> None:
    queue = MirrorQueue(
        f"sqlite+aiosqlite:///{tmp_path / 'm.db'}", max_body=4, base_delay=0.01, max_attempts=1
    )
    await queue.start(session, {})
    assert not await enqueue(queue, body=b"12345")
    assert await enqueue(queue, body=b"1")

    async def dead() -> bool:
        return (await queue.stats()).dead == 1

    await wait_until(dead)
    stats = await queue.stats()
    assert stats.skipped_too_large == 1
    assert "no backend named legacy" in (await queue.dead_letters())[0]["last_error"]
    queue.set_backends({"legacy": "http://127.0.0.1:1"})
    await queue.stop()


class PathFailer:
    """An upstream that fails the first attempt at each path listed in ``fail_once``."""

    def __init__(self, *fail_once: str) -> None:
        self.fail_once = set(fail_once)
        self.seen: list[str] = []
        self.app = web.Application()
        self.app.router.add_route("*", "/{tail:.*}", self.handle)

    async def handle(self, request: web.Request) -> web.Response:
        await request.read()
        if request.path in self.fail_once:
            self.fail_once.discard(request.path)
            return web.json_response({"error": {"code": "x", "message": "busy"}}, status=503)
        self.seen.append(f"{request.headers.get('Authorization')} {request.path}")
        return web.json_response({"ok": True}, status=201)


def write(path: str, auth: str, release: Any = None) -> dict[str, Any]:
    return {
        "feature": "sessions",
        "target": "legacy",
        "method": "POST",
        "path_qs": path,
        "headers": {"Authorization": auth},
        "body": b"{}",
        "idempotency_key": "",
        "release": release,
    }


async def test_lanes_keep_each_users_order_and_let_other_users_pass(
    tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    upstream = PathFailer("/a/1")
    released: list[str] = []
    async with serve(upstream.app) as url:
        queue = MirrorQueue(f"sqlite+aiosqlite:///{tmp_path / 'm.db'}", base_delay=1.0)
        await queue.start(session, {"legacy": url})
        for path, auth in (("/a/1", "Bearer a"), ("/a/2", "Bearer a"), ("/b/1", "Bearer b")):
            queue.submit(**write(path, auth, lambda p=path: released.append(p)))

        async def b_delivered() -> bool:  # the upstream has it, and the queue has its answer
            return "Bearer b /b/1" in upstream.seen and bool(released)

        await wait_until(b_delivered)
        assert upstream.seen == ["Bearer b /b/1"]  # a's second write waits behind its retry
        assert released == ["/b/1"]

        async def all_delivered() -> bool:
            return len(upstream.seen) == 3

        await wait_until(all_delivered)
        await queue.stop()
    assert upstream.seen[1:] == ["Bearer a /a/1", "Bearer a /a/2"]
    assert sorted(released) == ["/a/1", "/a/2", "/b/1"]
    assert queue.retried == 1 and queue.delivered == 3


async def test_releases_follow_every_end_of_a_write(
    tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    released: list[str] = []
    queue = MirrorQueue(
        f"sqlite+aiosqlite:///{tmp_path / 'm.db'}", max_body=4, base_delay=5, max_attempts=1
    )
    await queue.start(session, {"legacy": f"http://127.0.0.1:{free_port()}"})
    too_big = {**write("/big", "Bearer a", lambda: released.append("big")), "body": b"12345"}
    assert not await queue.enqueue(**too_big)
    assert released == ["big"]  # skipped: nothing to wait for
    await queue.enqueue(**write("/dead", "Bearer a", lambda: released.append("dead")))

    async def dead() -> bool:
        return (await queue.stats()).dead == 1

    await wait_until(dead)
    assert released == ["big", "dead"]
    queue.set_backends({})
    await queue.enqueue(**write("/x", "Bearer b", lambda: released.append("stopped")))
    await queue.stop()
    assert released == ["big", "dead", "stopped"]  # stopping ends every wait


def test_not_yet_answers_are_retried_and_a_missing_delete_is_done() -> None:
    from banyan.proxy.mirror_rules import not_yet

    assert not_yet("POST", 503) and not_yet("PUT", 429) and not_yet("PATCH", 408)
    assert not_yet("POST", 401)  # the user's registration has not landed there yet
    assert not_yet("POST", 404) and not_yet("PATCH", 404)  # nor the record this write refers to
    assert not not_yet("DELETE", 404)  # already gone: what the delete wanted
    assert not not_yet("POST", 400) and not not_yet("POST", 409) and not not_yet("POST", 201)


def test_answers_are_done_retried_or_refused() -> None:
    assert outcome("POST", 201) == outcome("PUT", 200) == outcome("DELETE", 204) == "done"
    assert outcome("DELETE", 404) == "done"
    assert outcome("POST", 401) == outcome("PATCH", 404) == outcome("POST", 503) == "retry"
    assert outcome("POST", 400) == outcome("POST", 409) == outcome("PUT", 413) == "refused"


class Refuser:
    """An upstream that refuses writes to ``/refused`` with a 409 and takes the others."""

    def __init__(self) -> None:
        self.seen: list[str] = []
        self.app = web.Application()
        self.app.router.add_route("*", "/{tail:.*}", self.handle)

    async def handle(self, request: web.Request) -> web.Response:
        await request.read()
        self.seen.append(request.path)
        if request.path == "/refused":
            error = {"code": "idempotency_conflict", "message": "key used with another body"}
            return web.json_response({"error": error}, status=409)
        return web.json_response({"ok": True}, status=201)


async def test_a_refused_write_is_a_dead_letter_at_once_with_the_answer_as_reason(
    tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    """Before, a 4xx other than 401/404 counted as delivered: the write was lost silently."""
    upstream = Refuser()
    released: list[str] = []
    async with serve(upstream.app) as url:
        queue = MirrorQueue(f"sqlite+aiosqlite:///{tmp_path / 'm.db'}", base_delay=0.01)
        await queue.start(session, {"legacy": url})
        queue.submit(**write("/refused", "Bearer a", lambda: released.append("refused")))
        queue.submit(**write("/next", "Bearer a", lambda: released.append("next")))

        async def settled() -> bool:
            stats = await queue.stats()
            return stats.pending == 0 and stats.dead == 1

        await wait_until(settled)
        (dead,) = await queue.dead_letters()
        await queue.stop()
    assert upstream.seen == ["/refused", "/next"]  # tried once; the user's next write went on
    assert dead["attempts"] == 1 and dead["path_qs"] == "/refused"
    assert dead["last_error"] == (
        "legacy answered 409 idempotency_conflict: key used with another body"
    )
    assert sorted(released) == ["next", "refused"] and queue.delivered == 1


class SlowRegistration:
    """An upstream that takes its time over registrations and logs when each write starts and
    ends: a user's create must not start before their registration ended."""

    def __init__(self) -> None:
        self.events: list[str] = []
        self.app = web.Application()
        self.app.router.add_route("*", "/{tail:.*}", self.handle)

    async def handle(self, request: web.Request) -> web.Response:
        await request.read()
        self.events.append(f"start {request.path}")
        if request.path == REGISTER_PATH:
            await asyncio.sleep(0.3)
        self.events.append(f"end {request.path}")
        return web.json_response({"ok": True}, status=201)


async def test_a_registration_and_the_user_s_writes_share_one_lane(
    tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    email = "Lane@Example.com"
    user = user_id_for(email)
    token = jwt.encode({"sub": user}, "k" * 40, algorithm="HS256")
    upstream = SlowRegistration()
    async with serve(upstream.app) as url:
        queue = MirrorQueue(f"sqlite+aiosqlite:///{tmp_path / 'm.db'}")
        await queue.start(session, {"legacy": url})
        registration = write(REGISTER_PATH, "", None)
        registration["headers"] = {}
        registration["body"] = json.dumps({"email": email, "password": "p"}).encode()
        queue.submit(**registration)
        queue.submit(**write("/api/sessions", f"Bearer {token}"))

        async def delivered() -> bool:
            return (await queue.stats()).delivered == 2

        await wait_until(delivered)
        await queue.stop()
    assert upstream.events == [
        f"start {REGISTER_PATH}",
        f"end {REGISTER_PATH}",
        "start /api/sessions",
        "end /api/sessions",
    ]


def test_lanes_are_users_across_features() -> None:
    user = user_id_for("a@example.com")
    token = jwt.encode({"sub": user}, "k" * 40, algorithm="HS256")
    row: dict[str, Any] = {"user_id": None, "path_qs": "/api/x", "body": b""}
    by_token = {**row, "headers": json.dumps({"authorization": f"Bearer {token}"})}
    by_stamp = {**row, "headers": "{}", "user_id": user}
    registration = {
        **row,
        "headers": "{}",
        "path_qs": REGISTER_PATH + "?x=1",
        "body": b'{"email": "A@example.com"}',
    }
    assert lane_of(by_token) == lane_of(by_stamp) == lane_of(registration) == user
    unreadable = {**registration, "body": b"not json"}
    assert lane_of(unreadable) == lane_of({**registration, "body": b"[]"}) == ""
    assert lane_of({**row, "headers": json.dumps({"authorization": "Basic x"})}) == "Basic x"


def test_a_registration_goes_first_in_its_lane_even_behind_its_user_s_retrying_write() -> None:
    """A user's create stored before the registration that creates the user is refused as an
    unknown user and retried; the registration must not wait behind it (the lane would hold
    until the create died), and a due create goes after the registration."""
    user = user_id_for("first@example.com")
    token = jwt.encode({"sub": user}, "k" * 40, algorithm="HS256")
    bearer = json.dumps({"authorization": f"Bearer {token}"})
    create = {"id": 1, "target": "new", "user_id": None, "path_qs": "/api/sessions", "body": b"",
              "headers": bearer, "next_at": 0.0}  # fmt: skip
    registration = {**create, "id": 2, "headers": "{}", "path_qs": REGISTER_PATH,
                    "body": b'{"email": "first@example.com"}'}  # fmt: skip
    later = {**create, "id": 3}
    retrying = {**create, "next_at": 50.0}  # refused once, due again at 50
    assert due_lanes([retrying, registration, later], now=10.0) == {("new", user): [registration]}
    lanes = due_lanes([create, registration, later], now=10.0)
    assert lanes == {("new", user): [registration, create, later]}
    waiting = {**registration, "next_at": 50.0}  # a registration not due holds its lane
    assert due_lanes([waiting, later], now=10.0) == {}


async def test_a_write_submitted_but_not_stored_yet_is_pending(
    tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    """Between the request path's submit and the intake's insert the write is on its way: an
    empty queue in /_proxy/status must mean every answered write reached its target."""
    down = f"http://127.0.0.1:{free_port()}"
    queue = MirrorQueue(f"sqlite+aiosqlite:///{tmp_path / 'm.db'}", base_delay=5)
    await queue.start(session, {"legacy": down})
    try:
        queue.submit(**write("/api/sessions", "Bearer a"))
        assert (await queue.stats()).pending >= 1  # taken in or not, it is not delivered

        async def stored() -> bool:
            return queue._intake.empty() and queue._taking == 0

        await wait_until(stored)
        assert (await queue.stats()).pending == 1  # once stored, counted once
    finally:
        await queue.stop()


async def queue_of(tmp_path: Path, session: aiohttp.ClientSession, url: str) -> MirrorQueue:
    """A started queue on SQLite under ``tmp_path``, delivering to ``url`` as ``legacy``."""
    queue = MirrorQueue(f"sqlite+aiosqlite:///{tmp_path / 'm.db'}")
    await queue.start(session, {"legacy": url})
    return queue


async def delivered_all(queue: MirrorQueue) -> None:
    """Rounds until nothing is pending (a send that failed on a loaded machine: at its retry)."""
    for _ in range(200):
        if not (await queue.stats()).pending:
            return
        await queue.deliver_due()
        await asyncio.sleep(0.02)


async def test_rounds_asked_side_by_side_send_each_write_once_and_lose_none(
    tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    """Rounds asked at once (the worker's and two more) run one after the other: side by side,
    they sent a row twice, and a late round's outcome deleted the next write, stored meanwhile
    under the id SQLite reuses once the table is empty, before it was ever sent."""
    upstream = Recorder()
    async with serve(upstream.app) as url:
        queue = await queue_of(tmp_path, session, url)
        released: list[int] = []
        try:
            for n in range(60):
                batch = [write(f"/w/{n}", "Bearer a", lambda n=n: released.append(n))]
                await asyncio.gather(queue._store(batch), queue.deliver_due(), queue.deliver_due())
                await delivered_all(queue)
        finally:
            await queue.stop()
    sent = [seen["path"] for seen in upstream.seen]
    assert sent == [f"/w/{n}" for n in range(60)]
    assert released == list(range(60))


async def test_a_write_delivered_before_its_release_is_registered_still_releases(
    tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    """A round running while a batch is stored may deliver a row between its insert and the
    registration of its release (the fence's hold): the hold must end all the same, or the user's
    requests wait 2 s each for a write that has landed."""
    upstream = Recorder()
    async with serve(upstream.app) as url:
        queue = await queue_of(tmp_path, session, url)
        released: list[int] = []
        try:
            for n in range(200):  # the race is narrow: many tries
                batch = [write(f"/w/{n}", "Bearer a", lambda n=n: released.append(n))]
                storing = asyncio.ensure_future(queue._store(batch))
                while not storing.done():  # rounds side by side with the insert
                    await queue.deliver_due()
                await storing
                await delivered_all(queue)
                assert n in released, f"write {n} delivered, its hold never ended"
        finally:
            await queue.stop()
