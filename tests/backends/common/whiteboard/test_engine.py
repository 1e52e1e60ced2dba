"""Tests for banyan/backends/common/whiteboard: real aiohttp server, real y-websocket clients."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from pycrdt import Array, Doc, Map, Text

from banyan import ywebsocket
from banyan.backends.common.whiteboard.client import WhiteboardClient
from banyan.backends.common.whiteboard.rooms import RoomManager
from banyan.backends.common.whiteboard.snapshot import doc_to_json
from banyan.backends.common.whiteboard.socket import serve_whiteboard
from banyan.backends.common.whiteboard.store import MemoryRoomStore
from banyan.serving import serve
from banyan.ydoc import doc_from_update


class Board:
    def __init__(self, store: MemoryRoomStore, grace: float = 0.2) -> None:
        self.store = store
        self.rooms = RoomManager(store, grace=grace, flush_interval=0.01, compact_every=5)
        self.app = web.Application()
        self.app.router.add_get("/ws/whiteboard/{room}", self.handle)
        self.app.on_cleanup.append(lambda _: self.rooms.close())
        self.url = ""

    async def handle(self, request: web.Request) -> web.StreamResponse:
        return await serve_whiteboard(request, self.rooms, request.match_info["room"], heartbeat=5)


@pytest.fixture
async def board() -> AsyncIterator[Board]:
    b = Board(MemoryRoomStore())
    async with serve(b.app) as url:
        b.url = url.replace("http", "ws") + "/ws/whiteboard/"
        yield b


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


def add_shape(name: str) -> Any:
    def change(doc: Doc) -> None:
        doc.get("shapes", type=Map)[name] = {"kind": "rect", "by": name}

    return change


async def test_users_opening_a_new_room_at_once_converge(
    board: Board, session: aiohttp.ClientSession
) -> None:
    clients = [WhiteboardClient() for _ in range(4)]
    await asyncio.gather(*(c.connect(session, board.url + "fresh") for c in clients))
    await asyncio.gather(*(c.wait_synced() for c in clients))
    await asyncio.gather(*(c.edit(add_shape(f"user{i}")) for i, c in enumerate(clients)))
    expected = {f"user{i}" for i in range(4)}
    for c in clients:
        await c.wait_for(lambda cl: set(cl.json().get("shapes", {})) == expected)
    assert len({json.dumps(c.json(), sort_keys=True) for c in clients}) == 1
    assert board.rooms.loaded == ["fresh"]
    for c in clients:
        await c.close()


async def test_room_survives_unload_and_restart(
    board: Board, session: aiohttp.ClientSession
) -> None:
    writer = WhiteboardClient()
    await writer.connect(session, board.url + "keep")
    await writer.wait_synced()
    for i in range(12):  # crosses compact_every
        await writer.edit(add_shape(f"s{i}"))
    await writer.close()
    for _ in range(100):
        if not board.rooms.loaded:
            break
        await asyncio.sleep(0.05)
    assert board.rooms.loaded == []
    assert len(board.store.updates["keep"]) == 1  # compacted on unload
    again = Board(board.store)
    async with serve(again.app) as url:
        reader = WhiteboardClient()
        await reader.connect(session, url.replace("http", "ws") + "/ws/whiteboard/keep")
        await reader.wait_synced()
        assert set(reader.json()["shapes"]) == {f"s{i}" for i in range(12)}
        await reader.close()


async def test_offline_edits_survive_a_reconnect(
    board: Board, session: aiohttp.ClientSession
) -> None:
    alice, bob = WhiteboardClient(), WhiteboardClient()
    for c in (alice, bob):
        await c.connect(session, board.url + "offline")
        await c.wait_synced()
    await alice.edit(lambda d: d.get("notes", type=Text).insert(0, "hello"))
    await bob.wait_for(lambda c: c.json().get("notes") == "hello")
    await alice.drop()
    await alice.edit(add_shape("made-offline"))
    await bob.edit(add_shape("made-online"))
    await alice.connect(session, board.url + "offline")
    await alice.wait_synced()
    both = {"made-offline", "made-online"}
    await alice.wait_for(lambda c: set(c.json().get("shapes", {})) == both)
    await bob.wait_for(lambda c: set(c.json().get("shapes", {})) == both)
    assert alice.json() == bob.json()
    await alice.close()
    await bob.close()


async def test_awareness_is_relayed_and_removed(
    board: Board, session: aiohttp.ClientSession
) -> None:
    alice, bob = WhiteboardClient(client_id=111), WhiteboardClient(client_id=222)
    await alice.connect(session, board.url + "presence")
    await alice.wait_synced()
    await alice.set_presence({"name": "alice", "cursor": [1, 2]})
    await bob.connect(session, board.url + "presence")
    await bob.wait_for(lambda c: 111 in c.peers)  # newcomer gets the stored states
    assert bob.peers[111]["name"] == "alice"
    await bob.set_presence({"name": "bob"})
    await alice.wait_for(lambda c: 222 in c.peers)
    await bob.close()
    await alice.wait_for(lambda c: 222 not in c.peers)
    await alice.close()


async def test_bad_frames_close_the_socket(board: Board, session: aiohttp.ClientSession) -> None:
    async with session.ws_connect(board.url + "bad") as ws:
        await ws.send_bytes(b"\x00\x05\x01")
        while (await ws.receive()).type not in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED):
            pass
        assert ws.close_code == 1002
    async with session.ws_connect(board.url + "bad") as ws:
        await ws.send_str("hello")
        while (await ws.receive()).type not in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED):
            pass
        assert ws.close_code == 1003
    async with session.ws_connect(board.url + "bad") as ws:
        await ws.send_bytes(ywebsocket.update(b"\xff\xff\xff"))
        while (await ws.receive()).type not in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED):
            pass
        assert ws.close_code == 1002


async def test_restore_is_broadcast_as_a_forward_edit(
    board: Board, session: aiohttp.ClientSession
) -> None:
    client = WhiteboardClient()
    await client.connect(session, board.url + "restore")
    await client.wait_synced()
    await client.edit(add_shape("v1"))
    await client.edit(lambda d: d.get("title", type=Text).insert(0, "first"))
    await client.edit(lambda d: d.get("order", type=Array).extend([1, 2]))
    room = await board.rooms.open("restore")
    await client.wait_for(lambda c: "order" in c.json())
    saved = room.doc.get_update()
    saved_json = doc_to_json(doc_from_update(saved))
    await client.edit(add_shape("v2"))
    await client.edit(lambda d: d.get("scratch", type=Text).insert(0, "temp"))
    await client.wait_for(lambda c: True)
    room.restore(saved)
    await client.wait_for(lambda c: c.json().get("shapes") == saved_json["shapes"])
    assert client.json()["title"] == "first" and client.json()["scratch"] == ""
    assert doc_to_json(room.doc)["shapes"] == saved_json["shapes"]
    room.restore(room.doc.get_update())  # restoring the current state changes nothing
    await client.close()


async def test_query_awareness_and_sync_step1_from_client(
    board: Board, session: aiohttp.ClientSession
) -> None:
    async with session.ws_connect(board.url + "raw") as ws:
        first = ywebsocket.parse((await ws.receive()).data)
        assert first.kind == "sync_step1"
        await ws.send_bytes(ywebsocket.sync_step1(Doc().get_state()))
        reply = ywebsocket.parse((await ws.receive()).data)
        assert reply.kind == "sync_step2"
        await ws.send_bytes(ywebsocket.query_awareness())
        await ws.send_bytes(ywebsocket.sync_step1(b"\xff\xff"))
        message = await ws.receive()
        assert message.type == aiohttp.WSMsgType.CLOSE and message.data == 1002


def test_parse_rejects_malformed_frames() -> None:
    for bad in [b"", b"\x00", b"\x00\x07\x00", b"\x09", b"\x01\x05ab", b"\x80\x80\x80"]:
        with pytest.raises(ywebsocket.ProtocolError):
            ywebsocket.parse(bad)
    assert ywebsocket.parse(ywebsocket.awareness(b"xy")) == ywebsocket.Frame("awareness", b"xy")
