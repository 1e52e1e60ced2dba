"""The admin surface under ``/_proxy/``: status, flags, explain, metrics, audit, parity, and
the console (:mod:`banyan.proxy.console`, :mod:`banyan.proxy.parity_admin`,
:mod:`banyan.proxy.mirror_admin`).

Each endpoint is a module-level handler in a route table, registered behind the access rules of
:mod:`banyan.proxy.admin_access` (a token, or loopback reads). A handler takes only the parts of
the proxy it uses as parameters (the flag store, the shadow, ...), and its route in the table
hands it them from the state (``lambda request, state: explain(request, state.store)``), checked
by mypy; only the status page takes the whole state. The parity endpoints speak to the shadow
through :class:`~banyan.proxy.hooks.ShadowHook` only.
``PUT /_proxy/flags/{feature}`` edits the flag file (comments kept) and applies it at once — the
file stays the one source of truth; with a control store (``--control-db``) it stores an override
there instead, which every replica applies, and the audit is the store's shared table.
"""

from __future__ import annotations

import asyncio
from dataclasses import asdict
from pathlib import Path
from typing import Any

from aiohttp import web

from banyan.control.db import ControlError
from banyan.control.plane import ControlPlane
from banyan.proxy import console, mirror_admin, parity_admin
from banyan.proxy.admin_access import Route, authorize, error, register, reply
from banyan.proxy.admin_status import status_body
from banyan.proxy.audit import AuditLog, feature_settings
from banyan.proxy.edits import EditJournal
from banyan.proxy.flag_edit import set_fields
from banyan.proxy.flag_reactions import FlagReactions
from banyan.proxy.flags import FEATURE_KEYS, FlagError, FlagStore
from banyan.proxy.headers import mark, request_id_of
from banyan.proxy.hooks import ShadowHook
from banyan.proxy.metrics import ProxyMetrics
from banyan.proxy.mirror import MirrorQueue
from banyan.proxy.state import ProxyState

__all__ = ["EDITABLE", "ROUTES", "add_admin_routes", "authorize", "status_body"]

EDITABLE = frozenset(FEATURE_KEYS) - {"routes"}  # routes change only by editing the file


async def status(request: web.Request, state: ProxyState) -> web.Response:
    """The status page reads most parts of the proxy (flags, counts, sockets, guards, health,
    rollbacks, mirror queue, control store, shadow; :mod:`banyan.proxy.admin_status`) and the
    app's rollouts: it is the one handler given the whole state."""
    from banyan.rollout.admin import running_rollouts  # late: that module imports this one

    body = await status_body(state)
    body["rollouts"] = await running_rollouts(request.app)  # running and paused ones
    return reply(request, body)


async def flags(request: web.Request, store: FlagStore) -> web.Response:
    current = store.current
    return reply(
        request,
        {
            "version": current.version,
            "digest": current.digest,
            "default": current.default,
            "backends": {n: asdict(b) for n, b in current.backends.items()},
            "features": {f.name: feature_settings(f) for f in current.features},
        },
    )


async def _flag_changes(request: web.Request) -> dict[str, Any] | web.Response:
    """The body of a flag edit, or the refusal to send."""
    try:
        changes = await request.json()
    except ValueError:
        return error(request, 400, "invalid_json", "body is not JSON")
    if not isinstance(changes, dict) or not changes:
        return error(request, 400, "validation_error", "body must be a non-empty object")
    unknown = sorted(set(changes) - EDITABLE)
    if unknown:
        return error(request, 400, "validation_error", f"{unknown[0]}: is not editable")
    return changes


async def put_flag(
    request: web.Request,
    store: FlagStore,
    flags_path: Path,
    control: ControlPlane | None,
    edits: EditJournal,
) -> web.Response:
    name = request.match_info["feature"]
    if store.current.feature(name) is None:
        return error(request, 404, "not_found", f"no feature {name!r}")
    changes = await _flag_changes(request)
    if isinstance(changes, web.Response):
        return changes
    try:
        if control is not None:
            await control.edit(name, changes, source="admin")
            digest = store.current.digest
        else:
            result = await asyncio.to_thread(set_fields, flags_path, name, changes, source="admin")
            edits.record(result.changes)  # audited here, on the loop
            digest = result.digest
    except FlagError as exc:
        return error(request, 400, "invalid_flags", str(exc))
    except ControlError as exc:
        return error(request, 503, "control_store_unavailable", str(exc))
    await store.reload()
    feature = store.current.feature(name)
    settings = feature_settings(feature) if feature else None
    return reply(request, {"feature": name, "settings": settings, "digest": digest})


def _prefixed(request: web.Request, prefix: str) -> dict[str, str]:
    return {k[len(prefix) :]: v for k, v in request.query.items() if k.startswith(prefix)}


async def explain(request: web.Request, store: FlagStore) -> web.Response:
    path = request.query.get("path")
    if not path or not path.startswith("/"):
        return error(request, 400, "validation_error", "path: is required")
    decision = store.router.decide(
        path,
        user=request.query.get("user"),
        headers=_prefixed(request, "header."),
        cookies=_prefixed(request, "cookie."),
        client_ip=request.query.get("ip", ""),
    )
    return reply(request, {"path": path, **asdict(decision)})


