"""Sending a shadow copy: the same request reaches the candidate, its answer comes back whole or
cut at its limit, and a timeout or a refusal comes back as an error, never as an exception."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import pytest
from aiohttp import web

from banyan.ports import free_port
from banyan.proxy.limits import Limits
from banyan.proxy.shadow.send import Copy, CopySender
from banyan.proxy.upstream import PoolSettings, Upstreams
from banyan.serving import serve

BIG = bytes(range(256)) * 4096  # 1 MiB: many reads of the answer


def copy_of(
    method: str,
    url: str,
    headers: dict[str, str],
    body: bytes,
    timeout: float,
    limit: int,
) -> Copy:
    """A copy of a request a client sent to ``url`` (the head serialized as the proxy does)."""
    parts = urlsplit(url)
    target = parts.path + ("?" + parts.query if parts.query else "")
    lines = [f"Host: {parts.netloc}", *(f"{k}: {v}" for k, v in headers.items())]
    if body:
        lines.append(f"Content-Length: {len(body)}")
    head = f"{method} {target} HTTP/1.1\r\n" + "".join(f"{line}\r\n" for line in lines) + "\r\n"
    return Copy(method, f"http://{parts.netloc}", head.encode(), body, False, timeout, limit)


def candidate_app() -> web.Application:
    async def echo(request: web.Request) -> web.Response:
        body = await request.read()
        return web.json_response(
            {"method": request.method, "path": request.path_qs, "body": body.decode() or None},
            headers={"X-Seen-Key": request.headers.get("Idempotency-Key", "")},
            status=201 if request.method == "POST" else 200,
        )

    async def big(_: web.Request) -> web.Response:
        return web.Response(body=BIG, content_type="application/octet-stream")

    async def hang(_: web.Request) -> web.Response:
        await asyncio.sleep(3600)
        raise AssertionError("unreachable")

    app = web.Application()
    app.router.add_get("/big", big)
    app.router.add_get("/hang", hang)
    app.router.add_route("*", "/{tail:.*}", echo)
    return app


@pytest.fixture
async def candidate() -> AsyncIterator[str]:
    async with serve(candidate_app()) as url:
        yield url


@pytest.fixture
async def sender() -> AsyncIterator[CopySender]:
    upstreams = Upstreams(Limits(), PoolSettings(max_connections=8))
    made = CopySender()
    made.start(upstreams)
    try:
        yield made
    finally:
        upstreams.close()


async def test_a_copy_reaches_the_candidate_and_its_answer_comes_back(
    candidate: str, sender: CopySender
) -> None:
    answer = await sender.send(
        copy_of("POST", candidate + "/api/items?x=1", {"Idempotency-Key": "k-1"}, b"hello", 5, 1000)
    )
    assert answer.status == 201 and answer.error is None
    assert answer.headers["x-seen-key"] == "k-1"  # header names come back lower-case
    assert answer.body == b'{"method": "POST", "path": "/api/items?x=1", "body": "hello"}'
    assert answer.latency_ms > 0
    assert sender.status() == {"sending": 0, "sent": 1}


async def test_many_copies_at_once_each_get_their_own_answer(
    candidate: str, sender: CopySender
) -> None:
    answers = await asyncio.gather(
        *(sender.send(copy_of("GET", f"{candidate}/n/{i}", {}, b"", 5, 1000)) for i in range(40))
    )
    assert [a.body.split(b'"path": "')[1].split(b'"')[0] for a in answers] == [
        f"/n/{i}".encode() for i in range(40)
    ]


async def test_a_large_answer_is_kept_whole_up_to_the_limit(
    candidate: str, sender: CopySender
) -> None:
    answer = await sender.send(copy_of("GET", candidate + "/big", {}, b"", 5, len(BIG)))
    assert answer.body == BIG
    over = await sender.send(copy_of("GET", candidate + "/big", {}, b"", 5, len(BIG) - 1))
    assert over.error == "body_too_large" and over.body == b"" and over.status == 200


async def test_timeouts_and_refusals_come_back_as_errors(
    candidate: str, sender: CopySender
) -> None:
    hung = await sender.send(copy_of("GET", candidate + "/hang", {}, b"", 0.3, 1000))
    assert hung.error == "candidate timed out" and hung.status == 0
    assert 250 < hung.latency_ms < 3000
    refused = await sender.send(
        copy_of("GET", f"http://127.0.0.1:{free_port()}/x", {}, b"", 2, 1000)
    )
    assert refused.error == "candidate refused or unreachable"


async def test_the_status_counts_the_copies_on_their_way(
    candidate: str, sender: CopySender
) -> None:
    hanging = asyncio.ensure_future(
        sender.send(copy_of("GET", candidate + "/hang", {}, b"", 1, 10))
    )
    for _ in range(100):
        if sender.status()["sending"] == 1:
            break
        await asyncio.sleep(0.01)
    on_its_way = sender.status()
    cut = await hanging
    assert on_its_way == {"sending": 1, "sent": 1}
    assert cut.error == "candidate timed out" and sender.status() == {"sending": 0, "sent": 1}
