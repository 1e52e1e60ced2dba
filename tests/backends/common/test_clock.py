"""The write clock (``common/clock.py``): a frozen time for the block that asked for it only."""

from __future__ import annotations

import asyncio

from banyan.backends.common import clock


async def test_frozen_at_fixes_now_for_the_block() -> None:
    assert clock.write_seed() is None
    with clock.frozen_at(1_000, "seed-1"):
        assert clock.now_ms() == 1_000 and clock.write_seed() == "seed-1"
        assert clock.wall_ms() > 1_700_000_000_000  # the machine's clock is still there
        with clock.frozen_at(2_000):
            assert clock.now_ms() == 2_000 and clock.write_seed() is None
        assert clock.now_ms() == 1_000
    assert clock.now_ms() > 1_700_000_000_000 and clock.write_seed() is None


async def test_a_task_started_inside_sees_the_frozen_time_only_while_the_block_runs() -> None:
    seen: list[int] = []
    go_on = asyncio.Event()

    async def outliving() -> None:
        seen.append(clock.now_ms())
        await go_on.wait()
        seen.append(clock.now_ms())

    with clock.frozen_at(5_000, "s"):
        task = asyncio.create_task(outliving())
        await asyncio.sleep(0)
        await asyncio.to_thread(lambda: seen.append(clock.now_ms()))
    go_on.set()
    await task
    assert seen[:2] == [5_000, 5_000]
    assert seen[2] > 1_700_000_000_000


async def test_other_tasks_never_see_it() -> None:
    seen: list[int] = []
    started = asyncio.Event()
    release = asyncio.Event()

    async def elsewhere() -> None:
        await started.wait()
        seen.append(clock.now_ms())
        release.set()

    task = asyncio.create_task(elsewhere())
    with clock.frozen_at(7_000):
        started.set()
        await release.wait()
    await task
    assert seen[0] > 1_700_000_000_000
