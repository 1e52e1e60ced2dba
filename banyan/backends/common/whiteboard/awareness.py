"""Presence relay for the y-websocket awareness protocol.

The server does not interpret cursors or names; it keeps the newest state per Yjs client id (by the
client's clock), tells newcomers every live state, relays each change to the other connections and,
when a connection goes away, announces the removal of the client ids it introduced — what a
browser's ``y-websocket`` provider expects from its server.

An awareness update is ``varuint(count)`` then, per client, ``varuint(client id)``,
``varuint(clock)`` and a length-prefixed JSON state (``null`` when the client left).
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable

from pycrdt import write_message, write_var_uint

from banyan.ywebsocket import read_var_bytes, read_var_uint

Entry = tuple[int, int, str]  # client id, clock, JSON state ("null" = removed)


def decode(update: bytes) -> list[Entry]:
    count, pos = read_var_uint(update, 0)
    entries: list[Entry] = []
    for _ in range(count):
        client_id, pos = read_var_uint(update, pos)
        clock, pos = read_var_uint(update, pos)
        state, pos = read_var_bytes(update, pos)
        entries.append((client_id, clock, state.decode("utf-8", errors="replace") or "null"))
    return entries


def encode(entries: Iterable[Entry]) -> bytes:
    items = list(entries)
    out = [write_var_uint(len(items))]
    for client_id, clock, state in items:
        out += [write_var_uint(client_id), write_var_uint(clock), write_message(state.encode())]
    return b"".join(out)


class AwarenessRelay:
    """Newest awareness state per client id, and which connection introduced which id."""

    def __init__(self) -> None:
        self._entries: dict[int, tuple[int, str]] = {}
        self._owners: dict[Hashable, set[int]] = {}

    def apply(self, update: bytes, origin: Hashable) -> bool:
        """Record an update from ``origin``; True when it changed anything worth relaying."""
        changed = False
        for client_id, clock, state in decode(update):
            current = self._entries.get(client_id)
            if current is None or clock > current[0] or (clock == current[0] and state == "null"):
                self._entries[client_id] = (clock, state)
                changed = True
            self._owners.setdefault(origin, set()).add(client_id)
        return changed

    def snapshot(self, owners: Iterable[Hashable] | None = None) -> bytes | None:
        """Every live state, for a newcomer (None when nobody is present); with ``owners``, only
        the states those origins introduced."""
        chosen: set[int] | None = None
        if owners is not None:
            chosen = set()
            for origin in owners:
                chosen |= self._owners.get(origin, set())
        live = [
            (cid, clock, state)
            for cid, (clock, state) in self._entries.items()
            if state != "null" and (chosen is None or cid in chosen)
        ]
        return encode(live) if live else None

    def disconnect(self, origin: Hashable) -> bytes | None:
        """Forget ``origin``'s clients; return the removal update to broadcast, if any."""
        removed: list[Entry] = []
        for client_id in self._owners.pop(origin, set()):
            clock, state = self._entries.get(client_id, (0, "null"))
            if state != "null":
                removed.append((client_id, clock + 1, "null"))
            self._entries.pop(client_id, None)
        return encode(removed) if removed else None

    @property
    def present(self) -> int:
        return sum(1 for _, state in self._entries.values() if state != "null")
