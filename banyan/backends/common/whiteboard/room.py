"""One live whiteboard room: its document, its connections, and its write-behind persistence.

Every change that reaches the document (a client's update or sync step 2, or a snapshot restore) is
reduced to the exact diff it caused, broadcast to the other connections and queued for the store.
A single writer task drains the queue in order, so stored updates never interleave, and merges the
stored history into one update every ``compact_every`` updates.

When replicas share the room (:mod:`.replicas`), ``link`` hears of every local change, and changes
from other replicas come in through :meth:`Room.apply_remote` and :meth:`Room.remote_awareness`:
they reach the local connections but are not sent back out. A remote update is stored by the
replica it came from; one that heals a gap (``persist=True``) is stored here too. Compacting then
first merges whatever the store holds (other replicas append to the same history) and waits for a
working bus.
"""

from __future__ import annotations

import asyncio
from collections.abc import Hashable
from typing import Protocol

from pycrdt import Doc

from banyan import ywebsocket
from banyan.backends.common.whiteboard.awareness import AwarenessRelay
from banyan.backends.common.whiteboard.snapshot import replace_content
from banyan.backends.common.whiteboard.store import RoomStore
from banyan.logs import get_logger
from banyan.tasks import cancel_and_wait
from banyan.ydoc import doc_from_update

log = get_logger("whiteboard.room")


class Peer(Hashable, Protocol):
    """A connection as the room sees it: it can be sent frames without blocking."""

    def send(self, frame: bytes) -> None: ...


class RoomLink(Protocol):
    """What a room shared with other replicas tells them (see :mod:`.replicas`)."""

    def local_update(self, diff: bytes) -> None: ...

    def local_awareness(self, update: bytes) -> None: ...

    def may_compact(self) -> bool: ...

    def compacted(self, state_vector: bytes) -> None: ...


