"""Tests for banyan/serving.py, banyan/ports.py and banyan/logs.py."""

from __future__ import annotations

import asyncio
import errno
import gc
import json
import select
import socket
import time

import httpx
import pytest
from aiohttp import web

from banyan import logs, serving
from banyan.ports import free_port
from banyan.serving import serve


def _app() -> web.Application:
    app = web.Application()

    async def hello(_: web.Request) -> web.Response:
        return web.json_response({"hello": "world"})

    app.router.add_get("/", hello)
    return app


async def test_serve_binds_port_zero_and_stops() -> None:
    async with serve(_app()) as url:
        assert url.startswith("http://127.0.0.1:") and not url.endswith(":0")
        async with httpx.AsyncClient() as client:
            assert (await client.get(url)).json() == {"hello": "world"}
    with pytest.raises(httpx.ConnectError):
        async with httpx.AsyncClient() as client:
            await client.get(url)


async def test_a_burst_of_connections_waits_in_the_backlog_not_in_resent_handshakes() -> None:
    # The loop is kept busy (nothing here awaits), as a loaded proxy's is: every handshake must
    # complete in the kernel's queue. With aiohttp's 128, the rest were dropped and resent a
    # second later, which made 504s of a 2 s connect timeout.
    burst = 400
    async with serve(_app()) as url:
        port = int(url.rsplit(":", 1)[1])
        sockets = [socket.socket() for _ in range(burst)]
        try:
            for sock in sockets:
                sock.setblocking(False)
                assert sock.connect_ex(("127.0.0.1", port)) in (0, errno.EINPROGRESS)
            poller, pending = select.poll(), {sock.fileno() for sock in sockets}
            for fd in pending:
                poller.register(fd, select.POLLOUT)
            deadline = time.monotonic() + 0.8  # a dropped handshake is resent after 1 s
            while pending and time.monotonic() < deadline:
                for fd, _ in poller.poll(50):
                    poller.unregister(fd)
                    pending.discard(fd)
            assert not pending, f"{len(pending)} of {burst} handshakes were not completed"
            assert all(sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0 for sock in sockets)
        finally:
            for sock in sockets:
                sock.close()


def test_free_port_is_bindable() -> None:
    port = free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


async def test_serve_forever_stops_on_signal(capsys: pytest.CaptureFixture[str]) -> None:
    port = free_port()
    task = asyncio.create_task(serving.serve_forever("demo", _app, "127.0.0.1", port))
    async with httpx.AsyncClient() as client:
        for _ in range(100):
            try:
                response = await client.get(f"http://127.0.0.1:{port}/")
                break
            except httpx.ConnectError:
                await asyncio.sleep(0.02)
    assert response.status_code == 200
    assert f"banyan demo listening on http://127.0.0.1:{port}" in capsys.readouterr().out
    assert gc.get_freeze_count() > 0  # what startup built is out of the collector's way
    gc.unfreeze()
    import os
    import signal

    os.kill(os.getpid(), signal.SIGTERM)
    await asyncio.wait_for(task, 10)


def test_logs_are_json_lines(capsys: pytest.CaptureFixture[str]) -> None:
    logs._configured = False
    logs.configure("debug")
    logs.configure()  # idempotent
    logs.get_logger("test", feature="f").info("something_happened", request_id="r1")
    line = capsys.readouterr().err.strip().splitlines()[-1]
    event = json.loads(line)
    assert event["event"] == "something_happened"
    assert event["component"] == "test" and event["feature"] == "f" and event["request_id"] == "r1"
