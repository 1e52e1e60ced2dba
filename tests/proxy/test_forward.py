"""Tests for banyan/proxy/forward.py and the request path (pipeline, http_path), real sockets."""

from __future__ import annotations

import asyncio
import hashlib
import json
import tracemalloc
from typing import Any

import aiohttp
import httpx
import pytest

from banyan.ports import free_port
from tests.proxy.conftest import ALL_LEGACY
from tests.proxy.upstreams import GZIP_BODY, pattern_chunks, pattern_digest

MB = 1024 * 1024


async def test_every_answer_carries_the_banyan_headers(make_stack: Any) -> None:
    async with make_stack() as stack, httpx.AsyncClient(base_url=stack.url) as client:
        ok = await client.get("/api/things?x=1")
        kept = await client.get("/api/things", headers={"X-Request-Id": "abc-123"})
        unmatched = await client.get("/elsewhere")
    assert ok.headers["x-banyan-feature"] == "api" and ok.headers["x-banyan-backend"] == "legacy"
    assert len(ok.headers["x-request-id"]) == 32
    assert ok.json()["headers"]["x-request-id"] == ok.headers["x-request-id"]
    assert kept.headers["x-request-id"] == "abc-123"
    assert unmatched.headers["x-banyan-feature"] == "-" and unmatched.json()["backend"] == "legacy"


async def test_forwarded_headers_and_hop_by_hop_stripping(make_stack: Any) -> None:
    async with make_stack() as stack, httpx.AsyncClient(base_url=stack.url) as client:
        response = await client.get(
            "/api/h?q=%2F1",
            headers={
                "Connection": "keep-alive, X-Drop-Me",
                "X-Drop-Me": "1",
                "Keep-Alive": "timeout=5",
                "TE": "trailers",
                "Proxy-Authorization": "secret",
                "X-Forwarded-For": "10.1.1.1",
                "X-Custom": "kept",
                "Host": "frontend.example",
            },
        )
        hop = await client.get("/hop")
    seen = response.json()
    assert seen["path_qs"] == "/api/h?q=%2F1"
    for name in ("x-drop-me", "keep-alive", "te", "proxy-authorization"):
        assert name not in seen["headers"]
    assert seen["headers"]["x-custom"] == "kept"
    assert seen["headers"]["x-forwarded-for"] == "10.1.1.1, 127.0.0.1"
    assert seen["headers"]["x-forwarded-proto"] == "http"
    assert seen["headers"]["x-forwarded-host"] == "frontend.example"
    assert seen["headers"]["host"] == "frontend.example"  # host: preserve (the default)
    assert hop.text == "hop" and hop.headers["x-kept"] == "yes"
    assert "x-secret" not in hop.headers and "keep-alive" not in hop.headers


async def test_methods_bodies_and_statuses_pass_through(make_stack: Any) -> None:
    async with make_stack() as stack, httpx.AsyncClient(base_url=stack.url) as client:
        posted = await client.post("/api/items", json={"a": 1})
        deleted = await client.delete("/api/items/1")
        missing = await client.get("/status/404")
        broken = await client.get("/status/503")
    assert posted.json()["method"] == "POST" and json.loads(posted.json()["body"]) == {"a": 1}
    assert deleted.json()["method"] == "DELETE"
    assert missing.status_code == 404 and broken.status_code == 503
    assert broken.headers["x-banyan-backend"] == "legacy"


async def test_large_bodies_stream_both_ways_without_buffering(make_stack: Any) -> None:
    size = 50 * MB
    expected = pattern_digest(size)

    async def body() -> Any:
        for part in pattern_chunks(size, MB):
            yield part

    async with make_stack() as stack:
        tracemalloc.start()
        try:
            async with aiohttp.ClientSession() as session:
                async with session.post(stack.url + "/upload", data=body()) as up:
                    uploaded = await up.json()
                digest, received = hashlib.sha256(), 0
                async with session.get(stack.url + f"/download?size={size}&length=1") as down:
                    assert down.headers["Content-Length"] == str(size)
                    async for chunk in down.content.iter_any():
                        digest.update(chunk)
                        received += len(chunk)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert uploaded == {"sha256": expected, "size": size, "chunked": "chunked"}
    assert received == size and digest.hexdigest() == expected
    # client, proxy and upstreams share this process and 50 MB went through it each way
    assert peak < 12 * MB, f"peak traced memory {peak / MB:.1f} MB"


async def test_sse_flows_token_by_token(make_stack: Any) -> None:
    async with make_stack() as stack, aiohttp.ClientSession() as session:
        async with session.get(stack.url + "/sse?n=4") as response:
            assert response.headers["Content-Type"] == "text/event-stream"
            events = []
            while len(events) < 4:
                line = await asyncio.wait_for(response.content.readline(), 5)
                if line.startswith(b"data:"):
                    events.append(line.strip().decode())
                    if len(events) < 4:  # the upstream sends the next one only after this ack
                        async with session.post(stack.url + "/ack") as ack:
                            assert ack.status == 200
    assert events == [f"data: token-{i}" for i in range(4)]


async def test_compressed_bodies_stay_compressed(make_stack: Any) -> None:
    async with make_stack() as stack, aiohttp.ClientSession(auto_decompress=False) as session:
        async with session.get(
            stack.url + "/gzip", headers={"Accept-Encoding": "gzip"}
        ) as response:
            raw = await response.read()
            assert response.headers["Content-Encoding"] == "gzip"
    assert raw == GZIP_BODY


