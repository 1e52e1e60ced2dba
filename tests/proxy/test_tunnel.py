"""Tests for banyan/proxy/tunnel.py: sockets nothing reads go through as bytes.

The frame cursor is tried on frames of every length form cut at every byte; the tunnel itself
through the running proxy (every feature of ``ALL_LEGACY`` is neither shadowed nor mirrored, so
its sockets are tunnels).
"""

from __future__ import annotations

import asyncio
import base64
import os
from typing import Any

import aiohttp
import pytest
from aiohttp import WSMsgType

from banyan.proxy.tunnel import FrameCursor, Tunnel, close_frame
from tests.proxy.conftest import ALL_LEGACY


def frame(opcode: int, payload: bytes, *, masked: bool) -> bytes:
    size = len(payload)
    if size < 126:
        head = bytes((0x80 | opcode, (0x80 if masked else 0) | size))
    elif size < 1 << 16:
        head = bytes((0x80 | opcode, (0x80 if masked else 0) | 126)) + size.to_bytes(2, "big")
    else:
        head = bytes((0x80 | opcode, (0x80 if masked else 0) | 127)) + size.to_bytes(8, "big")
    if not masked:
        return head + payload
    key = os.urandom(4)
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


@pytest.mark.parametrize("masked", [False, True])
def test_the_cursor_finds_every_frame_end_however_the_bytes_are_cut(masked: bool) -> None:
    frames = [
        frame(0x1, b"", masked=masked),
        frame(0x1, b"hi", masked=masked),
        frame(0x2, b"x" * 125, masked=masked),
        frame(0x2, b"y" * 126, masked=masked),
        frame(0x2, b"z" * 70_000, masked=masked),
        frame(0x9, b"ping", masked=masked),
    ]
    stream = b"".join(frames)
    ends = set()
    offset = 0
    for f in frames:
        offset += len(f)
        ends.add(offset)
    for cut in (1, 2, 3, 7, 13, 4096):
        cursor = FrameCursor()
        seen = set()
        position = 0
        while position < len(stream):
            piece = stream[position : position + cut]
            walked = 0
            while walked < len(piece):  # stop at every frame end inside the piece
                step = cursor.walk(piece[walked:], until_boundary=True)
                if step == 0:  # at a boundary already: step over the next frame's first byte
                    step = cursor.walk(piece[walked : walked + 1])
                walked += step
                if cursor.at_boundary:
                    seen.add(position + walked)
            position += len(piece)
        assert seen == ends, cut
        assert not cursor.closed
    closing = FrameCursor()
    closing.walk(stream + close_frame(1000, "bye", masked=masked))
    assert closing.closed and closing.at_boundary


def test_close_frames_are_masked_only_towards_the_upstream() -> None:
    plain = close_frame(1012, "flag changed", masked=False)
    assert plain == b"\x88\x0e\x03\xf4flag changed"
    hidden = close_frame(1012, "flag changed", masked=True)
    assert hidden[:2] == b"\x88\x8e" and len(hidden) == 2 + 4 + 14
    key = hidden[2:6]
    assert bytes(b ^ key[i % 4] for i, b in enumerate(hidden[6:])) == plain[2:]
    assert len(close_frame(1000, "r" * 500, masked=False)) == 2 + 125  # a control frame's limit


async def test_plain_sockets_are_tunnels(make_stack: Any) -> None:
    async with make_stack() as stack, aiohttp.ClientSession() as session:
        async with session.ws_connect(stack.url + "/ws/echo") as ws:
            await ws.send_str("hello")
            assert (await ws.receive()).data == "echo:hello"
            (link,) = stack.state.bridges._open
            assert isinstance(link, Tunnel)


