"""Rooms shared between replicas (banyan/backends/common/whiteboard/replicas.py): two real room
managers
on one store, each with its own real bus on the real Redis (skipped loudly without it).

The peers here record the frames a room sends them; :class:`GatedStore` is an injected fault (a
store whose reads wait for the test)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import pytest
from pycrdt import Doc, Map

from banyan import ywebsocket
from banyan.backends.common.fanout import Bus
from banyan.backends.common.whiteboard import awareness
from banyan.backends.common.whiteboard.replicas import lacks, origin_of, read_state_vector
from banyan.backends.common.whiteboard.room import Room
from banyan.backends.common.whiteboard.rooms import RoomManager
from banyan.backends.common.whiteboard.store import MemoryRoomStore
from banyan.ydoc import doc_from_update
from tests.backends.common.redis_front import require_redis, unique_prefix


class Peer:
    def __init__(self) -> None:
        self.frames: list[ywebsocket.Frame] = []

    def send(self, frame: bytes) -> None:
        self.frames.append(ywebsocket.parse(frame))

    def kinds(self) -> list[str]:
        return [f.kind for f in self.frames]


class GatedStore(MemoryRoomStore):
    """Fault: reading a room's updates waits until the test opens the gate."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()

    async def load_updates(self, room: str) -> list[bytes]:
        await self.gate.wait()
        return await super().load_updates(room)


