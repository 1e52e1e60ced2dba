"""The proxy's HTTP/1.1 client (banyan/proxy/upstream/): pooling, retries, framing, limits."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from banyan.errors import ConnectError, ConnectionClosed, UpstreamTimeout
from banyan.ports import free_port
from banyan.proxy.limits import Limits
from banyan.proxy.upstream import (
    Body,
    Pool,
    PoolSettings,
    UpstreamError,
    Upstreams,
    finish,
    origin_of,
    send,
)
from tests.proxy.raw_upstream import RawUpstream


@pytest.fixture
async def upstream() -> AsyncIterator[tuple[RawUpstream, str]]:
    raw = RawUpstream("legacy")
    async with raw.serving() as url:
        yield raw, url


def head(method: str, target: str, *lines: str) -> bytes:
    fields = "".join(f"{line}\r\n" for line in ("Host: h", *lines))
    return f"{method} {target} HTTP/1.1\r\n{fields}\r\n".encode()


async def fetch(
    pool: Pool, method: str, target: str, *lines: str, body: Body | None = None
) -> tuple[int, bytes]:
    conn = await send(
        pool, method, head(method, target, *lines), body, connect_timeout=2, read_timeout=2
    )
    try:
        parts = []
        while chunk := await conn.next_chunk(2):
            parts.append(chunk)
        return conn.status, b"".join(parts)
    finally:
        finish(pool, conn)


def pool_for(url: str, **settings: float) -> Pool:
    return Pool(origin_of(url), Limits(), PoolSettings(**settings))  # type: ignore[arg-type]


async def test_a_keep_alive_connection_is_reused(upstream: tuple[RawUpstream, str]) -> None:
    raw, url = upstream
    pool = pool_for(url)
    try:
        for _ in range(3):
            assert await fetch(pool, "GET", "/a") == (200, b"ok")
    finally:
        pool.close()
    assert raw.connections == 1 and len(raw.requests) == 3


async def test_an_idle_connection_the_upstream_closed_is_retried_once_for_a_get(
    upstream: tuple[RawUpstream, str],
) -> None:
    raw, url = upstream
    raw.drop_second = True
    pool = pool_for(url)
    try:
        assert await fetch(pool, "GET", "/a") == (200, b"ok")
        assert await fetch(pool, "GET", "/b") == (200, b"ok")  # the retry, on a fresh connection
        with pytest.raises(UpstreamError) as lost:  # never retried: it could apply twice
            await fetch(pool, "POST", "/c", "Content-Length: 1", body=Body(b"x"))
    finally:
        pool.close()
    assert isinstance(lost.value, ConnectionClosed) and lost.value.kind == "closed"
    assert [r.target for r in raw.requests] == [b"/a", b"/b"] and raw.connections == 2


async def test_an_idle_connection_is_closed_after_the_idle_timeout(
    upstream: tuple[RawUpstream, str],
) -> None:
    raw, url = upstream
    pool = pool_for(url, idle_timeout=0.05)
    try:
        await fetch(pool, "GET", "/a")
        await asyncio.sleep(0.2)
        assert pool.idle == [] and pool.size == 0  # swept
        await fetch(pool, "GET", "/b")
    finally:
        pool.close()
    assert raw.connections == 2


async def test_a_full_pool_makes_a_request_wait_then_504(upstream: tuple[RawUpstream, str]) -> None:
    raw, url = upstream
    raw.answers["/hang"] = lambda _: b""  # answers nothing
    pool = pool_for(url, max_connections=1)
    try:
        held = await pool.acquire(1)
        with pytest.raises(UpstreamError) as waited:
            await send(pool, "GET", head("GET", "/a"), None, connect_timeout=0.1, read_timeout=1)
        pool.release(held, reusable=False)
        assert await fetch(pool, "GET", "/a") == (200, b"ok")  # the slot came back
    finally:
        pool.close()
    assert isinstance(waited.value, UpstreamTimeout) and waited.value.status == 504


async def test_a_wait_on_a_reused_connection_gets_its_own_full_timeout(
    upstream: tuple[RawUpstream, str],
) -> None:
    """One timer serves a connection's waits: a later wait's deadline is its own, neither the
    first request's (cut early) nor forgotten (never cut)."""
    raw, url = upstream
    raw.answers["/hang"] = lambda _: b""  # answers nothing
    pool = pool_for(url)
    loop = asyncio.get_running_loop()
    try:
        conn = await send(pool, "GET", head("GET", "/a"), None, connect_timeout=1, read_timeout=0.3)
        assert await conn.next_chunk(0.3) == b"ok" and await conn.next_chunk(0.3) == b""
        finish(pool, conn)
        await asyncio.sleep(0.2)  # the first wait's deadline is near: the timer is still armed
        started = loop.time()
        with pytest.raises(UpstreamTimeout):
            await send(pool, "GET", head("GET", "/hang"), None, connect_timeout=1, read_timeout=0.3)
        waited = loop.time() - started
    finally:
        pool.close()
    assert raw.connections == 1 and 0.28 <= waited < 1.0, waited


