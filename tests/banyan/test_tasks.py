"""Ending tasks for sure: repeated cancellation, and work that must finish whatever happens."""

from __future__ import annotations

import asyncio

import pytest

from banyan.tasks import cancel_and_wait, finish_or_cancel, uncancellable


async def test_a_task_that_swallows_a_cancellation_is_cancelled_again() -> None:
    swallowed = 0

    async def stubborn() -> None:
        nonlocal swallowed
        while True:
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                swallowed += 1
                if swallowed == 3:
                    raise

    task = asyncio.create_task(stubborn())
    await asyncio.sleep(0)
    await asyncio.wait_for(cancel_and_wait([task, None], nudge=0.01), 5)
    assert task.cancelled() and swallowed == 3


async def test_errors_of_ended_tasks_are_collected() -> None:
    async def broken() -> None:
        raise RuntimeError("boom")

    task = asyncio.create_task(broken())
    await asyncio.sleep(0)
    await cancel_and_wait([task])
    assert isinstance(task.exception(), RuntimeError)


async def test_uncancellable_work_finishes_through_repeated_cancellations() -> None:
    finished = asyncio.Event()

    async def record() -> str:
        await asyncio.sleep(0.05)
        finished.set()
        return "recorded"

    caller = asyncio.create_task(uncancellable(record()))
    for _ in range(3):
        await asyncio.sleep(0.005)
        caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller
    assert finished.is_set()


async def test_uncancellable_gives_the_result_or_the_error() -> None:
    async def value() -> int:
        return 7

    async def failing() -> int:
        raise ValueError("no")

    assert await uncancellable(value()) == 7
    with pytest.raises(ValueError):
        await uncancellable(failing())


async def test_a_cancelled_caller_does_not_report_the_work_error() -> None:
    async def failing_late() -> None:
        await asyncio.sleep(0.02)
        raise ValueError("logged by the work itself")

    caller = asyncio.create_task(uncancellable(failing_late()))
    await asyncio.sleep(0.005)
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller


async def test_a_task_that_ends_within_its_grace_is_not_cancelled() -> None:
    stop = asyncio.Event()

    async def worker() -> str:
        await stop.wait()
        await asyncio.sleep(0.05)  # the last round, finished after being told to stop
        return "finished"

    task = asyncio.create_task(worker())
    await asyncio.sleep(0)
    stop.set()
    await asyncio.wait_for(finish_or_cancel([task, None], grace=5), 5)
    assert not task.cancelled() and task.result() == "finished"


async def test_a_task_that_overstays_its_grace_is_cancelled_and_errors_are_collected() -> None:
    async def deaf() -> None:
        await asyncio.sleep(60)

    async def failing() -> None:
        raise RuntimeError("boom")

    slow, broken = asyncio.create_task(deaf()), asyncio.create_task(failing())
    await asyncio.sleep(0)
    loop = asyncio.get_running_loop()
    started = loop.time()
    await asyncio.wait_for(finish_or_cancel([slow, broken], grace=0.1), 5)
    assert slow.cancelled() and 0.1 <= loop.time() - started < 2
    assert isinstance(broken.exception(), RuntimeError)
