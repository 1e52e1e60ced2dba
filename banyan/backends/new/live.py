"""``/ws/live`` on the new backend: subscriptions are queries of the runtime, and the runtime's
write sets (reported after each commit) decide which subscriptions to re-run."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from banyan.backends.common.errors import ValidationError
from banyan.backends.common.live import LiveHub
from banyan.backends.new.runtime.engine import Runtime
from banyan.backends.new.runtime.http import identify

# live query name -> (runtime function, tables it reads)
QUERIES = {
    "folders.list": ("folders.list", frozenset({"folders"})),
    "sessions.list": ("sessions.list", frozenset({"sessions"})),
    "sessions.get": ("sessions.get", frozenset({"sessions"})),
    "messages.list": ("messages.list", frozenset({"messages", "sessions"})),
}


def make_hub(runtime: Runtime) -> LiveHub:
    async def run(name: str, args: dict[str, Any], user_id: str) -> Any:
        caller = await runtime.run_query("auth.identity", {"sub": user_id, "jti": "-"}, None)
        if caller is None:
            raise ValidationError("unknown user")
        query: dict[str, str] = {}
        if args.get("limit") is not None:
            query["limit"] = str(args["limit"])
        if name == "sessions.list" and args.get("folder_id") is not None:
            query["folder_id"] = str(args["folder_id"])
        call: dict[str, Any] = {"caller": caller}
        if name in ("sessions.list", "messages.list"):
            call["query"] = query
        if name == "sessions.get":
            call["id"] = str(args.get("id", ""))
        if name == "messages.list":
            call["id"] = str(args.get("session_id", ""))
        return await runtime.run_query(QUERIES[name][0], call, user_id)

    return LiveHub(run, {name: reads for name, (_, reads) in QUERIES.items()})


def handler(runtime: Runtime) -> Any:
    async def live_socket(request: web.Request) -> web.StreamResponse:
        user = await identify(runtime, request, query_token=True)
        assert runtime.live is not None
        return await runtime.live.serve(request, user["id"])

    return live_socket
