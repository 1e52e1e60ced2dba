"""Register, login, logout, me — and :func:`authenticate`, which every other handler calls.

Passwords are hashed with scrypt in a worker thread (it is deliberately slow), never while the
SQLite writer gate is held. A token is checked for signature, algorithm and expiry, then against
the revocation list, then the user must exist; the last two are one statement (the user's row with
a "revoked" flag), with a second one only when the user is missing. A confirmed identity is kept
for a few seconds (:class:`Identities`, as the new backend caches its ``auth.identity`` query);
a logout forgets it at once.

A write the proxy mirrors acts for the user its verified ``mirror`` stamp names
(:mod:`banyan.backends.common.stamped`): the token it carries must be genuine and that user's, and
the user must exist, but its expiry and revocation are not checked — a create mirrored after the
user logged out is still delivered. Such an identity is never kept in the cache, so the same
revoked token sent by a client is refused as before.

A registration is hashed with a salt derived from the user's id and creation time, so a
registration mirrored with the same stamp stores the same hash; delivered again to a store that
already holds that very registration (same name, time and hash) it answers as the first did (201
and the same body, with ``Idempotent-Replayed: true``) instead of ``409 email_taken``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from sqlalchemy import bindparam, exists, insert, select
from sqlalchemy.exc import IntegrityError

from banyan.backends.common import (
    idempotency,
    ids,
    passwords,
    registration,
    render,
    rules,
    tokens,
)
from banyan.backends.common.clock import iso, now_ms
from banyan.backends.common.errors import Conflict, Unauthorized
from banyan.backends.common.stamped import mirror_user
from banyan.backends.common.validate import read_json
from banyan.backends.legacy.db import REVOKED, USERS
from banyan.backends.legacy.state import LegacyState, state

IS_REVOKED = exists().where(REVOKED.c.jti == bindparam("jti"))
IDENTITY = select(
    USERS.c.id, USERS.c.email, USERS.c.name, USERS.c.created_ms, IS_REVOKED.label("revoked")
).where(USERS.c.id == bindparam("sub"))
REVOKED_ONLY = select(IS_REVOKED)
USER_BY_ID = select(USERS).where(USERS.c.id == bindparam("id"))
USER_BY_EMAIL = select(USERS).where(USERS.c.email == bindparam("email"))


@dataclass(frozen=True, slots=True)
class Caller:
    """The signed-in user of a request."""

    id: str
    email: str
    name: str
    created_ms: int


class Identities:
    """Identities confirmed recently (token not revoked, user exists), by the token's ``jti``.

    An entry is kept ``ttl`` seconds. A logout in this process forgets its ``jti`` at once, and a
    lookup that was under way while any logout committed is not kept, so a revoked token is never
    accepted here after its logout answered. A logout on another process sharing the store (a
    replica) is seen when the entry expires, as with the new backend's query cache."""

    def __init__(self, ttl: float = 5.0, max_entries: int = 10_000) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._entries: dict[str, tuple[float, Caller]] = {}
        self.logouts = 0

    def get(self, claims: tokens.Claims) -> Caller | None:
        entry = self._entries.get(claims.jti)
        if entry is None:
            return None
        if entry[0] <= time.monotonic() or entry[1].id != claims.sub:
            del self._entries[claims.jti]
            return None
        return entry[1]

    def keep(self, jti: str, caller: Caller, logouts_before: int) -> None:
        if logouts_before != self.logouts:
            return
        if len(self._entries) >= self.max_entries:
            del self._entries[next(iter(self._entries))]  # the oldest
        self._entries[jti] = (time.monotonic() + self.ttl, caller)

    def forget(self, jti: str) -> None:
        self.logouts += 1
        self._entries.pop(jti, None)

    def __len__(self) -> int:
        return len(self._entries)


def identities(st: LegacyState) -> Identities:
    """The app's identity cache (kept in the state's extras)."""
    found = st.extras.get("identities")
    if not isinstance(found, Identities):
        found = st.extras["identities"] = Identities()
    return found


async def authenticate(
    request: web.Request, *, query_token: bool = False
) -> tuple[Caller, tokens.Claims]:
    raw = tokens.bearer_from(
        request.headers.get("Authorization"), request.query.get("token") if query_token else None
    )
    acting = mirror_user(request)
    if acting is not None:
        return await _mirrored_caller(request, raw, acting)
    claims = tokens.verify(raw)
    st = state(request)
    known = identities(st)
    caller = known.get(claims)
    if caller is not None:
        return caller, claims
    logouts_before = known.logouts
    params = {"sub": claims.sub, "jti": claims.jti}
    async with st.db.engine.connect() as conn:
        row = (await conn.execute(IDENTITY, params)).first()
        revoked = row.revoked if row else (await conn.execute(REVOKED_ONLY, params)).scalar()
    if revoked:
        raise Unauthorized("token has been revoked", code="token_revoked")
    if row is None:
        raise Unauthorized("unknown user")
    caller = Caller(row.id, row.email, row.name, row.created_ms)
    known.keep(claims.jti, caller, logouts_before)
    return caller, claims


