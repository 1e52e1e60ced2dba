"""Interop: the real browser client (yjs + y-websocket from npm) against both backends, directly
and through the proxy, with authentication by ``?token=`` as the frontend sends it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import pytest
from pycrdt import Doc, Map

from banyan.backends.common.whiteboard.client import WhiteboardClient
from banyan.backends.contract.client import register
from banyan.backends.contract.targets import Target, open_target
from tests.interop.conftest import NodeClient

pytestmark = pytest.mark.parametrize("target_name", ["legacy", "new", "proxy-legacy", "proxy-new"])


@dataclass
class Board:
    target: Target
    token: str
    start: Callable[[str], Awaitable[NodeClient]]

    @property
    def base(self) -> str:
        return self.target.ws_url + "/ws/whiteboard"

    async def python_client(self, http: aiohttp.ClientSession, room: str) -> WhiteboardClient:
        client = WhiteboardClient()
        await client.connect(http, f"{self.base}/{room}?token={self.token}")
        await client.wait_synced()
        return client

    async def rest_doc(self, room: str) -> dict[str, Any]:
        async with httpx.AsyncClient(base_url=self.target.base_url) as http:
            response = await http.get(
                f"/api/whiteboard/{room}", headers={"Authorization": f"Bearer {self.token}"}
            )
        body: dict[str, Any] = response.json()["doc"]
        return body


@pytest.fixture
async def board(target_name: str, node_client_ready: Path, tmp_path: Path) -> AsyncIterator[Board]:
    started: list[NodeClient] = []
    async with open_target(target_name, tmp_path) as target:
        user = await register(target)
        await user.client.aclose()

        async def start(room: str) -> NodeClient:
            client = await NodeClient.start(
                node_client_ready, target.ws_url + "/ws/whiteboard", room, user.token
            )
            started.append(client)
            return client

        try:
            yield Board(target, user.token, start)
        finally:
            for client in started:
                await client.stop()


def add_shape(name: str) -> Callable[[Doc], None]:
    def change(doc: Doc) -> None:
        doc.get("shapes", type=Map)[name] = {"kind": "rect", "by": name}

    return change


async def test_yjs_and_python_converge_with_presence(board: Board) -> None:
    js = await board.start("mixed")
    await js.call("synced")
    async with aiohttp.ClientSession() as http:
        py = await board.python_client(http, "mixed")
        await js.call("set_shape", key="js", value={"kind": "rect", "by": "js"})
        await py.edit(add_shape("py"))
        await py.wait_for(lambda c: {"js", "py"} <= set(c.json().get("shapes", {})))
        await js.call("wait_shapes", keys=["js", "py"])
        await js.call("awareness", state={"user": "ada"})
        await py.wait_for(lambda c: any(s.get("user") == "ada" for s in c.peers.values()))
        await py.set_presence({"user": "bob"})
        await js.call("wait_peer", field="user", value="bob")
        assert (await js.call("json"))["shapes"] == py.json()["shapes"]
        await py.close()
    assert (await board.rest_doc("mixed"))["shapes"] == (await js.call("json"))["shapes"]


async def test_three_yjs_clients_open_a_new_room_at_once(board: Board) -> None:
    clients = await asyncio.gather(*(board.start("fresh") for _ in range(3)))
    await asyncio.gather(
        *(c.call("set_shape", key=f"s{i}", value={"i": i}) for i, c in enumerate(clients))
    )
    await asyncio.gather(
        *(c.call("wait_shapes", keys=["s0", "s1", "s2"], timeout=10) for c in clients)
    )
    docs = [await c.call("json") for c in clients]
    assert docs[0] == docs[1] == docs[2]
    assert set(docs[0]["shapes"]) == {"s0", "s1", "s2"}


async def test_offline_yjs_edits_sync_after_reconnect(board: Board) -> None:
    js = await board.start("offline")
    await js.call("synced")
    async with aiohttp.ClientSession() as http:
        py = await board.python_client(http, "offline")
        await js.call("disconnect")
        await js.call("set_shape", key="offline", value={"by": "js"})
        await js.call("append_note", text="typed offline")
        await py.edit(add_shape("missed"))
        await js.call("connect")
        await js.call("wait_shapes", keys=["offline", "missed"])
        await py.wait_for(lambda c: {"offline", "missed"} <= set(c.json().get("shapes", {})))
        assert (await js.call("json"))["shapes"] == py.json()["shapes"]
        await py.wait_for(lambda c: c.json().get("notes") == "typed offline")
        await py.close()
