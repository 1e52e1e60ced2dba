"""The upstream pools of one process: one :class:`~banyan.proxy.upstream.pool.Pool` per backend
origin, made at first use and kept for the process's life (never a pool per request)."""

from __future__ import annotations

from banyan.proxy.limits import Limits
from banyan.proxy.upstream.origin import origin_of
from banyan.proxy.upstream.pool import Pool, PoolSettings


class Upstreams:
    def __init__(self, limits: Limits | None = None, settings: PoolSettings | None = None) -> None:
        self.limits = limits or Limits()
        self.settings = settings or PoolSettings()
        self._pools: dict[tuple[str, str, int], Pool] = {}
        self._by_url: dict[str, Pool] = {}

    def pool(self, url: str) -> Pool:
        """The pool for the backend at ``url`` (a base URL from the flag file)."""
        found = self._by_url.get(url)
        if found is not None:
            return found
        origin = origin_of(url)
        key = (origin.scheme, origin.host, origin.port)
        pool = self._pools.get(key)
        if pool is None or pool.origin != origin:
            pool = self._pools[key] = Pool(origin, self.limits, self.settings)
        self._by_url[url] = pool
        return pool

    def close(self) -> None:
        for pool in self._pools.values():
            pool.close()
        self._pools.clear()
        self._by_url.clear()
