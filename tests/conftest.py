"""Session-wide test settings: the JWT secret every backend a test starts shares.

Backends refuse to start without ``BANYAN_JWT_SECRET`` (docs/operations.md, "Security model"), so
the test process sets a random one before anything is imported or started; backends created
in-process read it, and processes started by tests inherit it. A secret already exported (to run
the tests against servers started by hand) is kept.

Also: every ``async def`` test ends itself (``asyncio.timeout``) ``OWN_END`` seconds before
pytest-timeout's alarm for it. The alarm is a signal; twice it landed inside a weakref callback
(the exception it raised there is ignored) and left the whole suite spinning instead of failing
one test. A test cancelled by its own timeout unwinds, stops its servers and fails with a
traceback; the alarm stays as the last resort for a test that swallows the cancellation.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import os
import secrets
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

os.environ.setdefault("BANYAN_JWT_SECRET", secrets.token_urlsafe(48))

OWN_END = 30.0  # seconds between a test's own timeout and pytest-timeout's alarm


def alarm_after(item: pytest.Item) -> float:
    """pytest-timeout's limit for ``item``: its ``timeout`` mark, else the option or ini value
    (0: none)."""
    marker = item.get_closest_marker("timeout")
    if marker is not None:
        value = marker.args[0] if marker.args else marker.kwargs.get("timeout", 0)
        return float(value or 0)
    option = item.config.getoption("timeout", None)
    if option is not None:
        return float(option)
    return float(item.config.getini("timeout") or 0)


def ending_itself(
    test: Callable[..., Coroutine[Any, Any, Any]], budget: float
) -> Callable[..., Coroutine[Any, Any, Any]]:
    @functools.wraps(test)
    async def run(*args: Any, **kwargs: Any) -> Any:
        async with asyncio.timeout(budget):
            return await test(*args, **kwargs)

    run.own_timeout = budget  # type: ignore[attr-defined]
    return run


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        test = getattr(item, "obj", None)
        if not isinstance(item, pytest.Function) or not inspect.iscoroutinefunction(test):
            continue
        alarm = alarm_after(item)
        if alarm > 2 * OWN_END:
            item.obj = ending_itself(test, alarm - OWN_END)
