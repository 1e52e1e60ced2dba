"""The legacy backend's TTL cache of expensive reads, invalidated by tags on writes.

An entry lives ``ttl`` seconds and carries tags (e.g. ``analytics:<user>``); a write calls
:meth:`TTLCache.invalidate` with the tags it changed, which drops the entries at once.
:meth:`TTLCache.get_or_load` closes the classic race of a read-through cache: a load that started
before an invalidation of one of its tags is returned to its caller but not stored, so a stale value
never outlives the write that made it stale. Hits, misses and entries are counted for ``/metrics``;
:meth:`TTLCache.prune` (the periodic job ``cache.prune``) drops expired entries, and a full cache
evicts the oldest entry.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeVar

from aiohttp import web

from banyan.backends.common import cache_metrics, metrics
from banyan.backends.common.jobs import ClaimedJob
from banyan.backends.legacy import jobs
from banyan.backends.legacy.state import STATE, LegacyState

T = TypeVar("T")
DEFAULT_TTL = 5.0
CACHE_KEY = "cache"
_COLLECTING = "cache_metrics"


class TTLCache:
    def __init__(
        self,
        ttl: float = DEFAULT_TTL,
        max_entries: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self.clock = clock
        self._entries: dict[str, tuple[float, frozenset[str], Any]] = {}
        self._generations: dict[str, int] = {}
        self.hits = 0
        self.misses = 0
        self.invalidations = 0

    def get(self, key: str) -> tuple[bool, Any]:
        entry = self._entries.get(key)
        if entry is None or entry[0] <= self.clock():
            self._entries.pop(key, None)
            self.misses += 1
            return False, None
        self.hits += 1
        return True, entry[2]

    def put(self, key: str, value: Any, tags: Iterable[str] = ()) -> None:
        self._entries.pop(key, None)
        if len(self._entries) >= self.max_entries and self.prune() == 0:
            self._entries.pop(next(iter(self._entries)))
        self._entries[key] = (self.clock() + self.ttl, frozenset(tags), value)

    def invalidate(self, *tags: str) -> int:
        """Drop every entry carrying one of ``tags``; return how many went."""
        wanted = set(tags)
        for tag in wanted:
            self._generations[tag] = self._generations.get(tag, 0) + 1
        stale = [k for k, (_, have, _) in self._entries.items() if have & wanted]
        for key in stale:
            del self._entries[key]
        self.invalidations += len(stale)
        return len(stale)

    async def get_or_load(
        self, key: str, tags: Iterable[str], load: Callable[[], Awaitable[T]]
    ) -> T:
        found, value = self.get(key)
        if found:
            return value
        tags = frozenset(tags)
        before = {tag: self._generations.get(tag, 0) for tag in tags}
        loaded = await load()
        if all(self._generations.get(tag, 0) == gen for tag, gen in before.items()):
            self.put(key, loaded, tags)
        return loaded

    def prune(self) -> int:
        """Drop expired entries; return how many went."""
        now = self.clock()
        expired = [k for k, (until, _, _) in self._entries.items() if until <= now]
        for key in expired:
            del self._entries[key]
        return len(expired)

    def stats(self) -> dict[str, int]:
        return {"hits": self.hits, "misses": self.misses, "entries": len(self._entries)}

    def __len__(self) -> int:
        return len(self._entries)


@jobs.periodic("cache.prune")
async def prune_job(st: LegacyState, _job: ClaimedJob) -> dict[str, int]:
    """The periodic pruning of expired entries (on the app's job queue)."""
    return {"pruned": cache_of(st).prune()}


def install(app: web.Application) -> TTLCache:
    """The app's cache, with its counters on ``/metrics`` (once, however often it is called)."""
    st = app[STATE]
    cache = cache_of(st)
    if not st.extras.get(_COLLECTING):
        st.extras[_COLLECTING] = True
        metrics.add_collector(app, lambda: metric_lines(cache))
    return cache


def cache_of(st: LegacyState) -> TTLCache:
    """The app's cache (one per app, kept in the state's extras)."""
    found = st.extras.get(CACHE_KEY)
    if not isinstance(found, TTLCache):
        found = TTLCache()
        st.extras[CACHE_KEY] = found
    return found


def metric_lines(cache: TTLCache) -> list[str]:
    """The cache's counters as Prometheus text lines."""
    return cache_metrics.lines("legacy", cache.hits, cache.misses, len(cache))
