"""The proxy application: one factory wiring the parts.

:func:`create_app` builds one :class:`~banyan.proxy.state.ProxyState` from the flag file and the
options, and registers, in this order: the probes, the rollout endpoints, the admin surface
(:mod:`banyan.proxy.admin`), the request path for every other path (:mod:`banyan.proxy.pipeline`,
behind the admission gate), the CORS hook, and the lifecycle (:mod:`banyan.proxy.lifecycle`).
``ProxyState``, ``STATE`` and ``ShadowHook`` are re-exported for the modules that name them here.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from pathlib import Path

from aiohttp import web

from banyan.control.mirror import shared_queue
from banyan.control.plane import ControlPlane
from banyan.proxy import admin, lifecycle
from banyan.proxy.admission import Admission, AdmissionLimits, admitted
from banyan.proxy.audit import AuditLog, beside
from banyan.proxy.cors import response_hook
from banyan.proxy.flags import POLL_INTERVAL, FlagStore
from banyan.proxy.front import ProxyRunner
from banyan.proxy.hooks import ShadowHook
from banyan.proxy.lifecycle import websocket_session
from banyan.proxy.limits import Limits
from banyan.proxy.mirror import MirrorQueue
from banyan.proxy.pipeline import handle
from banyan.proxy.settings import SETTINGS, Settings
from banyan.proxy.stamping import Stamper
from banyan.proxy.state import STATE, ProxyState
from banyan.rollout import admin as rollout_admin
from banyan.serving import RUNNER

__all__ = ["STATE", "ProxyState", "ShadowHook", "create_app", "handle", "websocket_session"]


def mirror_url(flags_path: Path, configured: str | None = None) -> str:
    """The mirror queue's database: ``configured`` (``BANYAN_MIRROR_DB``), else beside the flags."""
    return configured or f"sqlite+aiosqlite:///{flags_path.parent / 'mirror.db'}"


def create_app(
    flags_path: str | Path,
    *,
    access_log: bool = True,
    health_interval: float = 2.0,
    shadow: ShadowHook | None = None,
    mirror: MirrorQueue | None = None,
    poll_interval: float | None = None,
    limits: Limits | None = None,
    admission: AdmissionLimits | None = None,
    control_db: str | None = None,
    settings: Settings | None = None,
) -> web.Application:
    """The proxy for the flag file at ``flags_path`` (which must be valid right now).
    ``settings`` (:mod:`banyan.proxy.settings`, by default the environment's, read now) gives
    the header ``limits`` and ``admission`` limits unless passed here, the admin token, the
    stamp secret and where the audit log and mirror queue live. With ``control_db`` (a
    PostgreSQL URL) runtime changes live in that control store (:mod:`banyan.control`) and the
    flag file is only read."""
    settings = settings if settings is not None else Settings.from_env(os.environ)
    path = Path(flags_path).resolve()
    store = FlagStore(
        path,
        poll_interval=POLL_INTERVAL if poll_interval is None else poll_interval,
        max_bytes=settings.flags_max_bytes,
    )
    state = ProxyState(
        flags_path=path,
        store=store,
        access_log=access_log,
        health_interval=health_interval,
        audit=None if control_db else AuditLog(settings.audit_log or beside(path)),
        control=(
            ControlPlane(control_db, path, schema=settings.control_schema) if control_db else None
        ),
        mirror=mirror if mirror is not None else MirrorQueue(mirror_url(path, settings.mirror_db)),
        shadow=shadow,
        limits=limits or settings.limits,
        admission=Admission(admission if admission is not None else settings.admission),
        stamper=Stamper.configured(settings.stamp_secret),
    )
    if control_db and mirror is None:  # replicas sharing a PostgreSQL mirror queue and fence
        shared = shared_queue(mirror_url(path, settings.mirror_db))
        if shared is not None:
            state.mirror, state.fence = shared
    app = web.Application(client_max_size=1024**4)
    app[STATE] = state
    app[SETTINGS] = settings
    runner: Callable[..., web.AppRunner] = functools.partial(ProxyRunner, limits=state.limits)
    app[RUNNER] = runner
    lifecycle.add_probes(app)
    rollout_admin.install(app, STATE)  # before the admin catch-all
    admin.add_admin_routes(app, STATE)
    app.router.add_route("*", "/{tail:.*}", admitted(state.admission, handle, state.on_refusal))
    app.on_response_prepare.append(response_hook(lambda: state.flags.cors))
    lifecycle.install(app)
    return app
