"""``GET /metrics`` of the legacy backend: requests (shared middleware), the job queue's depth by
status; agents and the read cache add their own collectors (``add_collector``)."""

from __future__ import annotations

from aiohttp import web

from banyan.backends.common import jobs as job_rules
from banyan.backends.common import metrics
from banyan.backends.legacy import jobs
from banyan.backends.legacy.state import STATE


def install(app: web.Application) -> None:
    st = app[STATE]
    metrics.install(app, "legacy")

    async def job_depth() -> list[str]:
        return job_rules.metric_lines("legacy", await jobs.worker_of(st).depth())

    metrics.add_collector(app, job_depth)
