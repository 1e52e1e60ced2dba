"""Register, login, logout, me — and :func:`authenticate`, which every other handler calls.

Passwords are hashed with scrypt in a worker thread (it is deliberately slow). A token is checked
for signature, algorithm and expiry, then against the revocation list, then the user must exist.
"""

from __future__ import annotations

import asyncio

from aiohttp import web
from sqlalchemy import select

from backends.common import idempotency, ids, passwords, render, rules, tokens
from backends.common.clock import iso, now_ms
from backends.common.errors import Conflict, Unauthorized
from backends.common.validate import read_json
from backends.legacy.db import RevokedToken, User
from backends.legacy.state import state


async def authenticate(
    request: web.Request, *, query_token: bool = False
) -> tuple[User, tokens.Claims]:
    raw = tokens.bearer_from(
        request.headers.get("Authorization"), request.query.get("token") if query_token else None
    )
    claims = tokens.verify(raw)
    async with state(request).db.session() as db:
        if await db.get(RevokedToken, claims.jti) is not None:
            raise Unauthorized("token has been revoked", code="token_revoked")
        user = await db.get(User, claims.sub)
    if user is None:
        raise Unauthorized("unknown user")
    return user, claims


_DUMMY: list[str] = []


def _dummy_hash() -> str:
    """A hash to verify against for unknown emails, so both cases take as long."""
    if not _DUMMY:
        _DUMMY.append(passwords.hash_password("no such user, same cost"))
    return _DUMMY[0]


def _token_body(user: User) -> dict[str, object]:
    token, claims = tokens.issue(user.id)
    return {
        "user": render.user(user.id, user.email, user.name, user.created_ms),
        "token": token,
        "expires_at": iso(claims.exp * 1000),
    }


async def register(request: web.Request) -> web.Response:
    key = idempotency.key_from(request.headers)
    fields = rules.REGISTER(await read_json(request))
    user_id = ids.user_id_for(fields["email"])
    async with state(request).db.session() as db:
        existing = await db.get(User, user_id)
        if existing is not None:
            replay = (
                key is not None
                and existing.idem_key_hash == idempotency.key_hash(key)
                and await asyncio.to_thread(
                    passwords.verify_password, fields["password"], existing.password_hash
                )
            )
            if not replay:
                raise Conflict("an account with this email exists", code="email_taken")
            return web.json_response(
                _token_body(existing), status=201, headers=idempotency.REPLAYED
            )
        user = User(
            id=user_id,
            email=fields["email"],
            name=fields["name"],
            password_hash=await asyncio.to_thread(passwords.hash_password, fields["password"]),
            created_ms=now_ms(),
            idem_key_hash=idempotency.key_hash(key) if key else None,
        )
        db.add(user)
        try:
            await db.commit()
        except Exception as exc:  # a concurrent registration of the same email won the race
            await db.rollback()
            if "unique" in str(exc).lower() or "duplicate" in str(exc).lower():
                raise Conflict("an account with this email exists", code="email_taken") from None
            raise
    return web.json_response(_token_body(user), status=201)


async def login(request: web.Request) -> web.Response:
    fields = rules.LOGIN(await read_json(request))
    async with state(request).db.session() as db:
        user = (
            await db.execute(select(User).where(User.email == fields["email"].strip().lower()))
        ).scalar_one_or_none()
    stored = user.password_hash if user else _dummy_hash()
    ok = await asyncio.to_thread(passwords.verify_password, fields["password"], stored)
    if user is None or not ok:
        raise Unauthorized("email or password is incorrect", code="invalid_credentials")
    return web.json_response(_token_body(user))


async def logout(request: web.Request) -> web.Response:
    _, claims = await authenticate(request)
    async with state(request).db.session() as db:
        if await db.get(RevokedToken, claims.jti) is None:
            db.add(RevokedToken(jti=claims.jti, exp_ms=claims.exp * 1000))
            await db.commit()
    return web.Response(status=204)


async def me(request: web.Request) -> web.Response:
    user, _ = await authenticate(request)
    return web.json_response({"user": render.user(user.id, user.email, user.name, user.created_ms)})


def add_routes(app: web.Application) -> None:
    app.router.add_post("/api/auth/register", register)
    app.router.add_post("/api/auth/login", login)
    app.router.add_post("/api/auth/logout", logout)
    app.router.add_get("/api/auth/me", me)
