"""Whiteboard rooms shared by the replicas of one backend, through the fan-out bus.

Every replica that has a room loaded subscribes to the room's channel (``wb:{room}``) *before*
reading the store, keeps what arrives while it reads, applies it once loaded, and then says
``hello``. Messages (kind: body):

- ``u``: an update made here (a client's edit or a restore). Receivers apply it and pass it to
  their connections; the replica it came from stores it.
- ``a``: an awareness update of this replica's own clients (newer clocks win, as locally).
- ``hello``: our state vector — sent after loading and after every bus resync. Each receiver
  answers with its own state vector (``sv``), the updates we lack (``s2``) and its clients'
  presence (``a``); we answer their ``sv`` with what *they* lack. Yjs updates are idempotent and
  commutative, so however many replicas answer, everybody converges.
- ``sv``: a state vector; answered with ``s2`` (always, since a state vector does not show
  deletions and an ``s2`` carries the whole delete set).
- ``tick``: a state vector sent every ``tick`` seconds for rooms with connections (a slow
  anti-entropy and a heartbeat); answered with ``s2`` only when the sender lacks our items. A
  replica not heard from in a room for three ticks has its clients' presence removed.
- ``s2``: updates that fill a gap; applied *and stored* by the receiver (a gap means its origin's
  copy may never have reached the store).
- ``compacted``: the state vector of a compaction just written; a replica holding items it lacks
  (appended while the compactor read the store) stores them again.

Ordering: one replica's messages on a channel arrive in the order sent (one publisher connection);
across replicas no order is needed (CRDT). No echo: the bus drops a replica's own messages and a
remote change is never republished.
"""

from __future__ import annotations

import asyncio
import time

from banyan import ywebsocket
from banyan.backends.common.fanout import Bus, Message
from banyan.backends.common.whiteboard.room import Room
from banyan.logs import get_logger
from banyan.tasks import cancel_and_wait

log = get_logger("whiteboard.replicas")

EARLY_LIMIT = 10_000  # messages kept while a room loads (beyond that, ``hello`` heals)


def read_state_vector(data: bytes) -> dict[int, int]:
    """Decode a Yjs state vector: ``varuint(count)`` then ``(client, clock)`` pairs."""
    count, pos = ywebsocket.read_var_uint(data, 0)
    clocks: dict[int, int] = {}
    for _ in range(count):
        client, pos = ywebsocket.read_var_uint(data, pos)
        clock, pos = ywebsocket.read_var_uint(data, pos)
        clocks[client] = clock
    return clocks


def lacks(theirs: bytes, ours: bytes) -> bool:
    """True when the document with state vector ``theirs`` misses items ours has."""
    known = read_state_vector(theirs)
    return any(clock > known.get(client, 0) for client, clock in read_state_vector(ours).items())


def origin_of(replica: str) -> tuple[str, str]:
    """How a room's awareness relay names another replica's clients."""
    return ("replica", replica)


