"""The HTTP router: the contract's routes mapped onto functions.

Each route names a function, whether the caller must be signed in, and the validator of the
request body (the contract's rules, so bad input is answered exactly as on the legacy side). The
function receives the validated body fields, the path parameters, the ``Idempotency-Key`` (when
it declares ``idempotency_key``; others ignore the header, as the legacy side does) and the query
string as its arguments, and returns a :class:`Reply` or a plain JSON value (status 200).

:func:`identify` is how every route learns its caller; a write whose verified ``mirror`` stamp
names a user acts for that user (``auth.user``: the user must exist, the token must be genuine and
theirs; its expiry and revocation are not checked — :mod:`banyan.backends.common.stamped`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from banyan.backends.common import idempotency, tokens
from banyan.backends.common.errors import Unauthorized
from banyan.backends.common.stamped import mirror_user
from banyan.backends.common.validate import read_json
from banyan.backends.new.runtime.engine import Runtime


@dataclass(slots=True)
class Reply:
    body: Any = None
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)


async def identify(
    runtime: Runtime, request: web.Request, *, query_token: bool = False
) -> dict[str, Any]:
    """The signed-in user (as the ``auth.identity`` query returns it), or 401."""
    raw = tokens.bearer_from(
        request.headers.get("Authorization"), request.query.get("token") if query_token else None
    )
    acting = mirror_user(request)
    if acting is not None:
        claims = tokens.verify_signature(raw)
        if claims.sub != acting:
            raise Unauthorized("the token and the stamp name different users")
        user: dict[str, Any] | None = await runtime.run_query("auth.user", {"id": acting}, None)
    else:
        claims = tokens.verify(raw)
        user = await runtime.run_query(
            "auth.identity", {"sub": claims.sub, "jti": claims.jti}, None
        )
    if user is None:
        raise Unauthorized("unknown user")
    user["jti"], user["exp"] = claims.jti, claims.exp
    return user


class HttpRouter:
    def __init__(self, runtime: Runtime, app: web.Application) -> None:
        self.runtime = runtime
        self.app = app

    def route(
        self,
        method: str,
        path: str,
        function: str,
        *,
        auth: bool = True,
        body: Callable[[Any], dict[str, Any]] | None = None,
        query: bool = False,
    ) -> None:
        runtime = self.runtime

        async def handler(request: web.Request) -> web.StreamResponse:
            user = await identify(runtime, request) if auth else None
            args: dict[str, Any] = dict(request.match_info)
            key = idempotency.key_from(request.headers)
            if body is not None:
                args.update(body(await read_json(request)))
            if query:
                args["query"] = dict(request.query)
            if key is not None and runtime.registry.get(function).accepts("idempotency_key"):
                args["idempotency_key"] = key  # a function without one ignores it, as legacy does
            if user is not None:
                args["caller"] = user
            result = await runtime.run(function, args, user["id"] if user else None)
            reply = result if isinstance(result, Reply) else Reply(result)
            if reply.status == 204:
                return web.Response(status=204)
            return web.json_response(reply.body, status=reply.status, headers=reply.headers)

        self.app.router.add_route(method, path, handler)
