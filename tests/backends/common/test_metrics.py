"""Tests of banyan/backends/common/metrics.py: the request counter, collectors (sync, async,
failing)
and the exposition format, on a real aiohttp server."""

from __future__ import annotations

import httpx
from aiohttp import web

from banyan.backends.common import metrics
from banyan.serving import serve


def make_app() -> web.Application:
    app = web.Application()

    async def hello(request: web.Request) -> web.Response:
        return web.json_response({"hi": request.match_info["name"]})

    async def boom(_: web.Request) -> web.Response:
        raise web.HTTPConflict()

    app.router.add_get("/hello/{name}", hello)
    app.router.add_get("/boom", boom)
    metrics.install(app, "test")

    async def later() -> list[str]:
        return metrics.family("t_async", "gauge", "An async collector.", [({}, 1.5)])

    def broken() -> list[str]:
        raise RuntimeError("collector bug")

    metrics.add_collector(app, lambda: ["t_sync 1"])
    metrics.add_collector(app, later)
    metrics.add_collector(app, broken)
    return app


async def test_requests_are_counted_by_route_template_and_collectors_add_lines() -> None:
    async with serve(make_app()) as url, httpx.AsyncClient(base_url=url) as client:
        await client.get("/hello/a")
        await client.get("/hello/b")
        await client.get("/boom")
        await client.get("/nowhere")
        page = await client.get("/metrics")
    assert page.headers["content-type"].startswith("text/plain; version=0.0.4")
    text = page.text
    assert (
        'banyan_http_requests_total{backend="test",method="GET",route="/hello/{name}",'
        'status="200"} 2' in text
    )
    assert 'route="/boom",status="409"} 1' in text
    assert 'route="(unmatched)",status="404"} 1' in text
    assert "t_sync 1\n" in text and "# TYPE t_async gauge\nt_async 1.5\n" in text


def test_formatting() -> None:
    assert metrics.number(float("inf")) == "+Inf" and metrics.number(float("-inf")) == "-Inf"
    assert metrics.number(3.0) == "3" and metrics.number(0.25) == "0.25"
    assert metrics.labels({}) == ""
    assert metrics.labels({"a": 'x"y\\z\n'}) == '{a="x\\"y\\\\z\\n"}'