async def metrics_text(
    request: web.Request, metrics: ProxyMetrics, mirror: MirrorQueue | None
) -> web.Response:
    """The Prometheus exposition, the mirror queue's gauges read fresh from its table."""
    if mirror is not None and mirror.engine is not None:
        stats = await mirror.stats()
        metrics.mirror.set("pending", value=stats.pending)
        metrics.mirror.set("dead", value=stats.dead)
    response = web.Response(text=metrics.render(), content_type="text/plain")
    response.headers["Content-Type"] = "text/plain; version=0.0.4; charset=utf-8"
    mark(response.headers, "_proxy", "proxy", request_id_of(request))
    return response


async def audit_entries(
    request: web.Request,
    reactions: FlagReactions,
    control: ControlPlane | None,
    audit: AuditLog | None,
) -> web.Response:
    """The flag changes audited, newest first: the control store's shared table, else the
    file's audit log, once every reload seen so far is written there."""
    limit = request.query.get("limit", "100")
    if not limit.isdigit():
        return error(request, 400, "validation_error", "limit: must be an integer")
    await reactions.audit_settled()  # reloads seen so far are written
    feature = request.query.get("feature")
    if control is not None:
        entries = await control.history(feature=feature, limit=int(limit))
    elif audit is not None:
        entries = audit.history(feature=feature, limit=int(limit))
    else:
        entries = []
    return reply(request, {"entries": entries})


def _no_parity(request: web.Request) -> web.Response:
    return error(request, 404, "not_found", "parity is not enabled")


async def parity_page(request: web.Request, shadow: ShadowHook | None) -> web.Response:
    if shadow is None:
        return _no_parity(request)
    return await shadow.report(request, html=request.path.endswith(".html"))


async def list_noise(request: web.Request, shadow: ShadowHook | None) -> web.Response:
    if shadow is None:
        return _no_parity(request)
    return reply(request, {"noise": shadow.learned_noise(request.query.get("feature"))})


async def forget_noise(request: web.Request, shadow: ShadowHook | None) -> web.Response:
    if shadow is None:
        return _no_parity(request)
    path = request.query.get("path", "")
    if not path:
        return error(request, 400, "validation_error", "path: the path to forget")
    feature = request.query.get("feature") or None
    forgotten = await shadow.forget_noise(path, feature)
    return reply(request, {"path": path, "feature": feature, "forgotten": forgotten})


async def reset_parity(request: web.Request, shadow: ShadowHook | None) -> web.Response:
    if shadow is None:
        return _no_parity(request)
    feature = request.query.get("feature") or None
    return reply(request, {"feature": feature, "deleted": await shadow.reset(feature)})


async def unknown(request: web.Request) -> web.Response:
    return error(request, 404, "not_found", "no such admin endpoint")


# Each route's call hands its handler the parts of the state it uses (read at each call).
ROUTES = (
    Route("GET", "/_proxy/status", status),  # the whole state
    Route("GET", "/_proxy/flags", lambda request, state: flags(request, state.store)),
    Route(
        "PUT",
        "/_proxy/flags/{feature}",
        lambda request, state: put_flag(
            request, state.store, state.flags_path, state.control, state.edits
        ),
        write=True,
    ),
    Route("GET", "/_proxy/explain", lambda request, state: explain(request, state.store)),
    Route(
        "GET",
        "/_proxy/metrics",
        lambda request, state: metrics_text(request, state.metrics, state.mirror),
    ),
    Route(
        "GET",
        "/_proxy/audit",
        lambda request, state: audit_entries(request, state.reactions, state.control, state.audit),
    ),
    Route("GET", "/_proxy/parity.json", lambda request, state: parity_page(request, state.shadow)),
    Route(  # the static page for a ticket
        "GET",
        "/_proxy/parity/export.html",
        lambda request, state: parity_page(request, state.shadow),
    ),
)
NOISE_ROUTES = (
    Route(
        "POST",
        "/_proxy/parity/reset",
        lambda request, state: reset_parity(request, state.shadow),
        write=True,
    ),
    Route("GET", "/_proxy/parity/noise", lambda request, state: list_noise(request, state.shadow)),
    Route(
        "DELETE",
        "/_proxy/parity/noise",
        lambda request, state: forget_noise(request, state.shadow),
        write=True,
    ),
)


def add_admin_routes(app: web.Application, key: web.AppKey[ProxyState]) -> None:
    """Every admin endpoint, then a JSON 404 for any other path under ``/_proxy/``."""
    register(app, key, ROUTES)
    register(app, key, parity_admin.ROUTES)
    register(app, key, mirror_admin.ROUTES)  # /_proxy/mirror: dead letters
    console.add_routes(app)  # /_proxy/ui/, and /_proxy/parity redirecting there
    register(app, key, NOISE_ROUTES)
    app.router.add_route("*", "/_proxy/{tail:.*}", unknown)
