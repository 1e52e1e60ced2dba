"""Tests for banyan/proxy/fence.py: one user's writes on their way to a backend, and waiting for
them."""

from __future__ import annotations

import asyncio

from banyan.proxy.fence import WriteFence


async def test_a_request_waits_for_the_writes_on_their_way_before_it() -> None:
    fence = WriteFence()
    first = fence.hold("legacy", "alice")
    snapshot = fence.pending("legacy", "alice")
    second = fence.hold("legacy", "alice")  # registered after the snapshot: not waited for
    assert len(snapshot) == 1 and len(fence.pending("legacy", "alice")) == 2
    assert fence.pending("new", "alice") == [] and fence.pending("legacy", "bob") == []

    waiter = asyncio.ensure_future(fence.wait(snapshot))
    await asyncio.sleep(0.01)
    assert not waiter.done()
    first()
    first()  # releasing twice is harmless
    assert await waiter is True
    assert fence.waits == 1 and fence.timeouts == 0
    second()
    assert fence.pending("legacy", "alice") == [] and fence._pending == {}
    assert await fence.before("legacy", "alice") is True
    assert fence.waits == 1  # nothing pending: no wait counted


async def test_a_wait_is_cut_at_max_wait() -> None:
    fence = WriteFence(max_wait=0.05)
    fence.hold("new", "alice")
    assert await fence.before("new", "alice") is False
    assert fence.timeouts == 1


async def test_callers_without_a_user_are_not_fenced() -> None:
    fence = WriteFence()
    release = fence.hold("legacy", None)
    release()
    assert fence.pending("legacy", None) == [] and fence._pending == {}
    assert await fence.wait([]) is True


async def test_a_write_without_a_user_fences_its_address() -> None:
    fence = WriteFence()
    registration = fence.hold("new", None, "10.0.0.5")
    # The new user's first request, from the same address, waits for the registration's copy.
    assert len(fence.pending("new", "alice", "10.0.0.5")) == 1
    assert fence.pending("new", "alice", "10.0.0.6") == []
    assert fence.pending("legacy", "alice", "10.0.0.5") == []
    waiter = asyncio.create_task(fence.wait(fence.pending("new", "alice", "10.0.0.5")))
    await asyncio.sleep(0)
    assert not waiter.done()
    registration()
    assert await waiter is True and fence._pending == {}


async def test_copies_leave_out_the_writes_queued() -> None:
    fence = WriteFence()
    copy = fence.hold("new", "u1")
    queued = fence.hold("new", "u1", queued=True)
    assert len(fence.pending("new", "u1")) == 2  # a request waits for both
    assert len(fence.copies("new", "u1")) == 1  # a write joining the queue, for the copy only
    copy()
    assert fence.copies("new", "u1") == [] and len(fence.pending("new", "u1")) == 1
    queued()
    assert fence.pending("new", "u1") == []


async def test_status_counts_the_writes_on_their_way_and_the_cut_waits() -> None:
    fence = WriteFence(max_wait=0.05)
    copy = fence.hold("new", "alice")
    fence.hold("new", "bob", queued=True)
    assert fence.status() == {"on_their_way": 2, "waits": 0, "timeouts": 0}
    copy()
    assert await fence.before("new", "bob") is False  # bob's queued write never landed
    assert fence.status() == {"on_their_way": 1, "waits": 1, "timeouts": 1}
