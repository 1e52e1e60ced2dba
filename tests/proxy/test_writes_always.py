"""``writes: always``: a logout through the proxy revokes the token on both stores, whatever the
feature's mode, so a token logged out on legacy stops working on new too (and back)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tests.proxy.conftest import real_backends_behind_proxy

FLAGS = """\
version: 1
backends:
  legacy: {legacy}
  new: {new}
features:
  logout:
    routes: ["/api/auth/logout"]
    mode: {mode}
    writes: always
  core:
    routes: ["/api/**"]
    mode: legacy
default: legacy
"""


@pytest.fixture(params=["legacy", "new"])
async def stack(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[tuple[str, dict[str, str]]]:
    async with real_backends_behind_proxy(tmp_path, FLAGS, mode=request.param) as urls:
        yield urls["proxy"], {"legacy": urls["legacy"], "new": urls["new"]}


async def test_a_logout_holds_on_both_stores(stack: tuple[str, dict[str, str]]) -> None:
    proxy_url, backends = stack
    body = {"email": "bye@example.com", "password": "password-1", "name": "Bye"}
    token = ""
    for url in backends.values():  # the same account on both sides, as a backfill leaves it
        async with httpx.AsyncClient(base_url=url) as direct:
            made = await direct.post("/api/auth/register", json=body)
            assert made.status_code == 201, made.text
            token = token or made.json()["token"]
    auth = {"Authorization": f"Bearer {token}"}
    for url in backends.values():
        async with httpx.AsyncClient(base_url=url) as direct:
            assert (await direct.get("/api/auth/me", headers=auth)).status_code == 200
    async with httpx.AsyncClient(base_url=proxy_url) as proxied:
        assert (await proxied.post("/api/auth/logout", headers=auth)).status_code == 204
    for name, url in backends.items():
        async with httpx.AsyncClient(base_url=url) as direct:
            status = 200
            for _ in range(200):  # the copy travels through the durable mirror queue
                status = (await direct.get("/api/auth/me", headers=auth)).status_code
                if status == 401:
                    break
                await asyncio.sleep(0.05)
        assert status == 401, f"{name} still accepts the logged-out token"
