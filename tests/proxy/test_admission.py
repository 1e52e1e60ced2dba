"""Tests for banyan/proxy/admission.py: past a limit the proxy answers 503 at once, never hangs.

The socket and request limits are tried on an in-process proxy; the descriptor limit on a real
``banyan proxy`` process started with a low ``RLIMIT_NOFILE`` (it raises its soft limit to the hard
one and says so in its log).
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from banyan.proxy.admission import AdmissionLimits
from banyan.serving import serve
from tests.proxy.conftest import ALL_LEGACY
from tests.proxy.upstreams import Recorder, flags_yaml

AT_ONCE = 10.0  # generous: a refusal must come back, not hang; its speed is not asserted


def assert_refused(status: int, headers: Any, body: bytes, code: str) -> None:
    assert status == 503
    assert int(headers["Retry-After"]) >= 1
    error = json.loads(body)["error"]
    assert error["code"] == code and error["message"]


async def refused_upgrade(session: aiohttp.ClientSession, url: str) -> tuple[int, Any, bytes]:
    """An upgrade request by hand, so the refusal's headers and body can be read."""
    headers = {
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Version": "13",
    }
    async with session.get(
        url, headers=headers, timeout=aiohttp.ClientTimeout(total=AT_ONCE)
    ) as response:
        return response.status, response.headers, await response.read()


async def wait_until(check: Any) -> None:
    for _ in range(500):
        if check():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("condition never held")


async def test_past_the_socket_limit_a_new_socket_gets_503(make_stack: Any) -> None:
    limits = AdmissionLimits(max_websockets=3)
    async with make_stack(admission=limits) as stack, aiohttp.ClientSession() as session:
        held = [await session.ws_connect(stack.url + "/ws/echo") for _ in range(3)]
        status, headers, body = await refused_upgrade(session, stack.url + "/ws/echo")
        assert_refused(status, headers, body, "too_many_websockets")
        assert headers["X-Banyan-Limit"] == "websockets"
        async with session.get(stack.url + "/echo/fine") as response:  # HTTP is not refused
            assert response.status == 200
        await held.pop().close()
        await wait_until(lambda: stack.state.admission.websockets == 2)
        async with session.ws_connect(stack.url + "/ws/echo") as again:
            await again.send_str("back")
            assert (await again.receive(timeout=AT_ONCE)).data == "echo:back"
        for ws in held:
            await ws.close()
        assert stack.state.metrics.refused.get("websockets") == 1


async def test_past_the_request_limit_a_new_request_gets_503(make_stack: Any) -> None:
    limits = AdmissionLimits(max_requests=2)
    async with make_stack(admission=limits) as stack, aiohttp.ClientSession() as session:
        # two event streams held open by the upstream until acknowledged (directly, not through
        # the proxy, which is full)
        streams = [await session.get(stack.url + "/sse?n=2") for _ in range(2)]
        for stream in streams:
            assert (await stream.content.readline()).startswith(b"data: token-0")
        async with session.get(
            stack.url + "/echo/one-too-many", timeout=aiohttp.ClientTimeout(total=AT_ONCE)
        ) as response:
            assert_refused(response.status, response.headers, await response.read(), "overloaded")
        async with session.get(stack.url + "/_proxy/metrics") as response:  # admin: not counted
            assert response.status == 200
        for _ in streams:
            async with session.post(stack.legacy_url + "/ack") as ack:
                assert ack.status == 200
        for stream in streams:
            await stream.read()
            stream.release()
        await wait_until(lambda: stack.state.admission.requests == 0)
        async with session.get(stack.url + "/echo/room-again") as response:
            assert response.status == 200
        assert stack.state.metrics.refused.get("requests") == 1


def test_limits_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert AdmissionLimits.from_env(os.environ) == AdmissionLimits()
    monkeypatch.setenv("BANYAN_MAX_WEBSOCKETS", "50")
    monkeypatch.setenv("BANYAN_MAX_REQUESTS", "70")
    assert AdmissionLimits.from_env(os.environ) == AdmissionLimits(
        max_websockets=50, max_requests=70
    )
    monkeypatch.setenv("BANYAN_MAX_REQUESTS", "many")
    with pytest.raises(ValueError, match="BANYAN_MAX_REQUESTS must be a whole number"):
        AdmissionLimits.from_env(os.environ)
    monkeypatch.setenv("BANYAN_MAX_REQUESTS", "0")
    with pytest.raises(ValueError, match="at least 1"):
        AdmissionLimits.from_env(os.environ)


