"""Tests for banyan/proxy/console.py: the console's files at /_proxy/ui/ from a real proxy, and
the old parity page's address redirecting there."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from banyan.console import DIST
from banyan.proxy import console
from banyan.webapp import build_info


async def test_the_console_is_served_with_its_assets(make_stack: Any) -> None:
    files = build_info(DIST)["files"]
    script = next(name for name in files if name.endswith(".js"))
    async with make_stack() as stack, httpx.AsyncClient(base_url=stack.url) as client:
        bare = await client.get("/_proxy/ui")
        page = await client.get("/_proxy/ui/")
        again = await client.get("/_proxy/ui/", headers={"If-None-Match": page.headers["etag"]})
        asset = await client.get(f"/_proxy/ui/{script}", headers={"Accept-Encoding": "gzip"})
        raw = await client.get(f"/_proxy/ui/{script}", headers={"Accept-Encoding": "identity"})
        missing = await client.get("/_proxy/ui/assets/nothing.js")
        old = await client.get("/_proxy/parity")
    assert bare.status_code == 302 and bare.headers["location"] == "/_proxy/ui/"
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "<title>Banyan console</title>" in page.text
    assert page.headers["cache-control"] == "no-cache"
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["x-banyan-backend"] == "proxy"
    assert again.status_code == 304
    assert asset.headers["content-encoding"] == "gzip"
    assert "immutable" in asset.headers["cache-control"]
    assert raw.content == (DIST / script).read_bytes()
    assert asset.content == raw.content  # httpx took the gzip off
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    assert old.status_code == 302 and old.headers["location"] == "/_proxy/ui/#/parity"


async def test_without_a_build_the_console_says_so(
    make_stack: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(console, "DIST", tmp_path / "no-build")
    async with make_stack() as stack, httpx.AsyncClient(base_url=stack.url) as client:
        page = await client.get("/_proxy/ui/")
        asset = await client.get("/_proxy/ui/assets/console.js")
    assert page.status_code == 404 and page.json()["error"]["message"] == "the console is not built"
    assert page.headers["x-banyan-backend"] == "proxy"
    assert asset.status_code == 404
