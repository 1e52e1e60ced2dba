"""The proxy's status on one page (``GET /_proxy/status``, ``banyan status``, the console).

Flags in force and their source, each feature's mode, counts, open sockets and guard, the
backends' health, the guard rollbacks, the mirror queue, the control store, the shadow's breakers
and copies, and what of all that needs an operator (:mod:`banyan.proxy.attention`).
"""

from __future__ import annotations

import time
from dataclasses import asdict
from typing import Any

from banyan.proxy.attention import attention
from banyan.proxy.flags import Feature
from banyan.proxy.state import ProxyState

BACKENDS = ("legacy", "new")


def _feature(state: ProxyState, feature: Feature) -> dict[str, Any]:
    guard = state.guards.get(feature.name)
    return {
        "mode": feature.mode,
        "primary": feature.primary,
        "percent": feature.percent,
        "routes": list(feature.routes),
        "writes": feature.writes,
        "websocket": feature.websocket,
        "requests": {b: state.requests.get((feature.name, b), 0) for b in BACKENDS},
        "open_websockets": state.bridges.count(feature.name),
        "guard": None
        if guard is None
        else {
            "rates": guard.rates(),
            "tripped": asdict(guard.tripped) if guard.tripped else None,
        },
    }


def _flags(state: ProxyState) -> dict[str, Any]:
    store = state.store
    return {
        "digest": store.current.digest,
        "source": str(store.path),
        "loaded_at": store.loaded_at,
        "last_error": store.last_error,
        "last_error_at": store.last_error_at,
        "reloads": store.reloads,
        "rejected": store.rejected,
        "default": store.current.default,
    }


async def status_body(state: ProxyState) -> dict[str, Any]:
    """The page's body. It reads most parts of the proxy (flag store, counts, sockets, guards,
    health, rollbacks, mirror queue, control store, shadow): the one place given the whole
    state, by the ``/_proxy/status`` handler."""
    from banyan import __version__

    shadow = state.shadow  # the parity side is optional
    mirror = None
    if state.mirror is not None and state.mirror.engine is not None:
        mirror = asdict(await state.mirror.stats())
    body = {
        "version": __version__,
        "uptime_s": round(time.time() - state.started_at, 3),
        "flags": _flags(state),
        "features": {f.name: _feature(state, f) for f in state.flags.features},
        "unmatched": {b: state.requests.get(("-", b), 0) for b in BACKENDS},
        "backends": {
            n: h.as_dict() for n, h in (state.health.state.items() if state.health else [])
        },
        "rollbacks": state.breaches,
        "mirror": mirror,
        "control": state.control.status() if state.control is not None else None,
        "shadow_breakers": shadow.breaker.status() if shadow is not None else {},
        "shadow_copies": shadow.sender.status() if shadow is not None else None,
        "fence": state.fence.status(),  # users' writes on their way to a backend
        "open_websockets": len(state.bridges),
    }
    body["attention"] = attention(body)  # dead letters, guard rollbacks, ...: what needs a look
    return body
