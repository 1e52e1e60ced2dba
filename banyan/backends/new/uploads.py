"""``POST /api/documents`` on the new backend: the one route that is not JSON. The multipart body
is read and checked by :mod:`banyan.backends.common.uploads` (same rules and messages as legacy), then
handed to the ``documents.create`` mutation."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from banyan.backends.common import idempotency
from banyan.backends.common.uploads import read_upload
from banyan.backends.new.runtime.engine import Runtime
from banyan.backends.new.runtime.http import Reply, identify


def add_routes(app: web.Application, runtime: Runtime) -> None:
    async def upload(request: web.Request) -> web.Response:
        user = await identify(runtime, request)
        args: dict[str, Any] = {"caller": user}
        key = idempotency.key_from(request.headers)
        args["upload"] = await read_upload(request)
        if key is not None:
            args["idempotency_key"] = key
        reply: Reply = await runtime.run_mutation("documents.create", args, user["id"])
        return web.json_response(reply.body, status=reply.status, headers=reply.headers)

    app.router.add_post("/api/documents", upload)
