"""What a backend implements to persist whiteboard rooms and their snapshots.

A room's state is an append-only list of Yjs updates (merged now and then by :meth:`compact`), so a
crash loses at most the updates still queued in memory. Snapshots are named full-state updates.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class SnapshotInfo:
    id: str
    room: str
    name: str
    created_ms: int
    size: int
    created_by: str


class RoomStore(Protocol):
    async def load_updates(self, room: str) -> list[bytes]:
        """All stored updates of ``room``, in the order they were appended."""
        ...

    async def append_updates(self, room: str, updates: list[bytes]) -> None:
        """Append updates (one transaction)."""
        ...

    async def compact(self, room: str, state: bytes) -> None:
        """Replace every stored update of ``room`` by one merged ``state`` update (one
        transaction). Only the room's single writer calls it, so nothing is appended meanwhile."""
        ...

    async def save_snapshot(self, info: SnapshotInfo, state: bytes) -> SnapshotInfo:
        """Store a snapshot; if ``info.id`` exists already, return the stored one unchanged."""
        ...

    async def list_snapshots(self, room: str) -> list[SnapshotInfo]:
        """Snapshots of ``room``, oldest first."""
        ...

    async def get_snapshot(
        self, room: str, snapshot_id: str
    ) -> tuple[SnapshotInfo, bytes] | None: ...


class MemoryRoomStore:
    """A complete in-memory :class:`RoomStore` (used by unit tests and as a reference)."""

    def __init__(self) -> None:
        self.updates: dict[str, list[bytes]] = {}
        self.snapshots: dict[str, tuple[SnapshotInfo, bytes]] = {}

    async def load_updates(self, room: str) -> list[bytes]:
        return list(self.updates.get(room, []))

    async def append_updates(self, room: str, updates: list[bytes]) -> None:
        self.updates.setdefault(room, []).extend(updates)

    async def compact(self, room: str, state: bytes) -> None:
        self.updates[room] = [state]

    async def save_snapshot(self, info: SnapshotInfo, state: bytes) -> SnapshotInfo:
        if info.id in self.snapshots:
            return self.snapshots[info.id][0]
        self.snapshots[info.id] = (info, state)
        return info

    async def list_snapshots(self, room: str) -> list[SnapshotInfo]:
        found = [info for info, _ in self.snapshots.values() if info.room == room]
        return sorted(found, key=lambda info: (info.created_ms, info.id))

    async def get_snapshot(self, room: str, snapshot_id: str) -> tuple[SnapshotInfo, bytes] | None:
        found = self.snapshots.get(snapshot_id)
        return found if found and found[0].room == room else None
