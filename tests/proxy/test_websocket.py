"""Tests for banyan/proxy/websocket.py through the running proxy: frames, closes, refusals,
cleanup."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import pytest
from aiohttp import WSMsgType

from banyan.ports import free_port
from tests.proxy.conftest import ALL_LEGACY


async def test_text_binary_ping_and_subprotocol(make_stack: Any) -> None:
    async with make_stack() as stack, aiohttp.ClientSession() as session:
        ws_url = stack.url + "/ws/echo"
        async with session.ws_connect(
            ws_url, protocols=("v2.other", "v1.banyan"), autoping=False
        ) as ws:
            assert ws.protocol == "v1.banyan"
            await ws.send_str("hello")
            assert (await ws.receive()).data == "echo:hello"
            await ws.send_bytes(b"\x01\x02\x03")
            assert (await ws.receive()).data == b"\x03\x02\x01"
            await ws.ping(b"are-you-there")
            pong = await ws.receive()
            assert pong.type == WSMsgType.PONG and pong.data == b"are-you-there"
            await ws.send_str("whoami")
            assert json.loads((await ws.receive()).data)["protocol"] == "v1.banyan"
        for _ in range(250):  # the socket counts until both of its connections have ended
            if stack.state.metrics.open_websockets.get("api", "legacy") == 0:
                break
            await asyncio.sleep(0.02)
        assert stack.state.metrics.open_websockets.get("api", "legacy") == 0


async def test_close_codes_travel_both_ways(make_stack: Any) -> None:
    async with make_stack() as stack, aiohttp.ClientSession() as session:
        async with session.ws_connect(stack.url + "/ws/echo") as ws:
            await ws.send_str("close:4001:server says bye")
            message = await ws.receive()
            assert message.type == WSMsgType.CLOSE
            assert message.data == 4001 and message.extra == "server says bye"
        ws = await session.ws_connect(stack.url + "/ws/echo")
        await ws.close(code=4002, message=b"client says bye")
        for _ in range(100):
            if stack.legacy.open_sockets == 0 and len(stack.state.bridges) == 0:
                break
            await asyncio.sleep(0.02)
        assert stack.legacy.open_sockets == 0 and len(stack.state.bridges) == 0


async def test_upstream_refusal_reaches_the_client(make_stack: Any) -> None:
    async with make_stack() as stack, aiohttp.ClientSession() as session:
        try:
            await session.ws_connect(stack.url + "/ws/private")
            raise AssertionError("the upgrade should have been refused")
        except aiohttp.WSServerHandshakeError as exc:
            assert exc.status == 401
        async with session.ws_connect(stack.url + "/ws/private?token=t0k") as ws:
            assert (await ws.receive()).data == "hello t0k"
        async with session.ws_connect(
            stack.url + "/ws/private", headers={"Authorization": "Bearer abc"}
        ) as ws:
            assert (await ws.receive()).data == "hello Bearer abc"


async def test_upstream_down_is_502(make_stack: Any) -> None:
    async with make_stack() as stack, aiohttp.ClientSession() as session:
        dead = f"http://127.0.0.1:{free_port()}"
        stack.flags.write_text(stack.flags.read_text().replace(stack.legacy_url, dead))
        assert stack.state.store.reload_now()
        async with session.get(
            stack.url + "/ws/echo",
            headers={
                "Upgrade": "websocket",
                "Connection": "Upgrade",
                "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
                "Sec-WebSocket-Version": "13",
            },
        ) as response:
            assert response.status == 502
            assert (await response.json())["error"]["code"] == "bad_gateway"
            assert response.headers["X-Banyan-Backend"] == "legacy"


async def test_open_sockets_stay_on_flip_by_default_and_reconnect_when_asked(
    make_stack: Any,
) -> None:
    async with make_stack() as stack, aiohttp.ClientSession() as session:
        kept = await session.ws_connect(stack.url + "/ws/echo")
        await kept.send_str("whoami")
        assert json.loads((await kept.receive()).data)["backend"] == "legacy"
        stack.write_flags(ALL_LEGACY.replace("mode: legacy", "mode: new"))
        assert stack.state.store.check(force=True)
        await kept.send_str("whoami")
        assert json.loads((await kept.receive()).data)["backend"] == "legacy"
        fresh = await session.ws_connect(stack.url + "/ws/echo")
        await fresh.send_str("whoami")
        assert json.loads((await fresh.receive()).data)["backend"] == "new"
        await kept.close()
        stack.write_flags(
            ALL_LEGACY.replace("mode: legacy", "mode: legacy\n    websocket: reconnect")
        )
        assert stack.state.store.check(force=True)
        message = await asyncio.wait_for(fresh.receive(), 5)
        assert message.type == WSMsgType.CLOSE and message.data == 1012
        await fresh.close()


async def test_proxy_shutdown_closes_bridges(make_stack: Any) -> None:
    async with aiohttp.ClientSession() as session:
        async with make_stack() as stack:
            ws = await session.ws_connect(stack.url + "/ws/echo")
            legacy = stack.legacy
        message = await asyncio.wait_for(ws.receive(), 5)
        assert message.type in (WSMsgType.CLOSE, WSMsgType.CLOSED, WSMsgType.CLOSING)
        await ws.close()
        assert legacy.open_sockets == 0


async def test_access_log_hides_the_query_token(
    make_stack: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    async with make_stack() as stack, aiohttp.ClientSession() as session:
        async with session.ws_connect(stack.url + "/ws/private?token=s3cret-t0k&room=a") as ws:
            assert (await ws.receive()).data == "hello s3cret-t0k"
    captured = capsys.readouterr()
    logged = captured.out + captured.err
    assert "/ws/private?token=[REDACTED]&room=a" in logged
    assert "s3cret-t0k" not in logged


HELD_SOCKETS = 2000  # twice past the old cliff: a 1,000-connection pool shared with HTTP


async def test_http_is_answered_while_many_sockets_are_open(
    make_stack: Any, record_property: Any
) -> None:
    import resource
    import time

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = HELD_SOCKETS * 4 + 500  # client, proxy's two ends and the upstream's, per socket
    if hard != resource.RLIM_INFINITY and hard < needed:
        pytest.skip(f"needs {needed} file descriptors, the hard limit is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, needed), hard))
    connector = aiohttp.TCPConnector(limit=0)
    async with make_stack() as stack, aiohttp.ClientSession(connector=connector) as session:
        sockets: list[aiohttp.ClientWebSocketResponse] = []
        try:
            for _ in range(0, HELD_SOCKETS, 100):
                batch = [session.ws_connect(stack.url + "/ws/echo") for _i in range(100)]
                sockets += await asyncio.wait_for(asyncio.gather(*batch), 60)
            assert sum(1 for ws in sockets if not ws.closed) == HELD_SOCKETS
            started = time.perf_counter()
            async with session.get(
                stack.url + "/echo/ping", timeout=aiohttp.ClientTimeout(total=30)
            ) as response:
                assert response.status == 200
                assert (await response.json())["path_qs"] == "/echo/ping"
            latency_ms = (time.perf_counter() - started) * 1000
            record_property("http_latency_ms_with_sockets_open", round(latency_ms, 2))
            print(f"HTTP answered in {latency_ms:.2f} ms with {HELD_SOCKETS} sockets open")
            # a further socket opens too, and every held one still carries frames
            async with session.ws_connect(stack.url + "/ws/echo") as extra:
                await extra.send_str("one more")
                assert (await extra.receive(timeout=30)).data == "echo:one more"
            await sockets[-1].send_str("still here")
            assert (await sockets[-1].receive(timeout=30)).data == "echo:still here"
        finally:
            await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)


async def test_abruptly_dropped_sockets_are_cleaned_up_on_both_sides(make_stack: Any) -> None:
    connector = aiohttp.TCPConnector(limit=0)
    async with make_stack() as stack, aiohttp.ClientSession(connector=connector) as session:
        sockets = await asyncio.gather(
            *(session.ws_connect(stack.url + "/ws/echo") for _ in range(200))
        )
        assert stack.state.admission.websockets == 200
        for ws in sockets:  # gone without a close frame, as a network failure would
            transport = ws._response.connection.transport  # type: ignore[union-attr]
            assert transport is not None
            transport.abort()
        for _ in range(500):
            if not (len(stack.state.bridges) or stack.legacy.open_sockets):
                break
            await asyncio.sleep(0.02)
        assert len(stack.state.bridges) == 0 and stack.legacy.open_sockets == 0
        assert stack.state.admission.websockets == 0
        assert stack.state.metrics.open_websockets.get("api", "legacy") == 0
        async with session.ws_connect(stack.url + "/ws/echo") as ws:  # and the proxy still bridges
            await ws.send_str("after")
            assert (await ws.receive(timeout=10)).data == "echo:after"
