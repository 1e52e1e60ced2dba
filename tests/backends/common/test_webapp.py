"""Both backends serve the built web app at / (banyan/backends/common/webapp.py)."""

from __future__ import annotations

import gzip
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from aiohttp import web

from banyan.backends.common import webapp
from banyan.backends.legacy.app import create_app as legacy_app
from banyan.backends.new.app import create_app as new_app
from banyan.proxy.flags import load_flags
from banyan.proxy.routing import Router
from banyan.serving import serve
from banyan.webapp import build_info

REPO_FLAGS = Path(__file__).resolve().parents[3] / "flags.yaml"
ASSETS = [name for name in build_info()["files"] if name.startswith("assets/")]


@pytest.fixture(params=["legacy", "new"])
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    factory = legacy_app if request.param == "legacy" else new_app
    async with serve(factory(f"sqlite+aiosqlite:///{tmp_path / 'store.db'}")) as url:
        yield url


async def test_the_page_and_its_assets_are_served(backend: str) -> None:
    async with httpx.AsyncClient(base_url=backend) as client:
        page = await client.get("/", headers={"Accept-Encoding": "identity"})
        assert page.status_code == 200
        assert page.headers["content-type"] == "text/html; charset=utf-8"
        assert page.headers["cache-control"] == "no-cache"
        assert "<title>AI Tutor</title>" in page.text
        for name in ASSETS:
            assert f'"{name}"' in page.text  # relative URLs: works behind any host
            asset = await client.get("/" + name)
            assert asset.status_code == 200
            assert "immutable" in asset.headers["cache-control"]
            kind = "text/javascript" if name.endswith(".js") else "text/css"
            assert asset.headers["content-type"].startswith(kind)
        head = await client.head("/")
        assert head.status_code == 200 and head.content == b""


async def test_revalidation_and_gzip(backend: str) -> None:
    async with httpx.AsyncClient(base_url=backend) as client:
        plain = await client.get("/", headers={"Accept-Encoding": "identity"})
        again = await client.get("/", headers={"If-None-Match": plain.headers["etag"]})
        assert again.status_code == 304 and again.content == b""
        raw = await client.send(
            client.build_request("GET", "/" + ASSETS[0], headers={"Accept-Encoding": "gzip"}),
            stream=True,
        )
        sent = b"".join([chunk async for chunk in raw.aiter_raw()])  # the bytes on the wire
        await raw.aclose()
        assert raw.headers["content-encoding"] == "gzip"
        assert raw.headers["vary"] == "Accept-Encoding"
        assert gzip.decompress(sent) == (webapp.DIST / ASSETS[0]).read_bytes()


async def test_unknown_assets_are_contract_404s(backend: str) -> None:
    async with httpx.AsyncClient(base_url=backend) as client:
        for path in ("/assets/nope.js", "/assets/..%2Fbuild.json", "/index.html", "/build.json"):
            answer = await client.get(path)
            assert answer.status_code == 404, path
            assert answer.json()["error"]["code"] == "not_found"


async def test_without_a_build_the_routes_are_not_added(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(webapp, "DIST", tmp_path / "missing")
    app = web.Application()
    webapp.add_routes(app)
    assert len(app.router.routes()) == 0


def test_the_shipped_flags_route_the_app_to_feature_web_and_nothing_else() -> None:
    flags = load_flags(REPO_FLAGS)
    assert flags.features[-1].name == "web"  # last: it can never take an API path
    route = Router(flags)
    for path in ("/", "/assets/main-ABC.js"):
        assert route.decide(path).feature == "web"
    for path in ("/api/sessions", "/ws/tutor/x", "/healthz", "/api/documents/1"):
        assert route.decide(path).feature != "web"
