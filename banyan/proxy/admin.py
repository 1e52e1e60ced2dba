"""The admin surface under ``/_proxy/``: status, flags, explain, metrics, audit, parity, and
the console (:mod:`banyan.proxy.console`, :mod:`banyan.proxy.parity_admin`).

Access: with ``BANYAN_ADMIN_TOKEN`` set, every admin call needs ``Authorization: Bearer <token>``;
without it, only loopback clients may read, and writes are refused (a write always needs a token).
``PUT /_proxy/flags/{feature}`` edits the flag file (comments kept) and applies it at once — the
file stays the one source of truth; with a control store (``--control-db``) it stores an override
there instead, which every replica applies, and the audit is the store's shared table.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import json
import os
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from aiohttp import web

from banyan.control.db import ControlError
from banyan.proxy import console, mirror_admin, parity_admin
from banyan.proxy.attention import attention
from banyan.proxy.audit import feature_settings
from banyan.proxy.flag_edit import set_fields
from banyan.proxy.flags import FEATURE_KEYS, FlagError
from banyan.proxy.forward import error_response
from banyan.proxy.headers import mark, request_id_of

if TYPE_CHECKING:
    from banyan.proxy.app import ProxyState

EDITABLE = frozenset(FEATURE_KEYS) - {"routes"}  # routes change only by editing the file


def _is_loopback(remote: str | None) -> bool:
    try:
        return remote is not None and ipaddress.ip_address(remote).is_loopback
    except ValueError:
        return False


def authorize(request: web.Request, *, write: bool) -> web.Response | None:
    """None when allowed, else the refusal to send."""
    token = os.environ.get("BANYAN_ADMIN_TOKEN")
    if token:
        given = request.headers.get("Authorization", "")
        if given.startswith("Bearer ") and hmac.compare_digest(given[7:].strip(), token):
            return None
        return error_response(
            401, "unauthorized", "admin calls need 'Authorization: Bearer <BANYAN_ADMIN_TOKEN>'"
        )
    if write:
        return error_response(403, "forbidden", "set BANYAN_ADMIN_TOKEN to enable admin writes")
    if not _is_loopback(request.remote):
        return error_response(
            403, "forbidden", "admin is loopback-only while BANYAN_ADMIN_TOKEN is unset"
        )
    return None


def _json(request: web.Request, body: Any, status: int = 200) -> web.Response:
    response = web.json_response(body, status=status, dumps=lambda v: json.dumps(v, default=str))
    mark(response.headers, "_proxy", "proxy", request_id_of(request))
    return response


def add_admin_routes(app: web.Application, key: web.AppKey[ProxyState]) -> None:
    def state_of(request: web.Request) -> ProxyState:
        return request.app[key]

    def guarded(write: bool = False) -> Any:
        def wrap(handler: Any) -> Any:
            async def inner(request: web.Request) -> web.StreamResponse:
                refusal = authorize(request, write=write)
                if refusal is not None:
                    mark(refusal.headers, "_proxy", "proxy", request_id_of(request))
                    return refusal
                return await handler(request, state_of(request))

            return inner

        return wrap

    @guarded()
    async def status(request: web.Request, state: ProxyState) -> web.Response:
        from banyan.rollout.admin import running_rollouts  # late: that module imports this one

        body = await status_body(state)
        body["rollouts"] = await running_rollouts(request.app)  # running and paused ones
        return _json(request, body)

    @guarded()
    async def flags(request: web.Request, state: ProxyState) -> web.Response:
        current = state.flags
        return _json(
            request,
            {
                "version": current.version,
                "digest": current.digest,
                "default": current.default,
                "backends": {n: asdict(b) for n, b in current.backends.items()},
                "features": {f.name: feature_settings(f) for f in current.features},
            },
        )

    @guarded(write=True)
    async def put_flag(request: web.Request, state: ProxyState) -> web.Response:
        name = request.match_info["feature"]
        if state.flags.feature(name) is None:
            return _json(
                request, {"error": {"code": "not_found", "message": f"no feature {name!r}"}}, 404
            )
        try:
            changes = await request.json()
        except ValueError:
            return _json(
                request, {"error": {"code": "invalid_json", "message": "body is not JSON"}}, 400
            )
        if not isinstance(changes, dict) or not changes:
            return _json(
                request,
                {
                    "error": {
                        "code": "validation_error",
                        "message": "body must be a non-empty object",
                    }
                },
                400,
            )
        unknown = sorted(set(changes) - EDITABLE)
        if unknown:
            return _json(
                request,
                {
                    "error": {
                        "code": "validation_error",
                        "message": f"{unknown[0]}: is not editable",
                    }
                },
                400,
            )
        try:
            if state.control is not None:
                await state.control.edit(name, changes, source="admin")
                digest = state.flags.digest
            else:
                result = await asyncio.to_thread(
                    set_fields, state.flags_path, name, changes, source="admin"
                )
                state.edits.record(result.changes)  # audited here, on the loop
                digest = result.digest
        except FlagError as exc:
            return _json(request, {"error": {"code": "invalid_flags", "message": str(exc)}}, 400)
        except ControlError as exc:
            body = {"error": {"code": "control_store_unavailable", "message": str(exc)}}
            return _json(request, body, 503)
        await state.store.reload()
        feature = state.flags.feature(name)
        return _json(
            request,
            {
                "feature": name,
                "settings": feature_settings(feature) if feature else None,
                "digest": digest,
            },
        )

    @guarded()
    async def explain(request: web.Request, state: ProxyState) -> web.Response:
        path = request.query.get("path")
        if not path or not path.startswith("/"):
            return _json(
                request,
                {"error": {"code": "validation_error", "message": "path: is required"}},
                400,
            )
        headers = {
            k[len("header.") :]: v for k, v in request.query.items() if k.startswith("header.")
        }
        decision = state.store.router.decide(
            path,
            user=request.query.get("user"),
            headers=headers,
            cookies={
                k[len("cookie.") :]: v for k, v in request.query.items() if k.startswith("cookie.")
            },
            client_ip=request.query.get("ip", ""),
        )
        return _json(request, {"path": path, **asdict(decision)})

    @guarded()
    async def metrics(request: web.Request, state: ProxyState) -> web.Response:
        if state.mirror is not None and state.mirror.engine is not None:
            stats = await state.mirror.stats()
            state.metrics.mirror.set("pending", value=stats.pending)
            state.metrics.mirror.set("dead", value=stats.dead)
        response = web.Response(text=state.metrics.render(), content_type="text/plain")
        response.headers["Content-Type"] = "text/plain; version=0.0.4; charset=utf-8"
        mark(response.headers, "_proxy", "proxy", request_id_of(request))
        return response

    @guarded()
    async def audit(request: web.Request, state: ProxyState) -> web.Response:
        limit = request.query.get("limit", "100")
        if not limit.isdigit():
            return _json(
                request,
                {"error": {"code": "validation_error", "message": "limit: must be an integer"}},
                400,
            )
        await state.audit_settled()  # reloads seen so far are written
        feature = request.query.get("feature")
        if state.control is not None:
            entries = await state.control.history(feature=feature, limit=int(limit))
        elif state.audit is not None:
            entries = state.audit.history(feature=feature, limit=int(limit))
        else:
            entries = []
        return _json(request, {"entries": entries})

    app.router.add_get("/_proxy/status", status)
    app.router.add_get("/_proxy/flags", flags)
    app.router.add_put("/_proxy/flags/{feature}", put_flag)
    app.router.add_get("/_proxy/explain", explain)
    app.router.add_get("/_proxy/metrics", metrics)
    app.router.add_get("/_proxy/audit", audit)

    async def parity_page(request: web.Request) -> web.StreamResponse:
        refusal = authorize(request, write=False)
        if refusal is not None:
            return refusal
        state = state_of(request)
        hook = state.shadow
        if hook is None or not hasattr(hook, "report"):
            return _json(
                request, {"error": {"code": "not_found", "message": "parity is not enabled"}}, 404
            )
        return await hook.report(request, html=request.path.endswith(".html"))

    app.router.add_get("/_proxy/parity.json", parity_page)
    app.router.add_get("/_proxy/parity/export.html", parity_page)  # the static page for a ticket
    parity_admin.add_routes(app, guarded, _json)
    mirror_admin.add_routes(app, guarded, _json)  # /_proxy/mirror: dead letters
    console.add_routes(app)  # /_proxy/ui/, and /_proxy/parity redirecting there

    def no_parity(request: web.Request) -> web.Response:
        return _json(
            request, {"error": {"code": "not_found", "message": "parity is not enabled"}}, 404
        )

    @guarded()
    async def list_noise(request: web.Request, state: ProxyState) -> web.Response:
        learned = getattr(state.shadow, "learned_noise", None)
        if learned is None:
            return no_parity(request)
        return _json(request, {"noise": learned(request.query.get("feature"))})

    @guarded(write=True)
    async def forget_noise(request: web.Request, state: ProxyState) -> web.Response:
        forget = getattr(state.shadow, "forget_noise", None)
        if forget is None:
            return no_parity(request)
        path = request.query.get("path", "")
        if not path:
            return _json(
                request,
                {"error": {"code": "validation_error", "message": "path: the path to forget"}},
                400,
            )
        feature = request.query.get("feature") or None
        forgotten = await forget(path, feature)
        return _json(request, {"path": path, "feature": feature, "forgotten": forgotten})

    @guarded(write=True)
    async def reset_parity(request: web.Request, state: ProxyState) -> web.Response:
        reset = getattr(state.shadow, "reset", None)
        if reset is None:
            return no_parity(request)
        feature = request.query.get("feature") or None
        return _json(request, {"feature": feature, "deleted": await reset(feature)})

    app.router.add_post("/_proxy/parity/reset", reset_parity)
    app.router.add_get("/_proxy/parity/noise", list_noise)
    app.router.add_delete("/_proxy/parity/noise", forget_noise)

    async def unknown(request: web.Request) -> web.Response:
        return _json(
            request, {"error": {"code": "not_found", "message": "no such admin endpoint"}}, 404
        )

    app.router.add_route("*", "/_proxy/{tail:.*}", unknown)


async def status_body(state: ProxyState) -> dict[str, Any]:
    from banyan import __version__

    store = state.store
    features: dict[str, Any] = {}
    for feature in state.flags.features:
        guard = state.guards.get(feature.name)
        features[feature.name] = {
            "mode": feature.mode,
            "primary": feature.primary,
            "percent": feature.percent,
            "routes": list(feature.routes),
            "writes": feature.writes,
            "websocket": feature.websocket,
            "requests": {b: state.requests.get((feature.name, b), 0) for b in ("legacy", "new")},
            "open_websockets": state.bridges.count(feature.name),
            "guard": None
            if guard is None
            else {
                "rates": guard.rates(),
                "tripped": asdict(guard.tripped) if guard.tripped else None,
            },
        }
    breaker = getattr(state.shadow, "breaker", None)  # the parity hook is optional
    sender = getattr(state.shadow, "sender", None)
    mirror = None
    if state.mirror is not None and state.mirror.engine is not None:
        mirror = asdict(await state.mirror.stats())
    body = {
        "version": __version__,
        "uptime_s": round(__import__("time").time() - state.started_at, 3),
        "flags": {
            "digest": store.current.digest,
            "source": str(store.path),
            "loaded_at": store.loaded_at,
            "last_error": store.last_error,
            "last_error_at": store.last_error_at,
            "reloads": store.reloads,
            "rejected": store.rejected,
            "default": store.current.default,
        },
        "features": features,
        "unmatched": {b: state.requests.get(("-", b), 0) for b in ("legacy", "new")},
        "backends": {
            n: h.as_dict() for n, h in (state.health.state.items() if state.health else [])
        },
        "rollbacks": state.breaches,
        "mirror": mirror,
        "control": state.control.status() if state.control is not None else None,
        "shadow_breakers": breaker.status() if breaker is not None else {},
        "shadow_sender": sender.status() if sender is not None else None,
        "open_websockets": len(state.bridges),
    }
    body["attention"] = attention(body)  # dead letters, guard rollbacks, ...: what needs a look
    return body
