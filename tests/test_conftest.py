"""Tests for tests/conftest.py: an async test ends itself before pytest-timeout's alarm."""

from __future__ import annotations

import asyncio

import pytest

from tests.conftest import OWN_END, ending_itself


@pytest.mark.timeout(OWN_END * 2 + 1)
async def test_an_async_test_runs_under_its_own_timeout(request: pytest.FixtureRequest) -> None:
    assert isinstance(request.node, pytest.Function)
    assert getattr(request.node.obj, "own_timeout", None) == OWN_END + 1


@pytest.mark.timeout(OWN_END * 2)  # too short to leave the alarm a margin: left to the alarm
async def test_a_short_limit_is_left_to_the_alarm(request: pytest.FixtureRequest) -> None:
    assert isinstance(request.node, pytest.Function)
    assert not hasattr(request.node.obj, "own_timeout")


async def test_a_test_over_its_budget_is_cancelled_and_fails_with_a_timeout() -> None:
    unwound: list[str] = []

    async def slow() -> None:
        try:
            await asyncio.sleep(30)
        finally:
            unwound.append("servers stopped")

    with pytest.raises(TimeoutError):
        await ending_itself(slow, 0.05)()
    assert unwound == ["servers stopped"]
