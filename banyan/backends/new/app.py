"""The new backend's application factory: the runtime, its functions, routes, live hub, scheduler.

``create_app(db_url)`` verifies write stamps (:mod:`banyan.backends.common.stamped`) like the
legacy app, migrates the schema at startup, starts the persisted scheduler (with the
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
from banyan.backends.common.stamped import stamp_middleware
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


_READY: web.AppKey[bool] = web.AppKey("new_ready")
_CRONS: web.AppKey[list[Cron]] = web.AppKey("new_crons")


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
        middlewares=[error_middleware, request_log("new"), stamp_middleware],
        client_max_size=16 * 1024 * 1024,
    )
    app[RUNTIME] = runtime
    _add_routes(app, runtime, whiteboard_grace)
    job_crons = job_functions.install(
        runtime, job_settings(backoff=job_backoff, lease=job_lease), interval
    )
    agent_functions.install(runtime, install_llm(app))
    uploads.add_routes(app, runtime)
    new_metrics.install(app, runtime)
    add_collector(app, lambda: cache_functions.metric_lines(runtime))
    app[_CRONS] = [Cron("gc.collect", interval), *job_crons]
    app.on_startup.append(_startup)
    app.on_shutdown.append(_shutdown)
    bus = fanout.install(app, "new", redis_url, redis_prefix)  # replicas (BANYAN_REDIS_URL)
    if bus is not None:
        runtime.settings[ROOMS_SETTING].share(bus)
        runtime.live.share(bus, on_remote=runtime.cache.invalidate)
    app.on_cleanup.append(_cleanup)
    return app


def _add_routes(app: web.Application, runtime: Runtime, whiteboard_grace: float) -> None:
    """The probes, the web app, the live socket, every HTTP function's route, the realtime
    sockets."""
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/readyz", _readyz)
    add_webapp_routes(app)  # the AI Tutor web app at / (banyan/webapp)
    app.router.add_get("/ws/live", live.handler(runtime))
    routes.install(HttpRouter(runtime, app))
    realtime.install(app, runtime, whiteboard_grace=whiteboard_grace)


async def _healthz(_: web.Request) -> web.Response:
    return web.json_response({"status": "ok", "service": "new"})


async def _readyz(request: web.Request) -> web.Response:
    ok = request.app.get(_READY, False)
    return web.json_response({"status": "ready" if ok else "starting"}, status=200 if ok else 503)


async def _startup(app: web.Application) -> None:
    runtime = app[RUNTIME]
    await schema.migrate(runtime.engine)
    runner = SchedulerRunner(runtime, app[_CRONS])
    await runner.start()
    app[SCHEDULER] = runner
    app[_READY] = True


async def _shutdown(app: web.Application) -> None:
    # The scheduler stops first, while everything its jobs use (the model client, closed at
    # cleanup) still works: a job cut by the stop is run again later, never failed by it.
    runner = app.get(SCHEDULER)
    if runner is not None:
        await runner.stop()
    live_hub = app[RUNTIME].live
    if live_hub is not None:
        await live_hub.close()


async def _cleanup(app: web.Application) -> None:
    await app[RUNTIME].engine.dispose()
