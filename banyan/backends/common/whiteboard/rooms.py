"""Exactly one loaded :class:`Room` per name, loaded before anyone is served.

A naive server creates a room on first connection and starts serving before its stored state is
loaded, so two users opening a brand-new room at the same instant can each get a different
document and lose edits. Here a per-name lock makes the first arrival load the room while the others
wait for that same instance. A room with nobody left is unloaded after a grace period.

:meth:`RoomManager.share` makes the manager's rooms shared with the other replicas of the backend
through a fan-out bus (:mod:`.replicas`): a room subscribes to its channel before it is loaded and
leaves it once unloaded. Without it nothing of that runs.
"""

from __future__ import annotations

import asyncio
import contextlib

from banyan.backends.common.fanout import Bus
from banyan.backends.common.whiteboard.replicas import SharedRooms
from banyan.backends.common.whiteboard.room import Peer, Room
from banyan.backends.common.whiteboard.store import RoomStore


class RoomManager:
    def __init__(
        self,
        store: RoomStore,
        *,
        grace: float = 10.0,
        flush_interval: float = 0.05,
        compact_every: int = 200,
    ) -> None:
        self.store = store
        self.grace = grace
        self._flush_interval = flush_interval
        self._compact_every = compact_every
        self._rooms: dict[str, Room] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._unloads: dict[str, asyncio.TimerHandle] = {}
        self._tasks: set[asyncio.Task[bool]] = set()
        self.shared: SharedRooms | None = None

    def share(self, bus: Bus, *, tick: float = 30.0) -> SharedRooms:
        """Share every room with the other replicas on ``bus`` (call before serving)."""
        self.shared = SharedRooms(bus, tick=tick)
        return self.shared

    @property
    def loaded(self) -> list[str]:
        return sorted(self._rooms)

    def _lock(self, name: str) -> asyncio.Lock:
        return self._locks.setdefault(name, asyncio.Lock())

    async def _get(self, name: str) -> Room:
        """The loaded room (loading it if needed); the caller holds the name's lock."""
        pending = self._unloads.pop(name, None)
        if pending is not None:
            pending.cancel()
        room = self._rooms.get(name)
        if room is None:
            room = Room(
                name,
                self.store,
                flush_interval=self._flush_interval,
                compact_every=self._compact_every,
            )
            if self.shared is None:
                await room.load()
            else:
                await self.shared.attach(room)
                try:
                    await room.load()
                except BaseException:
                    await self.shared.detach(room)
                    raise
                self.shared.start(room)
            self._rooms[name] = room
        return room

    async def join(self, name: str, peer: Peer) -> Room:
        async with self._lock(name):
            room = await self._get(name)
            room.peers.add(peer)
            room.welcome(peer)
            return room

    async def leave(self, room: Room, peer: Peer) -> None:
        room.remove_peer(peer)
        if not room.peers:
            self._schedule_unload(room.name)

    async def open(self, name: str) -> Room:
        """A loaded room for a server-side read or write (it unloads later if nobody joins)."""
        async with self._lock(name):
            room = await self._get(name)
            if not room.peers:
                self._schedule_unload(room.name)
            return room

    def _schedule_unload(self, name: str) -> None:
        loop = asyncio.get_running_loop()
        previous = self._unloads.pop(name, None)
        if previous is not None:
            previous.cancel()

        def fire() -> None:
            self._unloads.pop(name, None)
            task = loop.create_task(self.unload(name))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

        self._unloads[name] = loop.call_later(self.grace, fire)

    async def unload(self, name: str) -> bool:
        """Persist and drop ``name`` from memory if nobody is connected; True if unloaded."""
        async with self._lock(name):
            room = self._rooms.get(name)
            if room is None or room.peers:
                return False
            await room.close()
            del self._rooms[name]
            if self.shared is not None:
                await self.shared.detach(room)
            return True

    async def close(self) -> None:
        """Persist and drop every room (application shutdown)."""
        for handle in self._unloads.values():
            handle.cancel()
        self._unloads.clear()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for name in list(self._rooms):
            async with self._lock(name):
                room = self._rooms.pop(name, None)
                if room is not None:
                    await room.close()
                    if self.shared is not None:
                        await self.shared.detach(room)
        if self.shared is not None:
            await self.shared.close()