async def _mirrored_caller(
    request: web.Request, raw: str, acting: str
) -> tuple[Caller, tokens.Claims]:
    """The user a verified mirror stamp acts for (never cached: see the module docstring)."""
    claims = tokens.verify_signature(raw)
    if claims.sub != acting:
        raise Unauthorized("the token and the stamp name different users")
    async with state(request).db.engine.connect() as conn:
        row = (await conn.execute(USER_BY_ID, {"id": acting})).first()
    if row is None:
        raise Unauthorized("unknown user")
    return _caller(row), claims


_DUMMY: list[str] = []


def _dummy_hash() -> str:
    """A hash to verify against for unknown emails, so both cases take as long."""
    if not _DUMMY:
        _DUMMY.append(passwords.hash_password("no such user, same cost"))
    return _DUMMY[0]


def _token_body(user: Caller) -> dict[str, object]:
    token, claims = tokens.issue(user.id)
    return {
        "user": render.user(user.id, user.email, user.name, user.created_ms),
        "token": token,
        "expires_at": iso(claims.exp * 1000),
    }


def _caller(row: Any) -> Caller:
    return Caller(row.id, row.email, row.name, row.created_ms)


async def register(request: web.Request) -> web.Response:
    key = idempotency.key_from(request.headers)
    fields = rules.REGISTER(await read_json(request))
    user_id = ids.user_id_for(fields["email"])
    created_ms = now_ms()
    salt = passwords.salt_for(user_id, created_ms)
    hashed = await asyncio.to_thread(passwords.hash_password, fields["password"], salt=salt)
    db = state(request).db
    async with db.engine.connect() as conn:
        existing = (await conn.execute(USER_BY_ID, {"id": user_id})).first()
    if existing is not None:
        again = await registration.repeats(
            existing._mapping,
            name=fields["name"],
            password=fields["password"],
            key=key,
            hashed=hashed,
            created_ms=created_ms,
        )
        if not again:
            raise Conflict("an account with this email exists", code="email_taken")
        return web.json_response(
            _token_body(_caller(existing)), status=201, headers=idempotency.REPLAYED
        )
    user = Caller(user_id, fields["email"], fields["name"], created_ms)
    row = {
        "id": user.id,
        "email": user.email,
        "name": user.name,
        "password_hash": hashed,
        "created_ms": user.created_ms,
        "idem_key_hash": idempotency.key_hash(key) if key else None,
    }
    try:
        async with db.write_gate(), db.engine.begin() as conn:
            await conn.execute(insert(USERS), row)
    except IntegrityError:  # a concurrent registration of the same email won the race
        raise Conflict("an account with this email exists", code="email_taken") from None
    return web.json_response(_token_body(user), status=201)


async def login(request: web.Request) -> web.Response:
    fields = rules.LOGIN(await read_json(request))
    async with state(request).db.engine.connect() as conn:
        email = fields["email"].strip().lower()
        user = (await conn.execute(USER_BY_EMAIL, {"email": email})).first()
    stored = user.password_hash if user else _dummy_hash()
    ok = await asyncio.to_thread(passwords.verify_password, fields["password"], stored)
    if user is None or not ok:
        raise Unauthorized("email or password is incorrect", code="invalid_credentials")
    return web.json_response(_token_body(_caller(user)))


async def logout(request: web.Request) -> web.Response:
    _, claims = await authenticate(request)
    db = state(request).db
    with contextlib.suppress(IntegrityError):  # a concurrent logout of the same token
        async with db.write_gate(), db.engine.begin() as conn:
            if not (await conn.execute(REVOKED_ONLY, {"jti": claims.jti})).scalar():
                row = {"jti": claims.jti, "exp_ms": claims.exp * 1000}
                await conn.execute(insert(REVOKED), row)
    identities(state(request)).forget(claims.jti)  # after the commit: no lookup can keep it now
    return web.Response(status=204)


async def me(request: web.Request) -> web.Response:
    user, _ = await authenticate(request)
    return web.json_response({"user": render.user(user.id, user.email, user.name, user.created_ms)})


def add_routes(app: web.Application) -> None:
    app.router.add_post("/api/auth/register", register)
    app.router.add_post("/api/auth/login", login)
    app.router.add_post("/api/auth/logout", logout)
    app.router.add_get("/api/auth/me", me)