class Link:
    """One loaded room's place on its channel."""

    def __init__(self, shared: SharedRooms, room: Room) -> None:
        self.shared = shared
        self.bus = shared.bus
        self.room = room
        self.channel = self.bus.channel("wb", room.name)
        self.ready = False
        self.early: list[Message] = []
        self.seen: dict[str, float] = {}

    # -- this replica -> the others ---------------------------------------------------------

    def _send(self, kind: str, body: bytes) -> None:
        self.bus.publish(self.channel, kind, body)

    def local_update(self, diff: bytes) -> None:
        self._send("u", diff)

    def local_awareness(self, update: bytes) -> None:
        self._send("a", update)

    def may_compact(self) -> bool:
        return self.bus.up_for() >= self.shared.settle

    def compacted(self, state_vector: bytes) -> None:
        self._send("compacted", state_vector)

    def hello(self) -> None:
        self._send("hello", self.room.doc.get_state())
        self._send_presence()

    def _send_presence(self) -> None:
        present = self.room.awareness.snapshot(owners=list(self.room.peers))
        if present is not None:
            self._send("a", present)

    def tick(self, now: float) -> None:
        if self.room.peers:
            self._send("tick", self.room.doc.get_state())
        silent = [r for r, when in self.seen.items() if now - when > 3 * self.shared.tick]
        for replica in silent:
            del self.seen[replica]
            self.room.forget(origin_of(replica))

    # -- the others -> this replica ---------------------------------------------------------

    def receive(self, message: Message) -> None:
        if self.room.closed:
            return
        if not self.ready:
            if len(self.early) < EARLY_LIMIT:
                self.early.append(message)
            return
        self.seen[message.sender] = time.monotonic()
        try:
            self._handle(message)
        except ywebsocket.ProtocolError as exc:
            log.warning(
                "whiteboard_bad_replica_message",
                room=self.room.name,
                kind=message.kind,
                sender=message.sender,
                reason=str(exc),
            )

    def start(self) -> None:
        """The room is loaded: apply what came meanwhile, then say hello."""
        self.ready = True
        early, self.early = self.early, []
        for message in early:
            self.receive(message)
        self.hello()

    def _handle(self, message: Message) -> None:
        room, kind, body = self.room, message.kind, message.body
        if kind == "u":
            room.apply_remote(body, persist=False)
        elif kind == "s2":
            room.apply_remote(body, persist=True)
        elif kind == "a":
            room.remote_awareness(body, origin_of(message.sender))
        elif kind == "hello":
            self._send("sv", room.doc.get_state())
            self._send_missing(body, always=True)
            self._send_presence()
        elif kind == "sv":
            self._send_missing(body, always=True)
        elif kind == "tick":
            self._send_missing(body, always=False)
        elif kind == "compacted":
            if lacks(body, room.doc.get_state()):
                room.persist(self._missing(body))
        else:
            raise ywebsocket.ProtocolError(f"unknown message kind {kind!r}")

    def _missing(self, state_vector: bytes) -> bytes:
        try:
            return self.room.doc.get_update(state_vector)
        except Exception as exc:
            raise ywebsocket.ProtocolError("invalid state vector") from exc

    def _send_missing(self, state_vector: bytes, *, always: bool) -> None:
        if not always and not lacks(state_vector, self.room.doc.get_state()):
            return
        diff = self._missing(state_vector)
        if diff != ywebsocket.EMPTY_UPDATE:
            self._send("s2", diff)


class SharedRooms:
    """The links of one :class:`~.rooms.RoomManager`'s loaded rooms, the periodic ``tick`` and
    the ``hello`` of every room after a bus resync."""

    def __init__(self, bus: Bus, *, tick: float = 30.0, settle: float = 1.0) -> None:
        self.bus = bus
        self.tick = tick
        self.settle = settle
        self.links: dict[str, Link] = {}
        self._ticker: asyncio.Task[None] | None = None
        bus.on_resync(self.resync)

    async def attach(self, room: Room) -> None:
        """Subscribe before the room reads the store (what arrives meanwhile is kept)."""
        link = Link(self, room)
        room.link = link
        self.links[room.name] = link
        await self.bus.subscribe(link.channel, link.receive)
        if self._ticker is None and self.tick > 0:
            self._ticker = asyncio.create_task(self._tick_loop(), name="whiteboard-replica-tick")

    def start(self, room: Room) -> None:
        link = self.links.get(room.name)
        if link is not None and link.room is room:
            link.start()

    async def detach(self, room: Room) -> None:
        link = self.links.get(room.name)
        if link is not None and link.room is room:
            del self.links[room.name]
            await self.bus.unsubscribe(link.channel)

    def resync(self) -> None:
        for link in list(self.links.values()):
            if link.ready and not link.room.closed:
                link.hello()

    async def _tick_loop(self) -> None:
        while True:
            await asyncio.sleep(self.tick)
            now = time.monotonic()
            for link in list(self.links.values()):
                if link.ready and not link.room.closed:
                    link.tick(now)

    async def close(self) -> None:
        if self._ticker is not None:
            await cancel_and_wait([self._ticker])
            self._ticker = None