async def test_a_refused_connection_is_a_connect_error() -> None:
    pool = pool_for(f"http://127.0.0.1:{free_port()}")
    with pytest.raises(UpstreamError) as refused:
        await fetch(pool, "GET", "/a")
    assert isinstance(refused.value, ConnectError) and refused.value.status == 502
    assert pool.size == 0


async def test_framings_head_interim_chunked_and_close_delimited(
    upstream: tuple[RawUpstream, str],
) -> None:
    raw, url = upstream
    raw.answers["/head"] = b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n"
    raw.answers["/continue"] = (
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nhi"
    )
    raw.answers["/chunked"] = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
    )
    pool = pool_for(url)
    try:
        assert await fetch(pool, "HEAD", "/head") == (200, b"")
        assert await fetch(pool, "GET", "/after-head") == (200, b"ok")  # same connection
        assert await fetch(pool, "GET", "/continue") == (201, b"hi")
        assert await fetch(pool, "GET", "/chunked") == (200, b"abcde")
        assert raw.connections == 1
        raw.answers["/eof"] = b"HTTP/1.1 200 OK\r\n\r\nuntil the end"
        raw.close_after_answer = True
        assert await fetch(pool, "GET", "/eof") == (200, b"until the end")
    finally:
        pool.close()


async def test_an_answer_cut_mid_body_is_an_error(upstream: tuple[RawUpstream, str]) -> None:
    raw, url = upstream
    raw.answers["/cut"] = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly this"
    raw.close_after_answer = True
    pool = pool_for(url)
    try:
        with pytest.raises(UpstreamError) as cut:
            await fetch(pool, "GET", "/cut")
    finally:
        pool.close()
    assert isinstance(cut.value, ConnectionClosed) and pool.size == 0


async def test_a_streamed_body_keeps_the_clients_framing(upstream: tuple[RawUpstream, str]) -> None:
    raw, url = upstream
    stream = asyncio.StreamReader()  # stands in for aiohttp's request payload: readany()

    class Payload:
        async def readany(self) -> bytes:
            return await stream.read(3)

    for part in (b"abc", b"def"):
        stream.feed_data(part)
    stream.feed_eof()
    pool = pool_for(url)
    try:
        status, _ = await fetch(
            pool,
            "POST",
            "/up",
            "Transfer-Encoding: chunked",
            body=Body(stream=Payload(), chunked=True),  # type: ignore[arg-type]
        )
    finally:
        pool.close()
    assert status == 200 and raw.requests[0].body == b"abcdef"
    assert raw.requests[0].wire_body == b"3\r\nabc\r\n3\r\ndef\r\n0\r\n\r\n"


def test_origins_and_targets() -> None:
    plain = origin_of("http://127.0.0.1:8001")
    assert plain.target(b"/a?b") == b"/a?b" and plain.authority == b"127.0.0.1:8001"
    prefixed = origin_of("https://api.example/base/")
    assert prefixed.port == 443 and prefixed.tls and prefixed.prefix == b"/base"
    assert prefixed.target(b"/a?b") == b"/base/a?b"
    assert prefixed.target(b"http://front/a?b") == b"http://front/base/a?b"
    assert prefixed.target(b"http://front?b") == b"http://front/base/?b"
    assert Upstreams().pool("http://127.0.0.1:1") is not None