async def until(check: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


def edit(key: str, client_id: int | None = None) -> bytes:
    doc: Doc = Doc(client_id=client_id) if client_id is not None else Doc()
    doc.get("shapes", type=Map)[key] = {"kind": "dot"}
    return doc.get_update()


def keys(room: Room | Doc) -> set[str]:
    doc = room.doc if isinstance(room, Room) else room
    copy = doc_from_update(doc.get_update())
    return set(copy.get("shapes", type=Map).keys())


@pytest.fixture
async def redis_url() -> str:
    return await require_redis()


@asynccontextmanager
async def replica(
    url: str, prefix: str, name: str, store: MemoryRoomStore, *, tick: float = 30.0
) -> AsyncIterator[tuple[RoomManager, Bus]]:
    bus = Bus(url, service="wb", prefix=prefix, replica=name, min_backoff=0.02, max_backoff=0.1)
    rooms = RoomManager(store, grace=30, flush_interval=0.01, compact_every=4)
    shared = rooms.share(bus, tick=tick)
    shared.settle = 0.0
    await bus.start()
    await until(lambda: bus.up)
    try:
        yield rooms, bus
    finally:
        await rooms.close()
        await bus.close()


def test_state_vector_helpers() -> None:
    doc: Doc = Doc(client_id=7)
    doc.get("shapes", type=Map)["a"] = 1
    other: Doc = Doc(client_id=9)
    assert read_state_vector(doc.get_state()) == {7: 1}
    assert lacks(other.get_state(), doc.get_state())
    assert not lacks(doc.get_state(), other.get_state())
    assert origin_of("r1") == ("replica", "r1")


async def test_remote_updates_reach_peers_and_compaction_keeps_everyone(redis_url: str) -> None:
    store = MemoryRoomStore()
    prefix = unique_prefix()
    async with (
        replica(redis_url, prefix, "A", store) as (rooms_a, bus_a),
        replica(redis_url, prefix, "B", store) as (rooms_b, bus_b),
    ):
        peer_a, peer_b = Peer(), Peer()
        room_a = await rooms_a.join("r", peer_a)
        room_b = await rooms_b.join("r", peer_b)
        room_a.apply(edit("a1"))
        await until(lambda: keys(room_b) == {"a1"})
        assert "update" in peer_b.kinds()
        # the joins' hello exchange ends first: an `sv` of A that B answers after "b-only" below
        # would carry it to A by `s2`, which is right, but not the case this test builds
        await settled(bus_a, bus_b)

        # rows appended by a replica whose messages never arrived: A's compaction merges them
        await store.append_updates("r", [edit("ghost")])
        # B holds an item that is neither stored nor known to A (its origin's row was dropped)
        room_b.apply_remote(edit("b-only"), persist=False)
        for i in range(4):  # crosses compact_every on A
            room_a.apply(edit(f"a-more-{i}"))
        await until(lambda: "ghost" in keys(room_a) and "ghost" in keys(room_b))
        assert "ghost" in {k for f in peer_b.frames if f.kind == "update" for k in keys_of(f)}
        # A's compaction could not hold "b-only"; B stores it again on hearing "compacted"
        await until(lambda: "b-only" in keys(stored(store, "r")))
        assert "b-only" not in keys(room_a)

    assert keys(stored(store, "r")) >= {"a1", "ghost", "b-only", "a-more-3"}


async def settled(*buses: Bus, quiet: float = 0.3) -> None:
    """Until no bus has published or received anything for ``quiet`` seconds."""

    def traffic() -> int:
        return sum(bus.stats["published"] + bus.stats["received"] for bus in buses)

    deadline = time.monotonic() + 20.0
    seen = -1
    while seen != traffic():
        assert time.monotonic() < deadline, "the buses never settled"
        seen = traffic()
        await asyncio.sleep(quiet)


def keys_of(frame: ywebsocket.Frame) -> set[str]:
    return set(doc_from_update(frame.payload).get("shapes", type=Map).keys())


def stored(store: MemoryRoomStore, room: str) -> Doc:
    """The stored history of ``room``, merged."""
    doc: Doc = Doc()
    for item in store.updates.get(room, []):
        doc.apply_update(item)
    return doc


async def test_ticks_fill_gaps_and_expire_silent_replicas(redis_url: str) -> None:
    store = MemoryRoomStore()
    prefix = unique_prefix()
    async with replica(redis_url, prefix, "B", store, tick=0.05) as (rooms_b, _):
        peer_b = Peer()
        room_b = await rooms_b.join("t", peer_b)
        async with replica(redis_url, prefix, "A", store, tick=0.05) as (rooms_a, bus_a):
            peer_a = Peer()
            room_a = await rooms_a.join("t", peer_a)
            link, room_a.link = room_a.link, None
            room_a.apply(edit("quiet"))  # never published: B's tick finds A has more
            room_a.link = link
            await until(lambda: "quiet" in keys(room_b))
            presence = awareness.encode([(42, 1, '{"name":"A"}')])
            room_a.receive(peer_a, ywebsocket.awareness(presence))
            await until(lambda: room_b.awareness.present == 1)
            await bus_a.close()  # A goes silent without saying goodbye
            await until(lambda: room_b.awareness.present == 0, timeout=3)
        removal = [f for f in peer_b.frames if f.kind == "awareness"][-1]
        assert awareness.decode(removal.payload)[0][2] == "null"


async def test_messages_during_load_are_kept_and_garbage_is_ignored(redis_url: str) -> None:
    prefix = unique_prefix()
    gated = GatedStore()
    async with (
        replica(redis_url, prefix, "A", MemoryRoomStore()) as (rooms_a, bus_a),
        replica(redis_url, prefix, "B", gated) as (rooms_b, _),
    ):
        room_a = await rooms_a.join("g", Peer())
        peer_b = Peer()
        joining = asyncio.create_task(rooms_b.join("g", peer_b))
        await until(lambda: "g" in (rooms_b.shared.links if rooms_b.shared else {}))
        await asyncio.sleep(0.05)  # B's subscription is confirmed: it is loading
        room_a.apply(edit("early"))
        channel = bus_a.channel("wb", "g")
        for kind, body in (("u", b"\xff\xff"), ("zzz", b""), ("tick", b"\xff"), ("sv", b"\x05")):
            bus_a.publish(channel, kind, body)
        await asyncio.sleep(0.05)
        gated.gate.set()
        room_b = await joining
        await until(lambda: "early" in keys(room_b))
        room_a.apply(edit("later"))
        await until(lambda: "later" in keys(room_b))
        assert room_b.peers == {peer_b}


async def test_compaction_waits_for_a_settled_bus(redis_url: str) -> None:
    store = MemoryRoomStore()
    bus = Bus(redis_url, service="wb", prefix=unique_prefix(), replica="A")  # never started
    rooms = RoomManager(store, grace=30, flush_interval=0.01, compact_every=2)
    rooms.share(bus, tick=0)
    room = await rooms.join("c", Peer())
    for i in range(5):
        room.apply(edit(f"k{i}"))
        await room.flush()
    assert len(store.updates["c"]) == 5  # not compacted while the bus is down
    assert room.link is not None and not room.link.may_compact()
    await rooms.close()
    assert len(store.updates["c"]) == 5


class BrokenStore(MemoryRoomStore):
    """Fault: the store cannot be read."""

    async def load_updates(self, room: str) -> list[bytes]:
        raise OSError("disk gone")


async def test_a_room_that_fails_to_load_leaves_its_channel(redis_url: str) -> None:
    async with replica(redis_url, unique_prefix(), "A", BrokenStore()) as (rooms, bus):
        with pytest.raises(OSError):
            await rooms.join("broken", Peer())
        assert bus.channels == []
        assert rooms.shared is not None and rooms.shared.links == {}


async def test_a_failed_compaction_keeps_the_writer_going(redis_url: str) -> None:
    store = MemoryRoomStore()
    async with replica(redis_url, unique_prefix(), "A", store) as (rooms, _):
        room = await rooms.join("f", Peer())
        await store.append_updates("f", [b"\xff\xfe garbage"])  # a row nobody can read
        for i in range(6):  # crosses compact_every: the compaction fails on the bad row
            room.apply(edit(f"k{i}"))
            await room.flush()
        assert len(store.updates["f"]) == 7
        room.apply(edit("still"))
        await until(lambda: len(store.updates["f"]) == 8)  # the writer task is alive
        store.updates["f"].pop(0)  # the bad row is repaired: the next compaction works
    assert len(store.updates["f"]) == 1
