"""Time as the contract renders it (UTC, ISO 8601 with milliseconds and a ``Z`` suffix), and the
clock every write reads.

Stores keep integer milliseconds since the epoch; responses show ``2026-11-23T07:00:00.123Z``.

:func:`now_ms` is "now" for what a request or a job writes. Inside :func:`frozen_at` it is a fixed
time: a write stamped by the proxy runs at the stamp's time (:mod:`banyan.stamps`,
:mod:`banyan.backends.common.stamped`) and a job at the time it was due, so both stores record the
same times for the same write. The frozen time lives in a context variable, so it is seen by the
request's own task (and the threads and tasks it starts while it runs) and nowhere else; it ends
with the block, also for tasks that outlive it. :func:`wall_ms` is always this machine's clock:
for deadlines, leases and when to run something, never for a recorded time.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime


@dataclass(slots=True)
class FrozenTime:
    """The time a block of work writes at, and what per-write values derive from."""

    ms: int
    seed: str | None  # the same for every copy of one write (banyan.stamps.Stamp.seed)
    active: bool = True


_frozen: ContextVar[FrozenTime | None] = ContextVar("banyan_frozen_time", default=None)


def wall_ms() -> int:
    """This machine's clock, whatever the request says."""
    return time.time_ns() // 1_000_000


def now_ms() -> int:
    """The time the current write happens at: the frozen time inside :func:`frozen_at`, else the
    machine's clock."""
    frozen = _frozen.get()
    if frozen is not None and frozen.active:
        return frozen.ms
    return time.time_ns() // 1_000_000


def write_seed() -> str | None:
    """The seed of the stamped write running now (None outside one): per-write values derived
    from it (a token's ``jti``) come out the same on both stores."""
    frozen = _frozen.get()
    return frozen.seed if frozen is not None and frozen.active else None


@contextmanager
def frozen_at(ms: int, seed: str | None = None) -> Iterator[FrozenTime]:
    """Run the block with :func:`now_ms` fixed at ``ms``. Tasks started inside see the same time
    while the block runs and the machine's clock after it."""
    frozen = FrozenTime(ms, seed)
    token = _frozen.set(frozen)
    try:
        yield frozen
    finally:
        frozen.active = False
        _frozen.reset(token)


def iso(ms: int | None) -> str | None:
    if ms is None:
        return None
    t = time.gmtime(ms // 1000)  # a third of the cost of a datetime; every response renders many
    return (
        f"{t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d}"
        f"T{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}.{ms % 1000:03d}Z"
    )


def parse_iso(text: str) -> int:
    """Parse an ISO 8601 timestamp (``Z`` or offset) into epoch milliseconds; ValueError if bad."""
    value = text.strip()
    if value.endswith("Z"):
        value = value[:-1] + "+00:00"
    dt = datetime.fromisoformat(value)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return int(dt.timestamp() * 1000)
