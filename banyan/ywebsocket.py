"""y-websocket wire format: frames exchanged with yjs' ``WebsocketProvider``.

A frame is ``varuint(message type)`` followed by its payload. Sync frames (type 0) carry
``varuint(sync type)`` and a length-prefixed Yjs payload: a state vector for step 1, an update for
step 2 and for incremental updates. Awareness frames (type 1) carry a length-prefixed awareness
update. Type 3 asks the server to send every known awareness state. Type 2 (auth) is not used.

A protocol of Yjs, not of one application: the backends' whiteboard speaks it, and the proxy reads
it (a shadowed room compared, a room written through to the other store) without importing any
backend code.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pycrdt import write_message, write_var_uint

MESSAGE_SYNC = 0
MESSAGE_AWARENESS = 1
MESSAGE_AUTH = 2
MESSAGE_QUERY_AWARENESS = 3
SYNC_STEP1 = 0
SYNC_STEP2 = 1
SYNC_UPDATE = 2
EMPTY_UPDATE = b"\x00\x00"

Kind = Literal["sync_step1", "sync_step2", "update", "awareness", "query_awareness"]


class ProtocolError(ValueError):
    """A frame that does not follow the y-websocket protocol."""


@dataclass(frozen=True, slots=True)
class Frame:
    kind: Kind
    payload: bytes


def read_var_uint(data: bytes, pos: int) -> tuple[int, int]:
    """Decode a lib0 variable-length unsigned integer at ``pos``; return it and the next offset."""
    value, shift = 0, 0
    while True:
        if pos >= len(data) or shift > 63:
            raise ProtocolError("truncated frame")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return value, pos


def read_var_bytes(data: bytes, pos: int) -> tuple[bytes, int]:
    """Decode a length-prefixed byte string at ``pos``; return it and the next offset."""
    length, pos = read_var_uint(data, pos)
    if pos + length > len(data):
        raise ProtocolError("truncated frame")
    return data[pos : pos + length], pos + length


_SYNC_KINDS: dict[int, Kind] = {
    SYNC_STEP1: "sync_step1",
    SYNC_STEP2: "sync_step2",
    SYNC_UPDATE: "update",
}


def parse(frame: bytes) -> Frame:
    """Decode one binary frame; raise :class:`ProtocolError` on anything malformed."""
    message_type, pos = read_var_uint(frame, 0)
    if message_type == MESSAGE_QUERY_AWARENESS:
        return Frame("query_awareness", b"")
    if message_type == MESSAGE_AWARENESS:
        return Frame("awareness", read_var_bytes(frame, pos)[0])
    if message_type == MESSAGE_SYNC:
        sync_type, pos = read_var_uint(frame, pos)
        if sync_type not in _SYNC_KINDS:
            raise ProtocolError(f"unknown sync message type {sync_type}")
        return Frame(_SYNC_KINDS[sync_type], read_var_bytes(frame, pos)[0])
    raise ProtocolError(f"unknown message type {message_type}")


def sync_step1(state_vector: bytes) -> bytes:
    return write_var_uint(MESSAGE_SYNC) + write_var_uint(SYNC_STEP1) + write_message(state_vector)


def sync_step2(update: bytes) -> bytes:
    return write_var_uint(MESSAGE_SYNC) + write_var_uint(SYNC_STEP2) + write_message(update)


def update(update_bytes: bytes) -> bytes:
    return write_var_uint(MESSAGE_SYNC) + write_var_uint(SYNC_UPDATE) + write_message(update_bytes)


def awareness(update_bytes: bytes) -> bytes:
    return write_var_uint(MESSAGE_AWARENESS) + write_message(update_bytes)


def query_awareness() -> bytes:
    return write_var_uint(MESSAGE_QUERY_AWARENESS)
