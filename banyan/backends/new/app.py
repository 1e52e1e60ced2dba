"""The new backend's application factory: the runtime, its functions, routes, live hub, scheduler.

``create_app(db_url)`` migrates the schema at startup, starts the persisted scheduler (with the
``gc.collect`` cron every ``gc_interval`` seconds) and stops both on cleanup.
"""

from __future__ import annotations

import os

from aiohttp import web

import banyan.backends.new.functions  # noqa: F401  (registers every function)
from banyan.backends.common import fanout, tokens
from banyan.backends.common.errors import error_middleware
from banyan.backends.common.jobs import settings_from_env as job_settings
from banyan.backends.common.metrics import add_collector
from banyan.backends.common.model_client import install_llm
from banyan.backends.common.server import request_log
from banyan.backends.common.webapp import add_routes as add_webapp_routes
from banyan.backends.new import live, realtime, routes, uploads
from banyan.backends.new import metrics as new_metrics
from banyan.backends.new.functions import agents as agent_functions
from banyan.backends.new.functions import cache as cache_functions
from banyan.backends.new.functions import jobs as job_functions
from banyan.backends.new.functions.whiteboard import ROOMS_SETTING
from banyan.backends.new.runtime import schema
from banyan.backends.new.runtime.engine import Runtime, make_engine
from banyan.backends.new.runtime.http import HttpRouter
from banyan.backends.new.runtime.registry import registry
from banyan.backends.new.runtime.scheduler import Cron, SchedulerRunner
from banyan.logs import get_logger

log = get_logger("new")
DEFAULT_TTL = 30 * 24 * 3600
RUNTIME: web.AppKey[Runtime] = web.AppKey("new_runtime")
SCHEDULER: web.AppKey[SchedulerRunner] = web.AppKey("new_scheduler")


def create_app(
    db_url: str = "sqlite+aiosqlite:///new.db",
    *,
    gc_interval: float | None = None,
    session_ttl: float | None = None,
    whiteboard_grace: float = 10.0,
    job_backoff: float | None = None,
    job_lease: float | None = None,
    redis_url: str | None = None,
    redis_prefix: str | None = None,
) -> web.Application:
    tokens.require_secret()  # no backend without a JWT secret (or a dev run)
    ttl = session_ttl or float(os.environ.get("BANYAN_SESSION_TTL", DEFAULT_TTL))
    interval = gc_interval or float(os.environ.get("BANYAN_GC_INTERVAL", 60))
    runtime = Runtime(make_engine(db_url), registry)
    runtime.settings["session_ttl_ms"] = int(ttl * 1000)
    runtime.live = live.make_hub(runtime)
    app = web.Application(
        middlewares=[error_middleware, request_log("new")], client_max_size=16 * 1024 * 1024
    )
    app[RUNTIME] = runtime
    ready: dict[str, bool] = {"ready": False}

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "service": "new"})

    async def readyz(_: web.Request) -> web.Response:
        ok = ready["ready"]
        return web.json_response(
            {"status": "ready" if ok else "starting"}, status=200 if ok else 503
        )

    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    add_webapp_routes(app)  # the AI Tutor web app at / (banyan/webapp)
    app.router.add_get("/ws/live", live.handler(runtime))
    routes.install(HttpRouter(runtime, app))
    realtime.install(app, runtime, whiteboard_grace=whiteboard_grace)
    job_crons = job_functions.install(
        runtime, job_settings(backoff=job_backoff, lease=job_lease), interval
    )
    agent_functions.install(runtime, install_llm(app))
    uploads.add_routes(app, runtime)
    new_metrics.install(app, runtime)
    add_collector(app, lambda: cache_functions.metric_lines(runtime))

    async def startup(app: web.Application) -> None:
        await schema.migrate(runtime.engine)
        runner = SchedulerRunner(runtime, [Cron("gc.collect", interval), *job_crons])
        await runner.start()
        app[SCHEDULER] = runner
        ready["ready"] = True

    async def shutdown(app: web.Application) -> None:
        # The scheduler stops first, while everything its jobs use (the model client, closed at
        # cleanup) still works: a job cut by the stop is run again later, never failed by it.
        runner = app.get(SCHEDULER)
        if runner is not None:
            await runner.stop()
        if runtime.live is not None:
            await runtime.live.close()

    async def cleanup(_: web.Application) -> None:
        await runtime.engine.dispose()

    app.on_startup.append(startup)
    app.on_shutdown.append(shutdown)
    bus = fanout.install(app, "new", redis_url, redis_prefix)  # replicas (BANYAN_REDIS_URL)
    if bus is not None:
        runtime.settings[ROOMS_SETTING].share(bus)
        runtime.live.share(bus, on_remote=runtime.cache.invalidate)
    app.on_cleanup.append(cleanup)
    return app
