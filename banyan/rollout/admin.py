"""The rollout endpoints of the admin surface, and the controller's place in the proxy's life.

``GET /_proxy/rollouts`` lists every rollout record (:func:`banyan.rollout.controller.view`);
``GET /_proxy/rollouts/{feature}`` shows one; ``POST /_proxy/rollouts/{feature}/{action}``
(``start | pause | resume | promote | abort``) acts and answers the record after the action.
Access is the admin surface's (:func:`banyan.proxy.admin.authorize`): reads from loopback or with
the admin token, writes only with it. Errors are JSON: 404 for an unknown feature, 400 for an
unknown action, 409 for an action the rollout's state does not allow, 503 when the rollout state
cannot be read or written. :func:`install` adds the
routes (before the admin catch-all) and starts and stops the controller with the app.
"""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING, Any

from aiohttp import web

from banyan.proxy.admin import authorize
from banyan.proxy.forward import error_response
from banyan.proxy.headers import mark, request_id_of
from banyan.proxy.settings import SETTINGS, Settings
from banyan.rollout.controller import RolloutController, view
from banyan.rollout.schedule import TransitionError
from banyan.rollout.store import FileRolloutStore, default_path, state_dir

if TYPE_CHECKING:
    from banyan.proxy.app import ProxyState

CONTROLLER: web.AppKey[RolloutController] = web.AppKey("banyan_rollouts")


def _json(request: web.Request, body: Any, status: int = 200) -> web.Response:
    response = web.json_response(body, status=status, dumps=lambda v: json.dumps(v, default=str))
    mark(response.headers, "_proxy", "proxy", request_id_of(request))
    return response


def _error(request: web.Request, status: int, code: str, message: str) -> web.Response:
    response = error_response(status, code, message)
    mark(response.headers, "_proxy", "proxy", request_id_of(request))
    return response


def install(app: web.Application, key: web.AppKey[ProxyState]) -> None:
    """The rollout endpoints on ``app``, and the controller started and stopped with it."""

    async def startup(app: web.Application) -> None:
        app[CONTROLLER] = controller = _controller_for(app[key], app.get(SETTINGS))
        await controller.start()

    app.router.add_get("/_proxy/rollouts", _listing)
    app.router.add_get("/_proxy/rollouts/{feature}", _listing)
    app.router.add_post("/_proxy/rollouts/{feature}/{action}", _act)
    app.on_startup.append(startup)
    app.on_cleanup.insert(0, _cleanup)


def _controller_for(state: ProxyState, settings: Settings | None) -> RolloutController:
    """With a control store, records and leadership live there (replicas); else a JSON file
    (``BANYAN_ROLLOUTS`` from the proxy's settings, else in the flag file's state folder) and a
    lock file beside it."""
    if state.control is not None:
        from banyan.control.rollouts import ControlRolloutController

        return ControlRolloutController(state, state.control.store)
    if settings is None:  # an app built without settings: the command's default
        path = default_path(state.flags_path)
    else:
        path = settings.rollouts or state_dir(state.flags_path) / "rollouts.json"
    return RolloutController(state, FileRolloutStore(path), path.with_name(path.name + ".leader"))


async def _cleanup(app: web.Application) -> None:
    controller = app.get(CONTROLLER)
    if controller is not None:
        await controller.stop()


async def _listing(request: web.Request) -> web.Response:
    refusal = authorize(request, write=False)
    if refusal is not None:
        mark(refusal.headers, "_proxy", "proxy", request_id_of(request))
        return refusal
    controller = request.app[CONTROLLER]
    try:
        records = await asyncio.to_thread(controller.store.load)
    except (OSError, ValueError) as exc:
        return _error(request, 503, "rollout_state_unavailable", str(exc))
    flags = controller.state.flags
    wanted = request.match_info.get("feature")
    if wanted is not None:
        if wanted not in records:
            return _error(request, 404, "not_found", f"no rollout of {wanted!r}")
        return _json(request, view(records[wanted], flags))
    return _json(request, [view(records[name], flags) for name in sorted(records)])


async def _act(request: web.Request) -> web.Response:
    refusal = authorize(request, write=True)
    if refusal is not None:
        mark(refusal.headers, "_proxy", "proxy", request_id_of(request))
        return refusal
    controller = request.app[CONTROLLER]
    name = request.match_info["feature"]
    if controller.state.flags.feature(name) is None:
        return _error(request, 404, "not_found", f"no feature {name!r}")
    try:
        record = await controller.act(name, request.match_info["action"])
    except TransitionError as exc:
        return _error(request, exc.status, exc.code, exc.message)
    except (OSError, ValueError) as exc:  # the state file cannot be read or written
        return _error(request, 503, "rollout_state_unavailable", str(exc))
    return _json(request, view(record, controller.state.flags))


async def running_rollouts(app: web.Application) -> list[dict[str, Any]] | None:
    """The running and paused rollouts for ``/_proxy/status``: feature, state, step (index),
    its label and the step count; None when the controller is absent or its state unreadable."""
    controller = app.get(CONTROLLER)
    if controller is None:
        return None
    try:
        records = await asyncio.to_thread(controller.store.load)
    except (OSError, ValueError):
        return None
    shown = []
    for name in sorted(records):
        record = records[name]
        if not record.active:
            continue
        label = record.steps[record.step]["label"] if record.step < len(record.steps) else None
        shown.append(
            {
                "feature": name,
                "state": record.state,
                "step": record.step,
                "label": label,
                "steps": len(record.steps),
            }
        )
    return shown
