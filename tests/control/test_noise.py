"""Tests for banyan/control/noise.py: noise learned through one replica reaches the others."""

from __future__ import annotations

import asyncio
from pathlib import Path

from banyan.control.noise import SharedNoise
from banyan.parity.models import NoiseRecord
from banyan.parity.store import ParityRecorder, ParityStore
from banyan.proxy.shadow import Shadow


async def test_noise_counted_by_another_replica_is_learned_here(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'parity.db'}"
    writer = ParityStore(url)  # another replica's store: the same database
    await writer.open()
    shadow = Shadow(ParityRecorder(ParityStore(url)))
    await shadow.recorder.store.open()
    noise = SharedNoise(interval=0.02)
    try:
        assert not shadow.learner.is_noise("api", "GET /api/x", "$.now")
        for _ in range(2):
            await writer.write([NoiseRecord("api", "GET /api/x", ["$.now"])])
        noise.start(shadow)
        for _ in range(200):
            if shadow.learner.is_noise("api", "GET /api/x", "$.now"):
                break
            await asyncio.sleep(0.02)
        assert shadow.learner.is_noise("api", "GET /api/x", "$.now")
        assert noise.loads >= 1
    finally:
        await noise.stop()
        await writer.close()
        await shadow.recorder.store.close()


async def test_nothing_to_share_without_parity() -> None:
    noise = SharedNoise()
    noise.start(None)
    noise.start(object())
    await noise.stop()
    assert noise.loads == 0


async def test_a_store_that_fails_is_tried_again(tmp_path: Path) -> None:
    store = ParityStore(f"sqlite+aiosqlite:///{tmp_path / 'p.db'}")  # never opened: no tables
    shadow = Shadow(ParityRecorder(store))
    noise = SharedNoise(interval=0.01)
    noise.start(shadow)
    await asyncio.sleep(0.1)
    await noise.stop()
    await store.close()
    assert noise.loads == 0
