"""Interop: our whiteboard server against the real browser client (yjs + y-websocket from npm)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from pycrdt import Array, Doc, Map

from banyan.backends.common.whiteboard.client import WhiteboardClient
from banyan.backends.common.whiteboard.rooms import RoomManager
from banyan.backends.common.whiteboard.socket import serve_whiteboard
from banyan.backends.common.whiteboard.store import MemoryRoomStore
from banyan.serving import serve
from tests.interop.conftest import NodeClient


class Board:
    """An in-process whiteboard server with a short heartbeat and unload grace."""

    def __init__(self) -> None:
        self.store = MemoryRoomStore()
        self.rooms = RoomManager(self.store, grace=0.2, flush_interval=0.01, compact_every=5)
        self.app = web.Application()
        self.app.router.add_get("/ws/whiteboard/{room}", self.handle)
        self.app.on_cleanup.append(lambda _: self.rooms.close())
        self.base = ""

    async def handle(self, request: web.Request) -> web.StreamResponse:
        return await serve_whiteboard(
            request, self.rooms, request.match_info["room"], heartbeat=0.5
        )


@pytest.fixture
async def board() -> AsyncIterator[Board]:
    b = Board()
    async with serve(b.app) as url:
        b.base = url.replace("http", "ws") + "/ws/whiteboard"
        yield b


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


@pytest.fixture
async def yjs(node_client_ready: Path, board: Board) -> AsyncIterator[Any]:
    started: list[NodeClient] = []

    async def start(room: str) -> NodeClient:
        client = await NodeClient.start(node_client_ready, board.base, room)
        started.append(client)
        return client

    yield start
    for client in started:
        await client.stop()


def add_shape(name: str) -> Any:
    def change(doc: Doc) -> None:
        doc.get("shapes", type=Map)[name] = {"kind": "rect", "by": name}
        doc.get("order", type=Array).append(name)

    return change


async def py_client(session: aiohttp.ClientSession, board: Board, room: str) -> WhiteboardClient:
    client = WhiteboardClient()
    await client.connect(session, f"{board.base}/{room}")
    await client.wait_synced()
    return client


def has_shapes(*names: str) -> Any:
    return lambda c: all(n in c.json().get("shapes", {}) for n in names)


async def test_edits_converge_between_yjs_and_python(
    board: Board, session: aiohttp.ClientSession, yjs: Any
) -> None:
    js = await yjs("r1")
    await js.call("synced")
    py = await py_client(session, board, "r1")
    await js.call("set_shape", key="js", value={"kind": "rect", "by": "js"})
    await py.edit(add_shape("py"))
    await py.wait_for(has_shapes("js", "py"))
    await js.call("wait_shapes", keys=["js", "py"])
    js_json = await js.call("json")
    assert js_json["shapes"] == py.json()["shapes"]
    assert sorted(js_json["order"]) == sorted(py.json()["order"]) == ["js", "py"]
    await py.close()


async def test_three_yjs_clients_open_a_new_room_at_once(board: Board, yjs: Any) -> None:
    clients = await asyncio.gather(*(yjs("fresh") for _ in range(3)))
    await asyncio.gather(
        *(c.call("set_shape", key=f"s{i}", value={"i": i}) for i, c in enumerate(clients))
    )
    await asyncio.gather(*(c.call("wait_shapes", keys=["s0", "s1", "s2"]) for c in clients))
    docs = [await c.call("json") for c in clients]
    assert docs[0] == docs[1] == docs[2]
    assert set(docs[0]["shapes"]) == {"s0", "s1", "s2"}


async def test_awareness_flows_both_ways_and_leaves(
    board: Board, session: aiohttp.ClientSession, yjs: Any
) -> None:
    js = await yjs("aw")
    await js.call("synced")
    py = await py_client(session, board, "aw")
    await js.call("awareness", state={"user": "ada", "cursor": [1, 2]})
    await py.wait_for(lambda c: any(s.get("user") == "ada" for s in c.peers.values()))
    await py.set_presence({"user": "bob", "cursor": [3, 4]})
    await js.call("wait_peer", field="user", value="bob")
    await js.call("disconnect")
    await py.wait_for(lambda c: not any(s.get("user") == "ada" for s in c.peers.values()))
    await py.close()


async def test_offline_edits_sync_after_reconnect(
    board: Board, session: aiohttp.ClientSession, yjs: Any
) -> None:
    js = await yjs("off")
    await js.call("synced")
    py = await py_client(session, board, "off")
    await js.call("disconnect")
    await js.call("set_shape", key="offline", value={"by": "js"})
    await py.edit(add_shape("missed"))
    await js.call("connect")
    await js.call("wait_shapes", keys=["offline", "missed"])
    await py.wait_for(has_shapes("offline", "missed"))
    assert (await js.call("json"))["shapes"] == py.json()["shapes"]
    await py.close()


async def test_heartbeat_does_not_break_idle_yjs_client(
    board: Board, session: aiohttp.ClientSession, yjs: Any
) -> None:
    js = await yjs("idle")
    await js.call("synced")
    py = await py_client(session, board, "idle")
    await asyncio.sleep(2)  # four server heartbeats (0.5 s) pass while idle
    await js.call("set_shape", key="after", value={"by": "js"})
    await py.wait_for(has_shapes("after"))
    await py.edit(add_shape("reply"))
    await js.call("wait_shapes", keys=["after", "reply"])
    await py.close()


async def test_unloaded_room_serves_stored_content(
    board: Board, session: aiohttp.ClientSession, yjs: Any
) -> None:
    first = await yjs("keep")
    await first.call("synced")
    witness = await py_client(session, board, "keep")
    await first.call("set_shape", key="kept", value={"by": "first"})
    await first.call("append_note", text="hello")
    # the server has both edits once they reach another peer; only then stop the writer
    await witness.wait_for(lambda c: c.json().get("notes") == "hello" and has_shapes("kept")(c))
    await witness.close()
    await first.stop()
    for _ in range(100):  # wait for the room to unload after its grace
        if "keep" not in board.rooms.loaded:
            break
        await asyncio.sleep(0.05)
    assert "keep" not in board.rooms.loaded
    second = await yjs("keep")
    await second.call("wait_shapes", keys=["kept"])
    doc = await second.call("json")
    assert doc["notes"] == "hello"
