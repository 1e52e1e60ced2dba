"""Tests for banyan/control/mirror.py: one PostgreSQL mirror queue for several replicas — each
write delivered once, holds released whoever delivered, and the fence across replicas."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import jwt
import pytest

from banyan.control.db import dsn
from banyan.control.mirror import SharedMirrorQueue, SharedWriteFence, is_postgres, shared_queue
from banyan.pg import postgres_available, temp_database
from banyan.proxy.app import STATE, create_app
from banyan.proxy.mirror import MirrorQueue
from banyan.proxy.stamping import WriteStamp
from banyan.serving import serve
from tests.proxy.upstreams import Recorder, flags_yaml

pytestmark = pytest.mark.postgres


@pytest.fixture
async def mirror_db() -> AsyncIterator[str]:
    if not await postgres_available():
        pytest.skip("SHARED MIRROR TESTS SKIPPED — no PostgreSQL at 127.0.0.1:5432")
    async with temp_database("ctlmirror") as url:
        yield url


async def until(check: Any, what: str) -> None:
    for _ in range(400):
        if check():
            return
        await asyncio.sleep(0.025)
    raise AssertionError(f"never happened: {what}")


async def enqueue(queue: MirrorQueue, key: str, user: str | None = None, **kwargs: Any) -> None:
    await queue.enqueue(
        feature="sessions",
        target="legacy",
        method="POST",
        path_qs=f"/echo/{key}",
        headers={"Content-Type": "application/json"},
        body=b"{}",
        idempotency_key=key,
        stamp=None if user is None else WriteStamp(1_700_000_000_000, "POST", key, user),
        **kwargs,
    )


def test_only_postgres_is_shared() -> None:
    assert is_postgres("postgresql+asyncpg://h/d") and is_postgres("postgres://h/d")
    assert not is_postgres("sqlite+aiosqlite:///m.db")
    assert shared_queue("sqlite+aiosqlite:///m.db") is None
    queue, fence = shared_queue("postgresql+asyncpg://h/d") or (None, None)
    assert isinstance(queue, SharedMirrorQueue) and queue.fence is fence


async def test_the_fence_holds_for_writes_another_replica_queued() -> None:
    fence = SharedWriteFence(max_wait=5)
    assert fence.pending("new", "u1") == []
    fence.update({("new", "u1")})
    (waiting,) = fence.pending("new", "u1")
    assert fence.pending("new", "u1") == [waiting]  # one wait per pair
    assert fence.copies("new", "u1") == []  # a queued write, not a copy in flight
    assert fence.pending("legacy", "u1") == [] and fence.pending("new", None) == []
    release = fence.hold("new", "u1")
    assert waiting not in fence.pending("new", "u1")  # its own hold is the one to wait for
    release()
    fence.update(set())
    assert waiting.done() and await fence.wait([waiting])


async def test_replicas_sharing_the_queue_deliver_each_write_once(mirror_db: str) -> None:
    upstream = Recorder("legacy")
    async with serve(upstream.app) as url, aiohttp.ClientSession() as session:
        queues = [SharedMirrorQueue(mirror_db, poll_interval=0.02) for _ in range(3)]
        for queue in queues:
            await queue.start(session, {"legacy": url})
        try:
            released: list[str] = []
            for i in range(30):
                key = f"w{i}"
                await enqueue(
                    queues[i % 3], key, user=f"u{i % 4}", release=lambda k=key: released.append(k)
                )
            await until(lambda: len(upstream.requests) >= 30 and len(released) == 30, "delivery")
            await asyncio.sleep(0.2)  # any second delivery would have happened by now
        finally:
            for queue in queues:
                await queue.stop()
    keys = Counter(r["headers"]["idempotency-key"] for r in upstream.requests)
    assert keys == Counter({f"w{i}": 1 for i in range(30)})
    for user in range(4):  # each user's lane kept its order, whichever replica delivered it
        order = [int(r["path_qs"][len("/echo/w") :]) for r in upstream.requests]
        mine = [i for i in order if i % 4 == user]
        assert mine == sorted(mine)


async def test_holds_are_released_when_another_replica_delivered(mirror_db: str) -> None:
    async with aiohttp.ClientSession() as session:
        fence = SharedWriteFence()
        queue = SharedMirrorQueue(mirror_db, fence=fence, poll_interval=0.02)
        await queue.start(session, {"legacy": "http://127.0.0.1:1"})
        other = await asyncpg.connect(dsn(mirror_db))
        try:
            await other.execute("SELECT pg_advisory_lock($1)", queue.key)  # "delivering"
            done = asyncio.get_running_loop().create_future()
            await enqueue(queue, "k1", user="u1", release=lambda: done.set_result(True))
            await until(lambda: ("legacy", "u1") in fence.remote, "seen pending")
            await until(lambda: queue.busy_rounds > 0, "a round that found the lock taken")
            assert not done.done()
            await other.execute("DELETE FROM banyan_mirror_writes")  # the other one delivered
            assert await asyncio.wait_for(done, 10)
            await until(lambda: ("legacy", "u1") not in fence.remote, "seen delivered")
        finally:
            await other.close()
            await queue.stop()


async def test_a_stored_write_is_announced_to_every_replica_at_once(mirror_db: str) -> None:
    async with aiohttp.ClientSession() as session:
        writer = SharedMirrorQueue(mirror_db, fence=SharedWriteFence(), poll_interval=0.05)
        reader_fence = SharedWriteFence()
        reader = SharedMirrorQueue(mirror_db, fence=reader_fence, poll_interval=3600)
        await writer.start(session, {"legacy": "http://127.0.0.1:1"})
        await reader.start(session, {"legacy": "http://127.0.0.1:1"})
        try:
            await reader.deliver_due()  # a look at the queue (after its worker's first, if busy)
            assert reader_fence.remote == set()
            await enqueue(writer, "k1", user="u7")
            await until(lambda: ("legacy", "u7") in reader_fence.remote, "announced")
            assert reader_fence.pending("legacy", "u7")  # its next request would wait
        finally:
            await writer.stop()
            await reader.stop()


async def test_an_intent_holds_the_user_everywhere_until_the_write_is_stored(
    mirror_db: str,
) -> None:
    """A write's intent is told before its answer leaves: another replica holds the user's next
    request though the write is not stored yet (it may wait behind the user's copies), and goes
    on holding it until the write is stored and delivered."""
    async with aiohttp.ClientSession() as session:
        writer = SharedMirrorQueue(mirror_db, fence=SharedWriteFence(), poll_interval=0.02)
        reader_fence = SharedWriteFence()
        reader = SharedMirrorQueue(mirror_db, fence=reader_fence, poll_interval=0.02)
        await writer.start(session, {"legacy": "http://127.0.0.1:1"})
        await reader.start(session, {"legacy": "http://127.0.0.1:1"})
        try:
            await asyncio.gather(*(writer.announce_intent("legacy", f"u{n}") for n in range(5)))
            await until(lambda: ("legacy", "u4") in reader_fence.intents, "intents told")
            assert set(reader_fence.intents) == {("legacy", f"u{n}") for n in range(5)}
            (held,) = reader_fence.pending("legacy", "u1")
            await reader.deliver_due()  # a look at the queue: nothing stored for u1 yet
            await asyncio.sleep(0.1)
            assert not held.done()  # the intent still holds
            await enqueue(writer, "k1", user="u1")  # delivery fails (nothing listens)
            await until(lambda: ("legacy", "u1") in reader_fence.remote, "stored, announced")
            assert ("legacy", "u1") not in reader_fence.intents
            assert not held.done()
            await writer.announce_intent("legacy", None)  # no user: nothing to tell
            other = await asyncpg.connect(dsn(mirror_db))
            try:
                await other.execute("DELETE FROM banyan_mirror_writes")  # delivered elsewhere
            finally:
                await other.close()
            await until(held.done, "released once the queue no longer has it")
        finally:
            await writer.stop()
            await reader.stop()


async def test_an_intent_whose_write_never_comes_lapses() -> None:
    fence = SharedWriteFence()
    fence.intend({("new", "u1")})
    (held,) = fence.pending("new", "u1")
    fence.update(set())
    assert not held.done()
    fence.intents[("new", "u1")] = 0.0  # its replica died before storing the write
    fence.update(set())
    assert held.done() and fence.intents == {} and fence.pending("new", "u1") == []


async def test_a_replica_answers_a_mirrored_write_only_once_its_intent_was_told(
    tmp_path: Path, control_db: str, mirror_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Through a real proxy replica: a write to be mirrored is answered after its intent reached
    PostgreSQL, and another replica's fence then holds that user (before, a next request landing
    on another replica within the milliseconds before the write was stored was not held)."""
    monkeypatch.setenv("BANYAN_MIRROR_DB", mirror_db)
    legacy, new = Recorder("legacy"), Recorder("new")
    user = str(uuid.uuid4())
    token = jwt.encode({"sub": user}, "any-key-of-some-length-0123456789", algorithm="HS256")
    features = '  api:\n    routes: ["/api/**"]\n    mode: legacy\n    writes: mirror\n'
    async with serve(legacy.app) as legacy_url, serve(new.app) as new_url:
        flags = tmp_path / "flags.yaml"
        flags.write_text(flags_yaml(legacy_url, new_url, features))
        app = create_app(flags, health_interval=5, control_db=control_db)
        async with serve(app) as proxy, aiohttp.ClientSession() as session:
            state = app[STATE]
            assert isinstance(state.mirror, SharedMirrorQueue)
            told: list[float] = []
            announce = state.mirror.announce_intent

            async def recorded(target: str, who: str | None) -> None:
                await announce(target, who)
                told.append(time.monotonic())

            state.mirror.announce_intent = recorded  # type: ignore[method-assign]
            other_fence = SharedWriteFence()
            other = SharedMirrorQueue(mirror_db, fence=other_fence, poll_interval=3600)
            await other.start(session, {"new": new_url})
            try:
                headers = {"Authorization": f"Bearer {token}"}
                async with session.post(proxy + "/api/notes", json={}, headers=headers) as answer:
                    assert answer.status < 300
                    answered = time.monotonic()
                async with session.get(proxy + "/api/notes", headers=headers) as answer:
                    assert answer.status < 300  # a read: no intent
                assert len(told) == 1 and told[0] <= answered
                await until(
                    lambda: (
                        ("new", user) in other_fence.intents or ("new", user) in other_fence.remote
                    ),
                    "the other replica heard of the write",
                )
                assert other_fence.pending("new", user)
            finally:
                await other.stop()
