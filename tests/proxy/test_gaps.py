"""Idle gaps: background steps wait for the users' requests, one per loop iteration, bounded."""

from __future__ import annotations

import asyncio

from banyan.proxy.gaps import IdleGaps


async def test_no_wait_when_no_request_is_in_progress() -> None:
    gaps = IdleGaps()
    await asyncio.wait_for(gaps.wait(), 1)
    assert gaps.waited == 0


async def test_waiters_go_one_by_one_once_requests_are_done() -> None:
    gaps = IdleGaps(max_wait=10)
    order: list[str] = []

    async def step(name: str) -> None:
        await gaps.wait()
        order.append(name)

    gaps.enter()
    tasks = [asyncio.create_task(step(n)) for n in "abc"]
    await asyncio.sleep(0.01)
    assert order == [] and gaps.waited == 3
    gaps.leave()
    gaps.enter()  # a request arrives before the wake-up ran: everyone waits on
    await asyncio.sleep(0.01)
    assert order == []
    gaps.leave()
    await asyncio.sleep(0)  # one wake-up per loop iteration
    await asyncio.sleep(0)
    assert order == ["a"]
    await asyncio.gather(*tasks)
    assert order == ["a", "b", "c"]


async def test_a_waiter_goes_after_max_wait_under_constant_load() -> None:
    gaps = IdleGaps(max_wait=0.05)
    gaps.enter()
    started = asyncio.get_running_loop().time()
    await asyncio.wait_for(gaps.wait(), 2)
    assert asyncio.get_running_loop().time() - started >= 0.04
    gaps.leave()
    await asyncio.sleep(0.01)  # the late wake-up finds nobody waiting
    assert gaps.busy == 0