async def test_unreachable_backend_is_502_json(make_stack: Any, tmp_path: Any) -> None:
    features = '  api:\n    routes: ["/api/**"]\n    mode: new\n    fallback: false\n'
    async with make_stack(features) as stack:
        stack.write_flags(features.replace("fallback: false", "fallback: false"))
        dead = f"http://127.0.0.1:{free_port()}"
        stack.flags.write_text(stack.flags.read_text().replace(stack.new_url, dead))
        assert stack.state.store.reload_now() or stack.state.flags.backends["new"].url == dead
        async with httpx.AsyncClient(base_url=stack.url) as client:
            response = await client.get("/api/x")
    assert response.status_code == 502
    assert response.json()["error"]["code"] == "bad_gateway"
    assert response.headers["x-banyan-backend"] == "new"


async def test_slow_backend_is_504_json(make_stack: Any) -> None:
    extra = ""
    features = '  api:\n    routes: ["/slow"]\n    mode: legacy\n'
    async with make_stack(features, extra) as stack:
        text = stack.flags.read_text().replace(
            f"legacy: {stack.legacy_url}", f"legacy: {{url: {stack.legacy_url}, read_timeout: 0.3}}"
        )
        stack.flags.write_text(text)
        assert stack.state.store.reload_now()
        async with httpx.AsyncClient(base_url=stack.url, timeout=10) as client:
            response = await client.get("/slow?s=3")
    assert response.status_code == 504
    assert response.json()["error"]["code"] == "gateway_timeout"


async def test_safe_requests_fall_back_to_legacy(make_stack: Any) -> None:
    features = '  api:\n    routes: ["/api/**"]\n    mode: new\n'
    async with make_stack(features) as stack:
        dead = f"http://127.0.0.1:{free_port()}"
        stack.flags.write_text(stack.flags.read_text().replace(stack.new_url, dead))
        assert stack.state.store.reload_now()
        async with httpx.AsyncClient(base_url=stack.url) as client:
            read = await client.get("/api/x")
            write = await client.post("/api/x", json={})
    assert read.status_code == 200 and read.headers["x-banyan-fallback"] == "1"
    assert read.headers["x-banyan-backend"] == "legacy" and read.json()["backend"] == "legacy"
    assert write.status_code == 502  # never replay an unsafe request elsewhere
    assert stack.state.metrics.fallbacks.get("api") == 1


async def test_client_leaving_mid_stream_does_not_hurt(make_stack: Any) -> None:
    async with make_stack() as stack:
        async with aiohttp.ClientSession() as session:
            async with session.get(stack.url + f"/download?size={20 * MB}") as response:
                await response.content.read(MB)
        async with httpx.AsyncClient(base_url=stack.url) as client:
            assert (await client.get("/api/after")).status_code == 200


async def test_flips_under_load_lose_nothing(make_stack: Any) -> None:
    async with make_stack() as stack:
        seen: dict[str, int] = {"legacy": 0, "new": 0}
        failures: list[Any] = []
        limits = httpx.Limits(max_connections=200)
        async with httpx.AsyncClient(base_url=stack.url, limits=limits, timeout=30) as client:

            async def one(i: int) -> None:
                try:
                    response = await client.post(f"/api/item/{i}", json={"i": i})
                    if response.status_code != 200:
                        failures.append(response.status_code)
                    else:
                        seen[response.headers["x-banyan-backend"]] += 1
                except httpx.HTTPError as exc:
                    failures.append(exc)

            async def flipper() -> None:
                for n in range(20):
                    mode = "new" if n % 2 == 0 else "legacy"
                    stack.write_flags(ALL_LEGACY.replace("mode: legacy", f"mode: {mode}"))
                    stack.state.store.check(force=True)
                    await asyncio.sleep(0.01)

            await asyncio.gather(flipper(), *(one(i) for i in range(200)))
    assert failures == []
    assert sum(seen.values()) == 200
    assert stack.state.store.reloads >= 10


async def test_flag_edit_changes_the_backend(make_stack: Any) -> None:
    async with make_stack() as stack, httpx.AsyncClient(base_url=stack.url) as client:
        assert (await client.get("/api/x")).headers["x-banyan-backend"] == "legacy"
        stack.write_flags(ALL_LEGACY.replace("mode: legacy", "mode: new"))
        for _ in range(100):
            response = await client.get("/api/x")
            if response.headers["x-banyan-backend"] == "new":
                break
            await asyncio.sleep(0.05)
        assert response.headers["x-banyan-backend"] == "new" and response.json()["backend"] == "new"
        stack.flags.write_text("version: 1\nfeatures: [oops\n")
        for _ in range(100):
            if stack.state.store.last_error:
                break
            await asyncio.sleep(0.05)
        assert stack.state.store.last_error and "flags.yaml" in stack.state.store.last_error
        assert (await client.get("/api/x")).headers["x-banyan-backend"] == "new"


@pytest.mark.parametrize("mode", ["shadow", "canary"])
async def test_shadow_and_canary_without_parity_are_served(make_stack: Any, mode: str) -> None:
    features = f'  api:\n    routes: ["/api/**"]\n    mode: {mode}\n    percent: 0\n'
    async with make_stack(features) as stack, httpx.AsyncClient(base_url=stack.url) as client:
        response = await client.get("/api/x")
    assert response.status_code == 200 and response.headers["x-banyan-backend"] == "legacy"
