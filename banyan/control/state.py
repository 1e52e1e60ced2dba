"""What the control store holds, as a replica reads it: overrides, key/value entries, a snapshot.

Plain values and pure helpers (no database): :mod:`banyan.control.store` builds a
:class:`Snapshot` from its rows on every re-read, and hands the one before and the one after to
its subscribers.
"""

from __future__ import annotations

import getpass
import json
import os
import socket
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any


def default_actor(role: str) -> str:
    """Who is writing: ``role:user@host:pid``."""
    try:
        user = getpass.getuser()
    except Exception:  # no passwd entry in a container
        user = str(os.getuid())
    return f"{role}:{user}@{socket.gethostname()}:{os.getpid()}"


@dataclass(frozen=True, slots=True)
class Override:
    """Changes to one feature on top of the flag file (``None`` removes a key)."""

    feature: str
    changes: dict[str, Any]
    source: str
    actor: str
    reason: str | None
    set_at: float
    version: int


@dataclass(frozen=True, slots=True)
class Entry:
    """One key/value pair of runtime state."""

    key: str
    value: Any
    source: str
    actor: str
    set_at: float
    version: int


@dataclass(frozen=True, slots=True)
class Snapshot:
    version: int = -1
    overrides: dict[str, Override] = field(default_factory=dict)
    kv: dict[str, Entry] = field(default_factory=dict)


Subscriber = Callable[[Snapshot, Snapshot], Awaitable[None]]
Describe = Callable[[dict[str, Any] | None], Any]


def merge_changes(base: Mapping[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
    """``changes`` over ``base``: nested mappings merge, anything else (``None`` too) replaces."""
    merged = dict(base)
    for key, value in changes.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = merge_changes(merged[key], value)
        else:
            merged[key] = value
    return merged


def loads(value: Any) -> Any:
    """A JSON column's value (asyncpg hands ``json`` columns over as text)."""
    return json.loads(value) if isinstance(value, str) else value


def snapshot_of(version: int, overrides: Sequence[Any], pairs: Sequence[Any]) -> Snapshot:
    """The snapshot of one consistent read: the version, the overrides' rows and the key/value
    rows."""
    return Snapshot(
        version=version,
        overrides={
            r["feature"]: Override(
                r["feature"],
                loads(r["changes"]),
                r["source"],
                r["actor"],
                r["reason"],
                r["set_at"],
                r["version"],
            )
            for r in overrides
        },
        kv={
            r["key"]: Entry(
                r["key"],
                loads(r["value"]),
                r["source"],
                r["actor"],
                r["set_at"],
                r["version"],
            )
            for r in pairs
        },
    )
