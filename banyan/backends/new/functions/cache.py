"""The query cache's upkeep and counters: the periodic ``cache.prune`` job and ``/metrics`` lines."""

from __future__ import annotations

from typing import Any

from banyan.backends.common import cache_metrics
from banyan.backends.new.functions import jobs
from banyan.backends.new.runtime.context import ActionCtx
from banyan.backends.new.runtime.engine import Runtime
from banyan.backends.new.runtime.registry import action


@action("cache.prune")
async def prune(ctx: ActionCtx, args: dict[str, Any]) -> int:
    """Drop the runtime's expired cache entries (scheduled every ``BANYAN_GC_INTERVAL``)."""
    return ctx.runtime.cache.prune()


jobs.periodic("cache.prune")


def metric_lines(runtime: Runtime) -> list[str]:
    cache = runtime.cache
    return cache_metrics.lines("new", cache.hits, cache.misses, len(cache))
