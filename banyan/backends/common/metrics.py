"""``GET /metrics`` of both backends: Prometheus text (format 0.0.4) from collectors.

:func:`install` adds the route and a middleware that counts requests by method, route template and
status (``banyan_http_requests_total``). Everything else comes from *collectors*: callables (sync
or async) returning exposition lines, registered on the app with :func:`add_collector` before it
starts — agents, the job queue and the read cache each add theirs, so no module edits another's
lines. :func:`family` renders one metric family with its ``# HELP`` and ``# TYPE`` lines.
"""

from __future__ import annotations

import inspect
import math
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

from aiohttp import web

from banyan.logs import get_logger

log = get_logger("backend.metrics")

Lines = Iterable[str]
Collector = Callable[[], Lines | Awaitable[Lines]]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

COLLECTORS: web.AppKey[list[Collector]] = web.AppKey("banyan_metric_collectors", list)
REQUESTS: web.AppKey[Counter[tuple[str, str, str]]] = web.AppKey("banyan_request_counts", Counter)
SERVICE: web.AppKey[str] = web.AppKey("banyan_metrics_service", str)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def labels(values: Mapping[str, Any]) -> str:
    if not values:
        return ""
    return "{" + ",".join(f'{k}="{_escape(str(v))}"' for k, v in values.items()) + "}"


def number(value: float) -> str:
    if isinstance(value, float) and math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    as_float = float(value)
    return str(int(as_float)) if as_float.is_integer() else repr(as_float)


def family(
    name: str, kind: str, help_text: str, samples: Iterable[tuple[Mapping[str, Any], float]]
) -> list[str]:
    """``# HELP``/``# TYPE`` then one line per (labels, value)."""
    out = [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
    out.extend(f"{name}{labels(lbls)} {number(value)}" for lbls, value in samples)
    return out


def add_collector(app: web.Application, collector: Collector) -> None:
    """Add lines to this app's ``/metrics`` (call before the app starts)."""
    app.setdefault(COLLECTORS, []).append(collector)


def _route_of(request: web.Request) -> str:
    info = request.match_info
    resource = info.route.resource if info is not None else None
    if resource is None or getattr(info, "http_exception", None) is not None:
        return "(unmatched)"
    return resource.canonical


def install(app: web.Application, service: str) -> None:
    """``GET /metrics`` and the request counter (outermost middleware) on ``app``."""
    app[SERVICE] = service
    app.setdefault(COLLECTORS, [])
    counts: Counter[tuple[str, str, str]] = Counter()
    app[REQUESTS] = counts

    @web.middleware
    async def count_requests(request: web.Request, handler: Handler) -> web.StreamResponse:
        status = "500"
        try:
            response = await handler(request)
            status = str(response.status)
            return response
        except web.HTTPException as exc:
            status = str(exc.status)
            raise
        finally:
            counts[(request.method, _route_of(request), status)] += 1

    app.middlewares.insert(0, count_requests)
    app.router.add_get("/metrics", metrics_handler)


async def render(app: web.Application) -> str:
    service = app[SERVICE]
    lines = family(
        "banyan_http_requests_total",
        "counter",
        "HTTP requests answered, by method, route template and status.",
        (
            ({"backend": service, "method": m, "route": r, "status": s}, n)
            for (m, r, s), n in sorted(app[REQUESTS].items())
        ),
    )
    for collector in app[COLLECTORS]:
        try:
            produced = collector()
            if inspect.isawaitable(produced):
                produced = await produced
            lines.extend(produced)
        except Exception:
            log.exception("metrics_collector_failed", collector=repr(collector))
    return "\n".join(lines) + "\n"


async def metrics_handler(request: web.Request) -> web.Response:
    text = await render(request.app)
    return web.Response(body=text.encode(), headers={"Content-Type": CONTENT_TYPE})
