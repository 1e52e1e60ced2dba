"""Ending background tasks for sure: what every ``stop()`` and ``close()`` of a worker loop uses.

A single ``task.cancel()`` followed by ``await task`` can wait forever: on Python 3.11
``asyncio.wait_for`` returns the result instead of raising when the cancellation arrives in the
same loop iteration as the awaited thing completes, and a loop built on it (wait for a wake-up
event or a timeout, then go round again) lives on as if nothing was asked. :func:`cancel_and_wait`
cancels again every ``nudge`` seconds until each task has ended; :func:`finish_or_cancel` first
gives tasks told to end some other way (an event, a flag) a grace period to end by themselves.
:func:`uncancellable` is their counterpart for the few steps that must finish even when their
caller is cancelled (recording a job's outcome), however many times it is cancelled meanwhile.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Iterable
from typing import Any, TypeVar

T = TypeVar("T")


async def cancel_and_wait(tasks: Iterable[asyncio.Future[Any] | None], nudge: float = 0.5) -> None:
    """Cancel ``tasks`` (``None`` entries are skipped) and return once every one has ended; a
    task still running ``nudge`` seconds after a cancellation is cancelled again. Their results
    and errors are collected so none is reported as never retrieved."""
    pending = {task for task in tasks if task is not None}
    everyone = set(pending)
    while pending:
        for task in pending:
            task.cancel()
        _done, pending = await asyncio.wait(pending, timeout=nudge)
    for task in everyone:
        if not task.cancelled():
            task.exception()


async def finish_or_cancel(
    tasks: Iterable[asyncio.Future[Any] | None], grace: float, nudge: float = 0.5
) -> None:
    """Give ``tasks`` (told to end some other way) ``grace`` seconds to end by themselves, then
    :func:`cancel_and_wait` those still running. Waiting does not cancel them, and every task's
    error is collected, like :func:`cancel_and_wait`'s."""
    everyone = [task for task in tasks if task is not None]
    if everyone:
        await asyncio.wait(everyone, timeout=grace)
    await cancel_and_wait(everyone, nudge)


async def uncancellable(work: Awaitable[T]) -> T:
    """Await ``work`` to its end even if the caller is cancelled meanwhile (once or many times),
    then let the cancellation through; without one, ``work``'s result or error is the answer."""
    task = asyncio.ensure_future(work)
    cancelled = False
    while not task.done():
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            if task.cancelled():
                raise
            cancelled = True
        except Exception:
            break  # task is done: its error is raised below, or dropped for a cancellation
    if cancelled:
        if not task.cancelled():
            task.exception()  # the caller is going away: its outcome was recorded or logged
        raise asyncio.CancelledError
    return task.result()
