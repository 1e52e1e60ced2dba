"""A fixed-rate load generator in Python (aiohttp, uvloop-friendly): requests started on a clock,
each one's latency recorded, the collector kept still while measuring. ``bench.shadow_overhead``
measures with it; ``bench.proxy_overhead`` uses ``wrk``."""

from __future__ import annotations

import asyncio
import time

import aiohttp

from bench.common import quiet_collector

PATH = "/api/sessions/3f1c"


async def latency(url: str, rate: float, duration: float, path: str = PATH) -> list[float]:
    """Milliseconds of each of ``rate * duration`` GETs of ``url + path``, started ``rate`` a
    second whatever the answers' pace."""
    with quiet_collector():
        return await _latency(url + path, rate, duration)


async def _latency(target: str, rate: float, duration: float) -> list[float]:
    samples: list[float] = []
    connector = aiohttp.TCPConnector(limit=64)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one() -> None:
            started = time.perf_counter()
            async with session.get(target) as response:
                await response.read()
            samples.append((time.perf_counter() - started) * 1000)

        tasks = []
        begin = time.monotonic()
        for i in range(int(rate * duration)):
            delay = begin + i / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one()))
        await asyncio.gather(*tasks)
    return samples
