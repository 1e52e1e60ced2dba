"""The copy sender: copies leave from a real helper process and come back as answers; when the
helper dies or cannot start, copies are sent in-process and nothing hangs."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import pytest
from aiohttp import web

from banyan.ports import free_port
from banyan.proxy import copy_sender
from banyan.proxy.copy_sender import Channel, Copy, CopySender, serve_jobs
from banyan.proxy.upstream import Upstreams
from banyan.serving import serve

BIG = bytes(range(256)) * 4096  # 1 MiB: many reads on either side of the socket pair


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


@contextlib.asynccontextmanager
async def running_sender(**options: Any) -> AsyncIterator[CopySender]:
    """A started :class:`CopySender` with its own upstream pools, stopped on the way out."""
    upstreams = Upstreams()
    made = CopySender(**options)
    made.start(upstreams)
    try:
        yield made
    finally:
        await made.stop()
        upstreams.close()


@pytest.fixture
async def sender() -> AsyncIterator[CopySender]:
    async with running_sender(max_inflight=8, in_process=False) as made:
        yield made


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().rsplit(")", 1)[1].split()[0] != "Z"


async def test_a_copy_goes_through_the_helper_process(candidate: str, sender: CopySender) -> None:
    answer = await sender.send(
        copy_of("POST", candidate + "/api/items?x=1", {"Idempotency-Key": "k-1"}, b"hello", 5, 1000)
    )
    assert sender.helper_pid is not None and sender.helper_pid != os.getpid()
    assert alive(sender.helper_pid)
    assert answer.status == 201 and answer.error is None
    assert answer.headers["x-seen-key"] == "k-1"  # header names come back lower-case
    assert answer.body == b'{"method": "POST", "path": "/api/items?x=1", "body": "hello"}'
    assert answer.latency_ms > 0
    assert sender.started == 1


async def test_the_helper_runs_below_the_proxy(candidate: str, sender: CopySender) -> None:
    await sender.send(copy_of("GET", candidate + "/x", {}, b"", 5, 1000))
    pid = sender.helper_pid
    assert pid is not None
    own = os.getpriority(os.PRIO_PROCESS, 0)
    assert os.getpriority(os.PRIO_PROCESS, pid) == min(19, own + copy_sender.NICE)
    # woken by a copy, it never preempts the process running: it waits for the next tick
    assert os.sched_getscheduler(pid) == os.SCHED_BATCH


async def test_many_copies_at_once_each_get_their_own_answer(
    candidate: str, sender: CopySender
) -> None:
    answers = await asyncio.gather(
        *(sender.send(copy_of("GET", f"{candidate}/n/{i}", {}, b"", 5, 1000)) for i in range(40))
    )
    assert [a.body.split(b'"path": "')[1].split(b'"')[0] for a in answers] == [
        f"/n/{i}".encode() for i in range(40)
    ]
    assert sender.started == 1  # one helper for all of them


async def test_large_bodies_cross_the_socket_pair_whole(candidate: str, sender: CopySender) -> None:
    answer = await sender.send(copy_of("GET", candidate + "/big", {}, b"", 5, len(BIG)))
    assert answer.body == BIG
    over = await sender.send(copy_of("GET", candidate + "/big", {}, b"", 5, len(BIG) - 1))
    assert over.error == "body_too_large" and over.body == b""


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


async def test_stop_ends_the_helper(candidate: str, sender: CopySender) -> None:
    await sender.send(copy_of("GET", candidate + "/x", {}, b"", 5, 1000))
    pid = sender.helper_pid
    assert pid is not None
    await sender.stop()
    assert sender.helper_pid is None
    assert not alive(pid)


async def test_a_helper_that_dies_fails_its_copies_then_is_replaced(
    candidate: str, sender: CopySender, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(copy_sender, "FIRST_RETRY_SECONDS", 0.3)
    sender._retry_after = 0.3
    await sender.send(copy_of("GET", candidate + "/warm", {}, b"", 5, 1000))
    first = sender.helper_pid
    assert first is not None
    in_flight = asyncio.ensure_future(
        sender.send(copy_of("GET", candidate + "/hang", {}, b"", 30, 1000))
    )
    await asyncio.sleep(0.3)
    os.kill(first, signal.SIGKILL)
    lost = await asyncio.wait_for(in_flight, 5)
    assert lost.error == copy_sender.HELPER_EXITED and sender.lost == 1
    assert sender.helper_pid is None
    # until the retry is due, copies are sent in-process, and answered all the same
    meanwhile = await sender.send(copy_of("GET", candidate + "/meanwhile", {}, b"", 5, 1000))
    assert meanwhile.status == 200 and sender.helper_pid is None
    await asyncio.sleep(0.4)
    again = await sender.send(copy_of("GET", candidate + "/again", {}, b"", 5, 1000))
    assert again.status == 200
    assert sender.helper_pid not in (None, first) and sender.started == 2


async def test_a_helper_that_cannot_start_leaves_copies_in_process(
    candidate: str, sender: CopySender, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "executable", "/nonexistent/python")
    answer = await sender.send(copy_of("GET", candidate + "/x", {}, b"", 5, 1000))
    assert answer.status == 200 and sender.started == 0
    assert sender._retry_at > 0 and sender._retry_after == 2 * copy_sender.FIRST_RETRY_SECONDS


async def test_in_process_mode_starts_no_helper(candidate: str) -> None:
    async with running_sender(in_process=True) as made:
        answer = await made.send(copy_of("GET", candidate + "/x", {}, b"", 5, 1000))
        hanging = asyncio.ensure_future(
            made.send(copy_of("GET", candidate + "/hang", {}, b"", 0.5, 10))
        )
        await asyncio.sleep(0.1)
        sending = made.status()["in_flight"]
        cut = await hanging
    assert answer.status == 200 and made.helper_pid is None and made.started == 0
    assert made.status()["mode"] == "in_process" and sending == 1
    assert cut.error == "candidate timed out" and made.status()["in_flight"] == 0


def test_copies_stay_in_the_proxys_process_unless_a_helper_is_asked_for() -> None:
    assert CopySender().in_process and not CopySender(in_process=False).in_process


async def test_a_hung_helper_cannot_hold_a_copy_forever(
    candidate: str, sender: CopySender, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(copy_sender, "GRACE_SECONDS", 0.2)
    await sender.send(copy_of("GET", candidate + "/warm", {}, b"", 5, 1000))
    pid = sender.helper_pid
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)  # a helper that no longer answers (but still exists)
    try:
        answer = await asyncio.wait_for(
            sender.send(copy_of("GET", candidate + "/x", {}, b"", 0.2, 1000)), 5
        )
    finally:
        os.kill(pid, signal.SIGCONT)
    assert answer.error == copy_sender.HELPER_SILENT


async def test_serve_jobs_answers_on_its_socket_and_ends_when_it_closes(candidate: str) -> None:
    """The helper's loop, run in this process over a socket pair."""
    ours, theirs = socket.socketpair()
    serving = asyncio.ensure_future(serve_jobs(theirs.detach(), 4))
    answers: asyncio.Queue[Any] = asyncio.Queue()
    channel = Channel(answers.put_nowait, lambda: None)
    loop = asyncio.get_running_loop()
    await loop.create_unix_connection(lambda: channel, sock=ours)
    channel.send(copy_of("PUT", candidate + "/a", {}, b"x", 5.0, 1000).as_job(7))
    channel.send(copy_of("GET", candidate + "/big", {}, b"", 5.0, len(BIG)).as_job(8))
    got = {}
    for _ in range(2):
        message = await asyncio.wait_for(answers.get(), 5)
        got[message[0]] = message
    assert got[7][1] == 200 and b'"method": "PUT"' in got[7][3]
    assert got[8][3] == BIG and got[8][5] is None
    channel.close()
    await asyncio.wait_for(serving, 5)
