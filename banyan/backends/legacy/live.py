"""``/ws/live`` on the legacy backend: the shared protocol hub fed by the legacy queries.

Handlers call :func:`banyan.backends.legacy.state.changed` after each commit; the hub re-runs the
user's
affected subscriptions.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from banyan.backends.common.errors import ValidationError
from banyan.backends.common.live import LiveHub
from banyan.backends.common.pagination import page_from_query
from banyan.backends.legacy.auth import authenticate
from banyan.backends.legacy.folders import query_folders
from banyan.backends.legacy.sessions import (
    owned_session,
    query_messages,
    query_sessions,
    session_json,
)
from banyan.backends.legacy.state import LegacyState, state

READS = {
    "folders.list": frozenset({"folders"}),
    "sessions.list": frozenset({"sessions"}),
    "sessions.get": frozenset({"sessions"}),
    "messages.list": frozenset({"messages"}),
}


def _limit(args: dict[str, Any]) -> dict[str, str]:
    limit = args.get("limit")
    return {} if limit is None else {"limit": str(limit)}


def make_hub(st: LegacyState) -> LiveHub:
    async def run(query: str, args: dict[str, Any], user_id: str) -> Any:
        async with st.db.session() as db:
            if query == "folders.list":
                return await query_folders(db, user_id)
            if query == "sessions.list":
                folder = args.get("folder_id")
                if folder is not None and not isinstance(folder, str):
                    raise ValidationError("folder_id: must be a string")
                return await query_sessions(db, user_id, folder, page_from_query(_limit(args)))
            if query == "sessions.get":
                return session_json(await owned_session(db, user_id, str(args.get("id", ""))))
            return await query_messages(
                db, user_id, str(args.get("session_id", "")), page_from_query(_limit(args))
            )

    return LiveHub(run, READS)


async def live_socket(request: web.Request) -> web.StreamResponse:
    user, _ = await authenticate(request, query_token=True)
    hub = state(request).live
    assert hub is not None
    return await hub.serve(request, user.id)
