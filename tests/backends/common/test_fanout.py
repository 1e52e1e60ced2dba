"""The fan-out bus against the real Redis: delivery, no echo, isolation by service and prefix,
order, and what a cut or frozen link does (through :class:`RedisFront`, never the real Redis)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable

import pytest
from aiohttp import web

from banyan.backends.common import fanout
from banyan.backends.common.fanout import Bus, Message, decode, encode
from banyan.serving import serve
from tests.backends.common.redis_front import RedisFront, require_redis, unique_prefix


async def until(check: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


@pytest.fixture
async def redis_url() -> str:
    return await require_redis()


@pytest.fixture
async def front(redis_url: str) -> AsyncIterator[RedisFront]:
    proxy = RedisFront(redis_url)
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.close()


def make_bus(url: str, prefix: str, replica: str, service: str = "svc", **options: float) -> Bus:
    settings = {"min_backoff": 0.02, "max_backoff": 0.1, "ping_interval": 0.2, **options}
    return Bus(url, service=service, prefix=prefix, replica=replica, **settings)  # type: ignore[arg-type]


@pytest.fixture
async def pair(redis_url: str) -> AsyncIterator[tuple[Bus, Bus]]:
    prefix = unique_prefix()
    a, b = make_bus(redis_url, prefix, "A"), make_bus(redis_url, prefix, "B")
    await a.start()
    await b.start()
    await until(lambda: a.up and b.up)
    try:
        yield a, b
    finally:
        await a.close()
        await b.close()


def test_envelope_round_trip_and_garbage() -> None:
    data = encode("r-1", "u", b"a|b\x00c")
    assert decode(data) == Message("r-1", "u", b"a|b\x00c")
    assert decode(b"2|r|u|x") is None
    assert decode(b"1|r|u") is None
    assert decode(b"1|\xff|u|x") is None


async def test_messages_reach_other_replicas_in_order_never_the_sender(
    pair: tuple[Bus, Bus],
) -> None:
    a, b = pair
    heard_a: list[Message] = []
    heard_b: list[Message] = []
    channel = a.channel("room", "r1")
    assert channel == b.channel("room", "r1") and channel.endswith(":svc:room:r1")
    await a.subscribe(channel, heard_a.append)
    await b.subscribe(channel, heard_b.append)
    for i in range(50):
        assert a.publish(channel, "u", str(i).encode())
    await until(lambda: len(heard_b) == 50)
    assert [m.body for m in heard_b] == [str(i).encode() for i in range(50)]
    assert {m.sender for m in heard_b} == {"A"}
    await until(lambda: a.stats["own"] == 50)
    assert heard_a == []  # no echo
    assert a.channels == [channel]
    for _ in range(200):
        a.publish(channel, "late", b"")
    await a.close()  # what is queued still goes out
    await until(lambda: len(heard_b) == 250)


async def test_unsubscribe_and_isolation_by_service(pair: tuple[Bus, Bus], redis_url: str) -> None:
    a, b = pair
    other = make_bus(redis_url, a.prefix, "C", service="other")
    await other.start()
    try:
        await until(lambda: other.up)
        heard: list[Message] = []
        heard_other: list[Message] = []
        channel = b.channel("live", "u1")
        await b.subscribe(channel, heard.append)
        await other.subscribe(other.channel("live", "u1"), heard_other.append)
        a.publish(channel, "changed", b"[]")
        await until(lambda: len(heard) == 1)
        await b.unsubscribe(channel)
        await b.unsubscribe(channel)  # twice is fine
        a.publish(channel, "changed", b"[]")
        marker = b.channel("live", "marker")
        await b.subscribe(marker, heard.append)
        a.publish(marker, "m", b"")
        await until(lambda: len(heard) == 2)
        assert [m.kind for m in heard] == ["changed", "m"]
        assert heard_other == []
    finally:
        await other.close()


async def test_a_failing_handler_or_a_foreign_message_does_not_stop_the_bus(
    pair: tuple[Bus, Bus], redis_url: str
) -> None:
    a, b = pair
    heard: list[Message] = []

    def broken(_: Message) -> None:
        raise RuntimeError("boom")

    await b.subscribe(b.channel("t", "bad"), broken)
    await b.subscribe(b.channel("t", "good"), heard.append)
    from redis import asyncio as aioredis

    raw = aioredis.Redis.from_url(redis_url)
    try:
        await raw.publish(b.channel("t", "good"), b"not ours")
    finally:
        await raw.aclose()
    a.publish(b.channel("t", "bad"), "x", b"")
    a.publish(b.channel("t", "good"), "y", b"")
    await until(lambda: len(heard) == 1)
    assert heard[0].kind == "y"


async def test_cut_link_drops_then_resubscribes_and_resyncs(
    front: RedisFront, redis_url: str
) -> None:
    prefix = unique_prefix()
    a = make_bus(front.url, prefix, "A")
    b = make_bus(redis_url, prefix, "B")
    resyncs: list[float] = []
    a.on_resync(lambda: resyncs.append(time.monotonic()))
    heard_a: list[Message] = []
    heard_b: list[Message] = []
    await a.subscribe(a.channel("wb", "r"), heard_a.append)  # before start: sent on connect
    await a.start()
    await b.start()
    try:
        await until(lambda: a.up and b.up)
        assert len(resyncs) == 1
        await b.subscribe(b.channel("wb", "r"), heard_b.append)
        b.publish(b.channel("wb", "r"), "u", b"1")
        await until(lambda: len(heard_a) == 1)

        front.cut()
        await until(lambda: not a.up)
        assert a.up_for() == 0.0
        a.publish(a.channel("wb", "r"), "u", b"lost")  # queued or dropped: never delivered
        await until(lambda: a.stats["dropped"] >= 1)
        assert a.publish(a.channel("wb", "r"), "u", b"lost") is False
        await a.subscribe(a.channel("wb", "late"), heard_a.append)  # while down
        b.publish(b.channel("wb", "r"), "u", b"missed")
        await asyncio.sleep(0.1)

        front.restore()
        await until(lambda: a.up)
        assert len(resyncs) == 2
        assert set(a.channels) == {a.channel("wb", "r"), a.channel("wb", "late")}
        b.publish(b.channel("wb", "late"), "u", b"2")
        b.publish(b.channel("wb", "r"), "u", b"3")
        await until(lambda: len(heard_a) == 3)
        assert [m.body for m in heard_a] == [b"1", b"2", b"3"]
        a.publish(a.channel("wb", "r"), "u", b"back")
        await until(lambda: len(heard_b) == 1)
        assert heard_b[0].body == b"back"
        assert a.up_for() > 0
    finally:
        await a.close()
        await b.close()


async def test_frozen_link_is_noticed_by_its_pings(front: RedisFront) -> None:
    a = make_bus(front.url, unique_prefix(), "A", ping_interval=0.1)
    await a.start()
    try:
        await until(lambda: a.up)
        front.freeze()
        started = time.monotonic()
        await a.subscribe(a.channel("x", "frozen"), lambda _: None)  # unconfirmed: returns
        await until(lambda: not a.up, timeout=5.0)
        assert time.monotonic() - started < 3.0
        front.restore()
        await until(lambda: a.up, timeout=5.0)
    finally:
        await a.close()


async def test_unreachable_redis_at_start_is_retried(front: RedisFront) -> None:
    front.refusing = True
    a = make_bus(front.url, unique_prefix(), "A")
    await a.start()  # never raises
    try:
        await asyncio.sleep(0.2)
        assert not a.up
        await a.subscribe(a.channel("x", "y"), lambda _: None)  # returns at once
        front.restore()
        await until(lambda: a.up)
    finally:
        await a.close()
    assert not a.up
    assert a.publish(a.channel("x", "y"), "k", b"") is False


async def test_full_outbox_drops_and_resyncs_when_drained(redis_url: str) -> None:
    a = make_bus(redis_url, unique_prefix(), "A", outbox_limit=2)
    resyncs: list[int] = []
    a.on_resync(lambda: resyncs.append(1))

    def broken() -> None:
        raise RuntimeError("boom")

    a.on_resync(broken)  # a failing callback does not stop the others
    await a.start()
    try:
        await until(lambda: a.up)
        results = [a.publish(a.channel("x", "y"), "k", b"") for _ in range(5)]
        assert results[:2] == [True, True] and results[2:] == [False] * 3
        await until(lambda: len(resyncs) == 2)
        assert a.stats["dropped"] == 3
    finally:
        await a.close()


async def test_install_only_with_a_url(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BANYAN_REDIS_URL", raising=False)
    assert fanout.install(web.Application(), "svc") is None
    monkeypatch.setenv("BANYAN_REDIS_URL", redis_url)
    monkeypatch.setenv("BANYAN_REDIS_PREFIX", "envprefix")
    app = web.Application()
    bus = fanout.install(app, "svc")
    assert bus is not None and fanout.bus_of(app) is bus
    assert bus.channel("a", "b") == "envprefix:svc:a:b"
    async with serve(app):
        await until(lambda: bus.up)
    assert not bus.up
    assert fanout.bus_of(web.Application()) is None