def _low_descriptor_limit() -> None:  # runs in the child before exec
    resource.setrlimit(resource.RLIMIT_NOFILE, (64, 300))


async def test_out_of_descriptors_a_new_socket_gets_503_not_a_hang(tmp_path: Path) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 2000:
        pytest.skip(f"the test process itself needs ~2000 descriptors (hard limit {hard})")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 2000), hard))
    legacy = Recorder("legacy")
    async with serve(legacy.app) as upstream:
        flags = tmp_path / "flags.yaml"
        flags.write_text(flags_yaml(upstream, upstream, ALL_LEGACY))
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            *("-m", "banyan.proxy.cli", "proxy", "--flags", str(flags), "--port", "0"),
            "--no-access-log",
            "--no-parity",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            preexec_fn=_low_descriptor_limit,
        )
        assert process.stdout is not None and process.stderr is not None
        held: list[aiohttp.ClientWebSocketResponse] = []
        try:
            line = (await asyncio.wait_for(process.stdout.readline(), 60)).decode()
            url = line.rsplit(" ", 1)[1].strip()
            connector = aiohttp.TCPConnector(limit=0)
            ws_timeout = aiohttp.ClientWSTimeout(ws_close=AT_ONCE)
            async with aiohttp.ClientSession(connector=connector) as session:
                refused = False
                for _ in range(300):  # 300 descriptors cannot hold 300 bridged sockets
                    try:
                        held.append(await session.ws_connect(url + "/ws/echo", timeout=ws_timeout))
                    except aiohttp.WSServerHandshakeError as exc:
                        assert exc.status == 503, exc
                        refused = True
                        break
                assert refused, "the proxy never refused a socket"
                assert len(held) >= 20  # it held a fair share of what the limit allows first
                status, headers, body = await refused_upgrade(session, url + "/ws/echo")
                assert_refused(status, headers, body, "out_of_descriptors")
                async with session.get(  # answered, one way or the other, at once
                    url + "/echo/x", timeout=aiohttp.ClientTimeout(total=AT_ONCE)
                ) as response:
                    assert response.status in (200, 503)
                for ws in held[:10]:
                    await ws.close()
                held = held[10:]
                again = None
                for _ in range(100):  # the proxy lets go of the closed ones in its own time
                    try:
                        again = await session.ws_connect(url + "/ws/echo", timeout=ws_timeout)
                        break
                    except aiohttp.WSServerHandshakeError:
                        await asyncio.sleep(0.05)
                assert again is not None, "no room again after closing sockets"
                await again.send_str("room again")
                assert (await again.receive(timeout=AT_ONCE)).data == "echo:room again"
                await again.close()
                for ws in held:
                    await ws.close()
        finally:
            process.terminate()
            await asyncio.wait_for(process.wait(), 30)
        log = (await process.stderr.read()).decode()
    raised = [json.loads(x) for x in log.splitlines() if '"descriptor_limit_raised"' in x]
    assert raised and raised[0]["soft_before"] == 64 and raised[0]["soft"] == 300, log[-2000:]


def test_the_descriptor_count_adds_what_was_admitted_since_it_was_taken() -> None:
    import socket

    from banyan import descriptors
    from banyan.proxy.admission import DescriptorGauge
    from tests.clock import ManualClock

    clock = ManualClock(100.0)
    gauge = DescriptorGauge(clock)
    first = gauge.in_use()
    assert first > 0 and gauge.limit == descriptors.soft_limit()
    gauge.taken(2)
    gauge.taken(1)
    opened = [socket.socket() for _ in range(10)]
    try:
        assert gauge.in_use() == first + 3  # not counted again yet: what was admitted is added
        clock.now += 1.0  # past its freshness
        assert gauge.in_use() == descriptors.open_count()  # counted afresh
        assert gauge.in_use() >= first + 10
    finally:
        for sock in opened:
            sock.close()
