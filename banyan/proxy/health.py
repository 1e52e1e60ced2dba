"""Backend health: a periodic ``GET /healthz`` probe of each backend.

Results feed ``/_proxy/status`` and the ``banyan_backend_up`` gauge. A probe that fails or times out
marks the backend down until the next successful one; routing does not depend on it (a request to a
down backend gets its own 502 or a fallback), so a flaky probe never takes traffic away.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

import aiohttp

from banyan.tasks import cancel_and_wait


@dataclass(slots=True)
class Health:
    url: str
    healthy: bool | None = None
    last_check: float | None = None
    latency_ms: float | None = None
    error: str | None = None

    def as_dict(self) -> dict[str, object]:
        return {
            "url": self.url,
            "healthy": self.healthy,
            "last_check": self.last_check,
            "latency_ms": self.latency_ms,
            "error": self.error,
        }


class HealthProbe:
    def __init__(
        self,
        session: aiohttp.ClientSession,
        backends: Callable[[], dict[str, str]],
        *,
        interval: float = 2.0,
        timeout: float = 1.0,
        on_result: Callable[[str, bool], None] | None = None,
    ) -> None:
        self.session = session
        self.backends = backends
        self.interval = interval
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self.on_result = on_result
        self.state: dict[str, Health] = {}
        self._task: asyncio.Task[None] | None = None

    async def check(self, name: str, url: str) -> Health:
        health = self.state.get(name)
        if health is None or health.url != url:
            health = self.state[name] = Health(url)
        started = time.perf_counter()
        try:
            async with self.session.get(url + "/healthz", timeout=self.timeout) as response:
                await response.read()
                health.healthy = response.status == 200
                health.error = None if health.healthy else f"status {response.status}"
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            health.healthy = False
            health.error = type(exc).__name__
        health.last_check = time.time()
        health.latency_ms = round((time.perf_counter() - started) * 1000, 3)
        if self.on_result is not None:
            self.on_result(name, bool(health.healthy))
        return health

    async def check_all(self) -> None:
        backends = self.backends()
        for stale in set(self.state) - set(backends):
            del self.state[stale]
        await asyncio.gather(*(self.check(name, url) for name, url in backends.items()))

    async def _loop(self) -> None:
        while True:
            await self.check_all()
            await asyncio.sleep(self.interval)

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="health-probe")

    async def stop(self) -> None:
        await cancel_and_wait([self._task])
