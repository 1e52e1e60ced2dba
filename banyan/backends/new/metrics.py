"""``GET /metrics`` of the new backend: requests (shared middleware), the job queue's depth by
status and the agents' counters; the read cache adds its own collector (``add_collector``)."""

from __future__ import annotations

from aiohttp import web

from banyan.backends.common import jobs as job_rules
from banyan.backends.common import metrics
from banyan.backends.common.agents import endpoints
from banyan.backends.new.functions.agents import runner_of
from banyan.backends.new.runtime.engine import Runtime


def install(app: web.Application, runtime: Runtime) -> None:
    metrics.install(app, "new")

    async def job_depth() -> list[str]:
        counts = await runtime.run_query("jobs.depth", {}, None)
        return job_rules.metric_lines("new", counts)

    def agent_counters() -> list[str]:
        return endpoints.metric_lines("new", runner_of(runtime).metrics())

    metrics.add_collector(app, job_depth)
    metrics.add_collector(app, agent_counters)