class Room:
    def __init__(
        self,
        name: str,
        store: RoomStore,
        *,
        flush_interval: float = 0.05,
        compact_every: int = 200,
    ) -> None:
        self.name = name
        self.store = store
        self.doc: Doc = Doc()
        self.awareness = AwarenessRelay()
        self.peers: set[Peer] = set()
        self._flush_interval = flush_interval
        self._compact_every = compact_every
        self._pending: list[bytes] = []
        self._stored_since_compact = 0
        self._wake = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        self.closed = False
        self.link: RoomLink | None = None
        self._remote_unsaved = False

    async def load(self) -> None:
        """Read the stored history into the document and start the writer."""
        updates = await self.store.load_updates(self.name)
        for item in updates:
            self.doc.apply_update(item)
        self._stored_since_compact = len(updates)
        self._writer = asyncio.create_task(
            self._write_loop(), name=f"whiteboard-writer:{self.name}"
        )

    # -- protocol ---------------------------------------------------------------------------

    def welcome(self, peer: Peer) -> None:
        """What a newcomer receives first: our state vector, then everybody's presence."""
        peer.send(ywebsocket.sync_step1(self.doc.get_state()))
        present = self.awareness.snapshot()
        if present is not None:
            peer.send(ywebsocket.awareness(present))

    def receive(self, peer: Peer, data: bytes) -> None:
        """Handle one binary frame from ``peer`` (raises ProtocolError when malformed)."""
        frame = ywebsocket.parse(data)
        if frame.kind == "sync_step1":
            peer.send(ywebsocket.sync_step2(self._update_since(frame.payload)))
        elif frame.kind in ("sync_step2", "update"):
            self.apply(frame.payload, origin=peer)
        elif frame.kind == "awareness":
            try:
                changed = self.awareness.apply(frame.payload, peer)
            except ywebsocket.ProtocolError:
                raise
            if changed:
                self._broadcast(ywebsocket.awareness(frame.payload), skip=peer)
                if self.link is not None:
                    self.link.local_awareness(frame.payload)
        else:  # query_awareness
            present = self.awareness.snapshot()
            if present is not None:
                peer.send(ywebsocket.awareness(present))

    def _update_since(self, state_vector: bytes) -> bytes:
        try:
            return self.doc.get_update(state_vector)
        except Exception as exc:  # pycrdt raises a plain ValueError/RuntimeError on garbage
            raise ywebsocket.ProtocolError("invalid state vector") from exc

    def apply(self, update: bytes, origin: Peer | None = None) -> bytes | None:
        """Apply an update; broadcast and persist the diff it caused. Returns the diff."""
        before = self.doc.get_state()
        try:
            self.doc.apply_update(update)
        except Exception as exc:
            raise ywebsocket.ProtocolError("invalid update") from exc
        diff = self.doc.get_update(before)
        if diff == ywebsocket.EMPTY_UPDATE:
            return None
        self._broadcast(ywebsocket.update(diff), skip=origin)
        self._pending.append(diff)
        self._wake.set()
        if self.link is not None:
            self.link.local_update(diff)
        return diff

    def apply_remote(self, update: bytes, *, persist: bool) -> bytes | None:
        """Apply an update from another replica: every local connection gets the diff, no other
        replica does. ``persist`` stores it here too; otherwise its origin stores it (and this
        replica's next compaction keeps it). Returns the diff."""
        before = self.doc.get_state()
        try:
            self.doc.apply_update(update)
        except Exception as exc:
            raise ywebsocket.ProtocolError("invalid update") from exc
        diff = self.doc.get_update(before)
        if diff == ywebsocket.EMPTY_UPDATE:
            return None
        self._broadcast(ywebsocket.update(diff), skip=None)
        if persist:
            self._pending.append(diff)
            self._wake.set()
        else:
            self._remote_unsaved = True
        return diff

    def persist(self, update: bytes) -> None:
        """Store ``update`` (already in the document) once more: another replica's compaction
        may have dropped it from the store."""
        self._pending.append(update)
        self._wake.set()

    def remote_awareness(self, update: bytes, origin: Hashable) -> None:
        """Presence from another replica (``origin`` stands for it): relay it locally."""
        if self.awareness.apply(update, origin):
            self._broadcast(ywebsocket.awareness(update), skip=None)

    def forget(self, origin: Hashable) -> None:
        """Drop the presence a vanished replica introduced, telling local connections."""
        removal = self.awareness.disconnect(origin)
        if removal is not None:
            self._broadcast(ywebsocket.awareness(removal), skip=None)

    def restore(self, state: bytes, *, client_id: int | None = None) -> None:
        """Make the live document equal to a saved full-state update, as a forward edit. With
        ``client_id`` the edit is written as that Yjs client: two stores holding the same
        document make the very same edit (a mirrored restore), so merging both adds nothing."""
        if client_id is not None:
            editor: Doc = Doc(client_id=client_id)
            editor.apply_update(self.doc.get_update())
            replace_content(editor, doc_from_update(state))
            self.apply(editor.get_update(self.doc.get_state()))
            return
        before = self.doc.get_state()
        replace_content(self.doc, doc_from_update(state))
        diff = self.doc.get_update(before)
        if diff != ywebsocket.EMPTY_UPDATE:
            self._broadcast(ywebsocket.update(diff), skip=None)
            self._pending.append(diff)
            self._wake.set()
            if self.link is not None:
                self.link.local_update(diff)

    def remove_peer(self, peer: Peer) -> None:
        self.peers.discard(peer)
        removal = self.awareness.disconnect(peer)
        if removal is not None:
            self._broadcast(ywebsocket.awareness(removal), skip=peer)
            if self.link is not None:
                self.link.local_awareness(removal)

    def _broadcast(self, frame: bytes, *, skip: Peer | None) -> None:
        for peer in list(self.peers):
            if peer is not skip:
                peer.send(frame)

    # -- persistence ------------------------------------------------------------------------

    async def _write_loop(self) -> None:
        while True:
            await self._wake.wait()
            await asyncio.sleep(self._flush_interval)
            self._wake.clear()
            await self._flush_once()

    async def _flush_once(self) -> None:
        if not self._pending:
            return
        batch, self._pending = self._pending, []
        try:
            await self.store.append_updates(self.name, batch)
        except Exception:
            log.exception("whiteboard_persist_failed", room=self.name, updates=len(batch))
            self._pending[:0] = batch  # keep them; the next wake retries
            return
        self._stored_since_compact += len(batch)
        if self._stored_since_compact >= self._compact_every:
            try:
                await self.compact()
            except Exception:  # the history stays as it is; the next flush tries again
                log.exception("whiteboard_compact_failed", room=self.name)

    async def compact(self) -> None:
        if self.link is not None:
            if not self.link.may_compact():
                return  # later: without the bus, other replicas' recent appends could be lost
            for stored in await self.store.load_updates(self.name):
                found = self.apply_remote(stored, persist=False)
                if found is not None:  # stored by a replica we never heard: pass it on
                    self.link.local_update(found)
        await self.store.compact(self.name, self.doc.get_update())
        self._stored_since_compact = 1
        self._remote_unsaved = False
        if self.link is not None:
            self.link.compacted(self.doc.get_state())

    async def flush(self) -> None:
        """Persist everything queued so far (used by HTTP reads, snapshots and unloading)."""
        await self._flush_once()

    async def close(self) -> None:
        """Stop the writer after persisting what is queued; compact the stored history."""
        self.closed = True
        await cancel_and_wait([self._writer])
        await self._flush_once()
        if self._stored_since_compact > 1 or self._remote_unsaved:
            await self.compact()