async def test_an_upstream_that_vanishes_leaves_the_client_a_1001(make_stack: Any) -> None:
    async with make_stack() as stack, aiohttp.ClientSession() as session:
        async with session.ws_connect(stack.url + "/ws/echo") as ws:
            await ws.send_str("drop")
            message = await ws.receive(timeout=10)
            assert message.type == WSMsgType.CLOSE
            assert message.data == 1001 and message.extra == "peer went away"
        for _ in range(250):
            if not len(stack.state.bridges):
                break
            await asyncio.sleep(0.02)
        assert len(stack.state.bridges) == 0


async def test_big_messages_both_ways_while_the_client_reads_late(make_stack: Any) -> None:
    """64 messages of 256 KiB sent before a single one is read: more than socket buffers hold,
    so the tunnel has to stop reading one side until the other drains; nothing is lost."""
    async with make_stack() as stack, aiohttp.ClientSession() as session:
        async with session.ws_connect(stack.url + "/ws/echo", max_msg_size=0) as ws:
            sent = [os.urandom(256 * 1024) for _ in range(64)]
            writer = asyncio.ensure_future(
                asyncio.gather(*(ws.send_bytes(m) for m in sent))  # queued in order
            )
            await asyncio.sleep(0.5)  # let the buffers fill before reading anything
            for message in sent:
                got = await ws.receive(timeout=30)
                assert got.type == WSMsgType.BINARY and got.data == message[::-1]
            await writer


async def test_bytes_sent_right_behind_the_handshake_are_not_lost(make_stack: Any) -> None:
    async with make_stack() as stack:
        port = int(stack.url.rsplit(":", 1)[1])
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write(
            (
                "GET /ws/echo HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
            + frame(0x1, b"early", masked=True)  # in the same write as the handshake
        )
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        assert head.startswith(b"HTTP/1.1 101 ")
        assert b"x-banyan-backend: legacy" in head.lower()
        answer = await asyncio.wait_for(reader.readexactly(2 + len("echo:early")), 10)
        assert answer == frame(0x1, b"echo:early", masked=False)
        writer.write(close_frame(1000, "done", masked=True))
        reply = await asyncio.wait_for(reader.read(64), 10)
        assert reply[0] == 0x88 and reply[2:4] == b"\x03\xe8"  # the upstream's close reply
        writer.close()


async def test_a_request_that_is_no_handshake_is_refused(make_stack: Any) -> None:
    async with make_stack() as stack, aiohttp.ClientSession() as session:
        async with session.get(
            stack.url + "/ws/echo", headers={"Upgrade": "websocket", "Connection": "Upgrade"}
        ) as response:
            assert response.status == 400
            assert (await response.json())["error"]["code"] == "bad_request"
        assert stack.legacy.open_sockets == 0


async def test_a_flip_closes_between_frames_never_inside_one(make_stack: Any) -> None:
    """The flip comes while the client is halfway through a frame: the client is told 1012 at
    once (the upstream's side is between frames), the upstream only once the frame is whole."""
    async with make_stack() as stack:
        port = int(stack.url.rsplit(":", 1)[1])
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write(
            (
                "GET /ws/echo HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        assert (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)).startswith(
            b"HTTP/1.1 101 "
        )
        whole = frame(0x1, b"a" * 1000, masked=True)
        writer.write(whole[:600])
        await writer.drain()
        await asyncio.sleep(0.2)  # the first part has gone through before the flip
        stack.write_flags(ALL_LEGACY.replace("mode: legacy", "mode: new\n    websocket: reconnect"))
        assert stack.state.store.check(force=True)
        expected = close_frame(1012, "feature moved; reconnect", masked=False)
        assert await asyncio.wait_for(reader.readexactly(len(expected)), 10) == expected
        writer.write(whole[600:])
        await writer.drain()
        assert await asyncio.wait_for(reader.read(64), 10) == b""  # then the proxy closes
        writer.close()
        for _ in range(250):
            if stack.legacy.socket_texts and not stack.legacy.open_sockets:
                break
            await asyncio.sleep(0.02)
        assert stack.legacy.socket_texts == ["a" * 1000]  # whole, then the close
        assert stack.legacy.open_sockets == 0
