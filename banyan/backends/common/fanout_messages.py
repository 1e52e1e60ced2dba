"""What travels on the fan-out bus (:mod:`banyan.backends.common.fanout`): one message, its bytes.

A message is ``1|sender|kind|body``: the format's version, the sending replica's id (a replica
drops its own messages), a short kind its users dispatch on, and the body as they wrote it.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass

VERSION = b"1"


@dataclass(frozen=True, slots=True)
class Message:
    """A message from another replica: who sent it, what kind it is, and its bytes."""

    sender: str
    kind: str
    body: bytes


Handler = Callable[[Message], None]


def encode(sender: str, kind: str, body: bytes) -> bytes:
    """``1|sender|kind|body`` — sender and kind are short ASCII words without ``|``."""
    return b"|".join((VERSION, sender.encode(), kind.encode(), body))


def decode(data: bytes) -> Message | None:
    """The message in ``data``, or None when it is not one of ours."""
    parts = data.split(b"|", 3)
    if len(parts) != 4 or parts[0] != VERSION:
        return None
    try:
        return Message(parts[1].decode("ascii"), parts[2].decode("ascii"), parts[3])
    except UnicodeDecodeError:
        return None


def new_replica_id() -> str:
    return f"{os.getpid()}-{secrets.token_hex(4)}"
