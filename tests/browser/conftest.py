"""Fixtures of the browser tests: the browser (one driver per test) and its screenshot folder."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.browser.harness import Driver, keep_artifacts, require_browser


@pytest.fixture(scope="session")
def chromium() -> str:
    return require_browser()


@pytest.fixture
def shots(tmp_path: Path, request: pytest.FixtureRequest) -> Path:
    """Where a test's screenshots go (under its tmp dir; copied out on request, see harness)."""
    folder = tmp_path / "screenshots"
    request.addfinalizer(lambda: keep_artifacts(folder, request.node.name))
    return folder


@pytest.fixture
async def browser(chromium: str, shots: Path) -> AsyncIterator[Driver]:
    driver = await Driver.start(chromium, shots)
    try:
        yield driver
    finally:
        await driver.close()
