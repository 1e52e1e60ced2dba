"""Contract: an expired session is 404 everywhere at once (a target with a 1-second TTL)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from banyan.backends.contract.client import assert_error, register
from banyan.backends.contract.targets import EXTERNAL, Target, open_target

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest_asyncio.fixture(loop_scope="session")
async def short_lived(target_name: str, tmp_path: Path) -> AsyncIterator[Target]:
    if target_name == EXTERNAL:
        pytest.skip("an external server's session TTL is not ours to set")
    async with open_target(target_name, tmp_path, session_ttl=1) as running:
        yield running


async def test_expired_session_is_gone(short_lived: Target) -> None:
    user = await register(short_lived)
    async with user.client as client:
        session = (await client.post("/api/sessions", json={"title": "brief"})).json()
        path = f"/api/sessions/{session['id']}"
        assert (await client.get(path)).status_code == 200
        await asyncio.sleep(1.3)  # past the 1-second TTL; no timing is asserted
        assert_error(await client.get(path), 404, "not_found")
        assert_error(await client.get(f"{path}/context"), 404, "not_found")
        assert_error(await client.get(f"{path}/messages"), 404, "not_found")
        assert_error(await client.patch(path, json={"title": "x"}), 404, "not_found")
        posted = await client.post(f"{path}/messages", json={"role": "user", "content": "late"})
        assert_error(posted, 404, "not_found")
        assert (await client.get("/api/sessions")).json()["items"] == []
