"""Tests for banyan/proxy/cors.py: CORS at the edge, over real sockets with httpx.

Two real aiohttp backends that each send CORS headers of their own (and different ones) sit
behind a real proxy; the proxy answers preflights itself, puts the same CORS headers on every
answer (relayed, streamed, its own errors) and drops the backends'.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
from aiohttp import web

from banyan.ports import free_port
from banyan.proxy.app import create_app
from banyan.proxy.cors import EXPOSED, METHODS, PREFLIGHT_VARY
from banyan.serving import serve

ORIGIN = "https://tutor.example.com"
CORS = """\
cors:
  allow_origins: ["https://tutor.example.com", "http://localhost:5173"]
  allow_credentials: true
  allow_headers: [Content-Type, Authorization]
  max_age: 120
"""
FEATURES = """\
features:
  legacy_side:
    routes: ["/api/legacy/**"]
    mode: legacy
  new_side:
    routes: ["/api/new/**"]
    mode: new
    fallback: false
default: legacy
"""


def backend(name: str) -> tuple[web.Application, list[str]]:
    """A backend answering every path, with CORS headers of its own; records methods seen."""
    seen: list[str] = []

    async def answer(request: web.Request) -> web.StreamResponse:
        if request.path.startswith("/api/"):  # not the health probe
            seen.append(request.method)
        headers = {
            "Access-Control-Allow-Origin": "*" if name == "legacy" else "https://other.example",
            "Access-Control-Allow-Methods": "GET" if name == "legacy" else "GET, POST",
            "X-Served": name,
        }
        if request.path.endswith("/stream"):
            response = web.StreamResponse(headers=headers)
            response.content_type = "text/event-stream"
            await response.prepare(request)
            for n in range(3):
                await response.write(f"data: {n}\n\n".encode())
            await response.write_eof()
            return response
        return web.json_response({"backend": name}, headers=headers)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", answer)
    return app, seen


@dataclass
class Edge:
    url: str
    seen: dict[str, list[str]]  # methods each backend received


@asynccontextmanager
async def proxy(tmp_path: Path, cors: str = CORS, *, new_alive: bool = True) -> AsyncIterator[Edge]:
    """Both backends behind a proxy with ``cors``; without ``new_alive`` new is a closed port."""
    legacy, legacy_seen = backend("legacy")
    new, new_seen = backend("new")
    async with serve(legacy) as legacy_url, serve(new) as new_url:
        target = new_url if new_alive else f"http://127.0.0.1:{free_port()}"
        flags = tmp_path / "flags.yaml"
        flags.write_text(
            f"version: 1\nbackends:\n  legacy: {legacy_url}\n  new: {target}\n{cors}{FEATURES}"
        )
        app = create_app(flags, access_log=False, health_interval=30)
        async with serve(app) as url:
            yield Edge(url, {"legacy": legacy_seen, "new": new_seen})


def cors_of(response: httpx.Response) -> dict[str, str]:
    """The CORS-related headers of an answer (names lower-cased, repeated ones joined)."""
    names = {k.lower() for k in response.headers if k.lower().startswith("access-control-")}
    found = {name: ", ".join(response.headers.get_list(name)) for name in names}
    found["vary"] = ", ".join(response.headers.get_list("vary"))
    return found


EXPECTED = {
    "access-control-allow-origin": ORIGIN,
    "access-control-allow-credentials": "true",
    "access-control-expose-headers": EXPOSED,
    "vary": "Origin",
}


async def test_a_preflight_is_answered_by_the_proxy_and_never_forwarded(tmp_path: Path) -> None:
    async with proxy(tmp_path) as edge, httpx.AsyncClient(base_url=edge.url) as client:
        answer = await client.options(
            "/api/new/folders",
            headers={
                "Origin": ORIGIN,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "content-type, authorization",
            },
        )
        refused = await client.options(
            "/api/new/folders",
            headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"},
        )
    assert answer.status_code == 204
    assert cors_of(answer) == {
        "access-control-allow-origin": ORIGIN,
        "access-control-allow-credentials": "true",
        "access-control-allow-methods": METHODS,
        "access-control-allow-headers": "content-type, authorization",
        "access-control-max-age": "120",
        "vary": PREFLIGHT_VARY,
    }
    assert answer.headers["x-banyan-backend"] == "proxy"
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "cors_origin_not_allowed"
    assert not any(k.lower().startswith("access-control-") for k in refused.headers)
    assert edge.seen == {"legacy": [], "new": []}


async def test_answers_look_the_same_whichever_backend_served(tmp_path: Path) -> None:
    async with proxy(tmp_path) as edge, httpx.AsyncClient(base_url=edge.url) as client:
        legacy = await client.get("/api/legacy/x", headers={"Origin": ORIGIN})
        new = await client.get("/api/new/x", headers={"Origin": ORIGIN})
        async with client.stream("GET", "/api/new/stream", headers={"Origin": ORIGIN}) as streamed:
            events = [line async for line in streamed.aiter_lines() if line]
    assert legacy.headers["x-served"] == "legacy" and new.headers["x-served"] == "new"
    assert cors_of(legacy) == cors_of(new) == cors_of(streamed) == EXPECTED
    assert streamed.headers["transfer-encoding"] == "chunked"
    assert events == ["data: 0", "data: 1", "data: 2"]
    assert legacy.json() == {"backend": "legacy"}


async def test_the_proxys_own_errors_carry_the_headers(tmp_path: Path) -> None:
    async with (
        proxy(tmp_path, new_alive=False) as edge,
        httpx.AsyncClient(base_url=edge.url) as client,
    ):
        failed = await client.get("/api/new/x", headers={"Origin": ORIGIN})
        admin = await client.get("/_proxy/nowhere", headers={"Origin": ORIGIN})
        other = await client.get("/api/new/x", headers={"Origin": "https://evil.example"})
    assert failed.status_code == 502 and failed.json()["error"]["code"] == "bad_gateway"
    assert cors_of(failed) == EXPECTED
    assert admin.status_code == 404 and cors_of(admin) == EXPECTED
    assert other.status_code == 502 and cors_of(other) == {"vary": "Origin"}


async def test_wildcard_origins_and_headers(tmp_path: Path) -> None:
    cors = "cors:\n  allow_origins: ['*']\n  allow_headers: ['*']\n"
    async with proxy(tmp_path, cors) as edge, httpx.AsyncClient(base_url=edge.url) as client:
        pre = await client.options(
            "/api/legacy/x",
            headers={
                "Origin": "http://anywhere.example:8080",
                "Access-Control-Request-Method": "PUT",
                "Access-Control-Request-Headers": "authorization, x-custom",
            },
        )
        bare = await client.options(
            "/api/legacy/x",
            headers={"Origin": "http://a.example", "Access-Control-Request-Method": "GET"},
        )
        got = await client.get("/api/legacy/x", headers={"Origin": "http://anywhere.example"})
        no_origin = await client.get("/api/legacy/x")
    assert pre.status_code == 204
    assert pre.headers["access-control-allow-origin"] == "*"
    assert pre.headers["access-control-allow-headers"] == "authorization, x-custom"
    assert pre.headers["access-control-max-age"] == "600"
    assert "access-control-allow-credentials" not in pre.headers
    assert "access-control-allow-headers" not in bare.headers
    assert cors_of(got) == {
        "access-control-allow-origin": "*",
        "access-control-expose-headers": EXPOSED,
        "vary": "",
    }
    assert cors_of(no_origin) == {"vary": ""}  # the backend's own '*' is dropped all the same


async def test_without_a_cors_block_nothing_changes(tmp_path: Path) -> None:
    async with proxy(tmp_path, "") as edge, httpx.AsyncClient(base_url=edge.url) as client:
        pre = await client.options(
            "/api/new/x", headers={"Origin": ORIGIN, "Access-Control-Request-Method": "GET"}
        )
        got = await client.get("/api/legacy/x", headers={"Origin": ORIGIN})
    assert pre.headers["x-served"] == "new"  # forwarded, as before
    assert edge.seen["new"] == ["OPTIONS"]
    assert cors_of(got) == {  # the backend's own, untouched
        "access-control-allow-origin": "*",
        "access-control-allow-methods": "GET",
        "vary": "",
    }
