"""Noise learning on the AI Tutor itself (banyan/parity/noise.py through the real stack): users
loop "list my sessions, then create one" while the primary is asked twice for every list, so each
second ask may see the session created in between. A session that exists only on the new backend
must still be reported on every list after 1,000 loops: the growing, shifting list is never
learned as noise."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from banyan.parity.store import ParityRecorder, ParityStore
from banyan.proxy.shadow import Shadow
from tests.proxy.conftest import real_backends_behind_proxy

USERS, LOOPS = 100, 10  # 1,000 list+create loops, at most 11 sessions per list (one page)
FLAGS = """\
version: 1
backends:
  legacy: {legacy}
  new: {new}
features:
  auth:
    routes: ["/api/auth/**"]
    mode: shadow
    writes: mirror
    parity:
      sample: 100
      noise_sample: 0
      ignore: ["$..created_at", "$..updated_at", "$..expires_at", "$..token"]
  sessions:
    routes: ["/api/sessions/**"]
    mode: shadow
    writes: mirror
    parity:
      sample: 100
      noise_sample: 100
      ignore: ["$..created_at", "$..updated_at", "$..expires_at", "$.next_cursor"]
default: legacy
"""


async def user_loops(urls: dict[str, str], n: int) -> None:
    async with (
        httpx.AsyncClient(base_url=urls["proxy"], timeout=30) as proxy,
        httpx.AsyncClient(base_url=urls["new"], timeout=30) as new,
    ):
        body = {"email": f"looper{n}@example.com", "password": "password-1", "name": "L"}
        registered = await proxy.post("/api/auth/register", json=body)
        assert registered.status_code == 201, registered.text
        auth = {"Authorization": f"Bearer {registered.json()['token']}"}
        for _ in range(50):  # the registration's copy reaches new first
            if (await new.get("/api/auth/me", headers=auth)).status_code == 200:
                break
            await asyncio.sleep(0.05)
        # planted: a session only the new backend has
        planted = await new.post("/api/sessions", json={"title": f"only on new {n}"}, headers=auth)
        assert planted.status_code == 201, planted.text
        for loop in range(LOOPS):
            listed = await proxy.get("/api/sessions", headers=auth)
            assert listed.status_code == 200 and len(listed.json()["items"]) == loop
            created = await proxy.post(
                "/api/sessions", json={"title": f"user {n} loop {loop}"}, headers=auth
            )
            assert created.status_code == 201, created.text


# 1,000 loops through the proxy and both backends, all in this process: about a minute alone;
# under coverage on a loaded 2-core machine many times that. The test ends itself after
# RUN_BUDGET: pytest-timeout's alarm, landing inside a weakref callback (a dictionary entry
# dropped while json.loads ran), once left the whole suite spinning instead of failing the test.
RUN_BUDGET = 1200.0


@pytest.mark.timeout(RUN_BUDGET + 300)  # the last resort: the test ends itself at RUN_BUDGET
async def test_a_list_that_really_differs_is_reported_after_1000_list_create_loops(
    tmp_path: Path,
) -> None:
    store = ParityStore(f"sqlite+aiosqlite:///{tmp_path / 'parity.db'}")
    shadow = Shadow(ParityRecorder(store, flush_interval=0.2))
    async with (
        asyncio.timeout(RUN_BUDGET),
        real_backends_behind_proxy(tmp_path, FLAGS, shadow=shadow) as urls,
    ):
        for first in range(0, USERS, 5):  # five users at a time
            await asyncio.gather(*(user_loops(urls, n) for n in range(first, first + 5)))
        for _ in range(600):
            if shadow.inflight == 0:
                break
            await asyncio.sleep(0.05)
        await shadow.recorder.flush()
        data = await store.summary(feature="sessions")
        learned = shadow.learned_noise("sessions")
    [feature] = data["features"]
    lists = next(e for e in feature["endpoints"] if e["endpoint"] == "GET /api/sessions")
    judged = lists["compared"] - lists["errors"]
    assert judged >= USERS * LOOPS // 3, lists  # most lists were compared (the rest skipped)
    assert lists["mismatched"] == judged, (lists, learned)  # every one of them differs
    assert "$.items[*]" in {f["path"] for f in lists["top_fields"]}  # the planted session
    assert [n for n in learned if n["path"].startswith("$.items")] == []
