"""Tests for banyan/client_timeouts.py: slow clients are closed, through the real proxy.

Raw sockets play the slow clients (half a request line, then nothing; headers, then a body that
stops coming). Waits are generous: what is asserted is that the server closed the connection, never
how fast it did.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import pytest

from banyan.client_timeouts import ClientTimeouts
from banyan.proxy.app import create_app
from banyan.serving import serve
from tests.proxy.conftest import ALL_LEGACY
from tests.proxy.upstreams import Recorder, flags_yaml

CLOSED_WITHIN = 15.0  # how long a test waits for a close that should come after a fraction of it


@asynccontextmanager
async def proxy(tmp_path: Path, timeouts: ClientTimeouts) -> AsyncIterator[tuple[str, int]]:
    legacy = Recorder("legacy")
    async with serve(legacy.app) as upstream:
        flags = tmp_path / "flags.yaml"
        flags.write_text(flags_yaml(upstream, upstream, ALL_LEGACY))
        app = create_app(flags, access_log=False, health_interval=0.2)
        async with serve(app, timeouts=timeouts) as url:
            yield url, int(url.rsplit(":", 1)[1])


async def read_until_closed(reader: asyncio.StreamReader) -> bytes:
    """Everything the server sends until it closes the connection (fails if it never does)."""
    received = b""
    while True:
        chunk = await asyncio.wait_for(reader.read(65536), CLOSED_WITHIN)
        if not chunk:
            return received
        received += chunk


async def test_half_a_request_line_then_nothing_gets_408_and_closed(tmp_path: Path) -> None:
    async with proxy(tmp_path, ClientTimeouts(header=0.5, body=30, keepalive=30)) as (_, port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /echo/slow HT")
        await writer.drain()
        answer = await read_until_closed(reader)
        writer.close()
        assert answer.startswith(b"HTTP/1.1 408 "), answer
        assert b'"code": "request_timeout"' in answer or b'"code":"request_timeout"' in answer


async def test_a_connection_that_never_speaks_is_closed_silently(tmp_path: Path) -> None:
    async with proxy(tmp_path, ClientTimeouts(header=0.5, body=30, keepalive=30)) as (_, port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        assert await read_until_closed(reader) == b""
        writer.close()


async def test_headers_dribbled_slower_than_the_timeout_are_cut(tmp_path: Path) -> None:
    """The head must arrive whole in time: a byte now and then does not keep it open."""
    async with proxy(tmp_path, ClientTimeouts(header=0.5, body=30, keepalive=30)) as (_, port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        closed = asyncio.ensure_future(read_until_closed(reader))
        for byte in b"GET /echo/x HTTP/1.1\r\nHost: a\r\nX-Slow: " + b"y" * 100:
            if closed.done():
                break
            writer.write(bytes([byte]))
            await asyncio.sleep(0.05)
        answer = await closed
        writer.close()
        assert answer.startswith(b"HTTP/1.1 408 "), answer


async def test_a_body_that_stops_coming_is_cut(tmp_path: Path) -> None:
    async with proxy(tmp_path, ClientTimeouts(header=30, body=0.5, keepalive=30)) as (_, port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            b"POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 1000\r\n\r\n" + b"x" * 10
        )
        await writer.drain()
        answer = await read_until_closed(reader)
        writer.close()
        assert b"200 OK" not in answer


async def test_a_dribbled_body_is_read_while_it_keeps_coming_then_cut_when_it_stalls(
    tmp_path: Path,
) -> None:
    """The body timeout is the wait between reads (nginx's): a body trickling in for longer than
    the timeout, a piece well within it each time, is read whole; one that stops is cut."""
    async with proxy(tmp_path, ClientTimeouts(header=30, body=2.0, keepalive=30)) as (_, port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 40\r\n\r\n")
        for _ in range(40):  # 4 s of trickle, 0.1 s apart: twice the timeout in all
            writer.write(b"x")
            await writer.drain()
            await asyncio.sleep(0.1)
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), CLOSED_WITHIN)
        assert head.startswith(b"HTTP/1.1 200 "), head
        length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        assert b'"size": 40' in await reader.readexactly(length)
        # the same connection, kept alive: a second body that stalls is cut
        writer.write(b"POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 40\r\n\r\nxx")
        await writer.drain()
        assert b"200 OK" not in await read_until_closed(reader)
        writer.close()


async def test_idle_websockets_outlive_every_read_timeout(tmp_path: Path) -> None:
    timeouts = ClientTimeouts(header=0.3, body=0.3, keepalive=0.3)
    async with proxy(tmp_path, timeouts) as (url, _), aiohttp.ClientSession() as session:
        async with session.ws_connect(url + "/ws/echo") as ws:
            await asyncio.sleep(1.5)  # five times every timeout, not a frame exchanged
            await ws.send_str("still open")
            assert (await ws.receive(timeout=10)).data == "echo:still open"


def test_timeouts_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert ClientTimeouts.from_env(os.environ) == ClientTimeouts(header=60, body=60, keepalive=75)
    monkeypatch.setenv("BANYAN_CLIENT_HEADER_TIMEOUT", "5")
    monkeypatch.setenv("BANYAN_CLIENT_BODY_TIMEOUT", "7.5")
    monkeypatch.setenv("BANYAN_KEEPALIVE_TIMEOUT", "20")
    assert ClientTimeouts.from_env(os.environ) == ClientTimeouts(header=5, body=7.5, keepalive=20)
    monkeypatch.setenv("BANYAN_CLIENT_BODY_TIMEOUT", "soon")
    with pytest.raises(ValueError, match="BANYAN_CLIENT_BODY_TIMEOUT must be a number"):
        ClientTimeouts.from_env(os.environ)
    monkeypatch.setenv("BANYAN_CLIENT_BODY_TIMEOUT", "0")
    with pytest.raises(ValueError, match="must be positive"):
        ClientTimeouts.from_env(os.environ)


async def test_a_body_the_server_is_too_busy_to_read_is_not_the_clients_fault(
    tmp_path: Path,
) -> None:
    """The upstream reads nothing for 6 s while the client sends 32 MiB as fast as it can: the
    proxy stops reading the client (its buffers are full) and the body clock (2 s: room for a
    loaded machine to schedule the client) stops with it."""
    size = 32 * 1024 * 1024
    async with proxy(tmp_path, ClientTimeouts(header=30, body=2, keepalive=30)) as (url, _):
        async with aiohttp.ClientSession() as session:
            async with session.post(
                url + "/upload?wait=6",
                data=b"z" * size,
                timeout=aiohttp.ClientTimeout(total=60),
            ) as response:
                assert response.status == 200
                assert (await response.json())["size"] == size
