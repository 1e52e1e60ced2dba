"""Tests of banyan/proxy/board_mirror.py: a whiteboard edited on new, with ``writes: mirror``, is on
legacy too — even after every editor has left — so a rollback loses no drawing."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import httpx
import pytest
from pycrdt import Doc, Map

from banyan.backends.common.whiteboard.client import WhiteboardClient
from banyan.ports import free_port
from banyan.proxy.board_mirror import BoardMirrorTap
from tests.proxy.conftest import real_backends_behind_proxy

FLAGS = """\
version: 1
backends:
  legacy: {legacy}
  new: {new}
features:
  whiteboard:
    routes: ["/api/whiteboard/**", "/ws/whiteboard/*"]
    mode: new
    writes: mirror
  core:
    routes: ["/api/**"]
    mode: new
    writes: mirror
default: legacy
"""


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[dict[str, str]]:
    async with real_backends_behind_proxy(tmp_path, FLAGS) as urls:
        yield urls


def draw(key: str) -> object:
    return lambda doc: doc.get("shapes", type=Map).__setitem__(key, {"kind": "rect", "by": key})


async def test_a_room_edited_on_new_is_on_legacy_after_everyone_left(
    stack: dict[str, str],
) -> None:
    async with httpx.AsyncClient(base_url=stack["proxy"], timeout=10) as http:
        body = {"email": "board@example.com", "password": "password-1", "name": "B"}
        token = (await http.post("/api/auth/register", json=body)).json()["token"]
    url = stack["proxy"].replace("http", "ws") + f"/ws/whiteboard/mirrored?token={token}"
    async with aiohttp.ClientSession() as session:
        clients = [WhiteboardClient() for _ in range(3)]
        for client in clients:
            await client.connect(session, url)
            await client.wait_synced()
        for index, client in enumerate(clients):
            await client.edit(draw(f"s{index}"))  # type: ignore[arg-type]
        everything = {"s0", "s1", "s2"}
        await clients[0].wait_for(lambda c: set(c.json().get("shapes", {})) == everything, 10)
        await clients[0].edit(lambda doc: doc.get("shapes", type=Map).pop("s1"))
        for client in clients:
            await client.wait_for(lambda c: set(c.json().get("shapes", {})) == {"s0", "s2"}, 10)
        for client in clients:
            await client.close()

    auth = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=stack["legacy"], timeout=10) as legacy:
        shapes: dict[str, object] = {}
        for _ in range(200):
            got = await legacy.get("/api/whiteboard/mirrored", headers=auth)
            shapes = got.json()["doc"].get("shapes", {}) if got.status_code == 200 else {}
            if set(shapes) == {"s0", "s2"}:
                break
            await asyncio.sleep(0.05)
    assert set(shapes) == {"s0", "s2"}


async def test_an_unreachable_target_is_retried_until_the_client_leaves() -> None:
    async with aiohttp.ClientSession() as session:
        dead = f"ws://127.0.0.1:{free_port()}/ws/whiteboard/x"
        tap = BoardMirrorTap(session, dead, {}, feature="whiteboard", retry=0.05, linger=0.2)
        doc: Doc = Doc()
        doc.get("shapes", type=Map)["a"] = 1
        await asyncio.sleep(0.2)
        await tap.close()
        assert tap.pushes == 0 and tap._task.done()
