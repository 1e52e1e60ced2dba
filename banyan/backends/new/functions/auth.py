"""Accounts and tokens: register and login are actions (password hashing is slow work done outside
any transaction); user creation and token revocation are mutations; identity is a query.

A registration is hashed with a salt derived from the user's id and creation time, so the same
stamped registration stores the same hash on both stores; delivered again where it already exists
(same name, time and hash) it answers 201 with the same body and ``Idempotent-Replayed: true``.
``auth.user`` finds the user a mirror stamp acts for, without the token's revocation check.
"""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy import bindparam, exists, select
from sqlalchemy.exc import IntegrityError

from banyan.backends.common import idempotency, ids, passwords, registration, render, tokens
from banyan.backends.common import validate as v
from banyan.backends.common.clock import iso, now_ms
from banyan.backends.common.errors import Conflict, Unauthorized
from banyan.backends.new.functions.common import CALLER, KEY, OPTIONAL_KEY
from banyan.backends.new.runtime.context import ActionCtx, MutationCtx, QueryCtx
from banyan.backends.new.runtime.http import Reply
from banyan.backends.new.runtime.registry import action, mutation, query
from banyan.backends.new.runtime.schema import revoked_tokens, users

_DUMMY: list[str] = []
IS_REVOKED = exists().where(revoked_tokens.c.jti == bindparam("jti"))
IDENTITY = select(users, IS_REVOKED.label("revoked")).where(users.c.id == bindparam("sub"))
REVOKED_ONLY = select(IS_REVOKED)
USER_BY_EMAIL = select(users).where(users.c.email == bindparam("email"))
USER_BY_ID = select(users).where(users.c.id == bindparam("id"))


def user_json(row: dict[str, Any]) -> dict[str, Any]:
    return render.user(row["id"], row["email"], row["name"], row["created_ms"])


def token_body(row: dict[str, Any]) -> dict[str, Any]:
    token, claims = tokens.issue(row["id"])
    return {"user": user_json(row), "token": token, "expires_at": iso(claims.exp * 1000)}


@query("auth.identity", {"sub": v.string(), "jti": v.string()}, cache=True)
async def identity(ctx: QueryCtx, args: dict[str, Any]) -> dict[str, Any] | None:
    """The token's user, or None; refused when the token was revoked. One statement (the user's
    row with a "revoked" flag), a second only when the user is missing."""
    found = (await ctx.read(IDENTITY, args)).mappings().first()
    row = dict(found) if found else None
    revoked = row.pop("revoked") if row else (await ctx.read(REVOKED_ONLY, args)).scalar()
    if revoked:
        raise Unauthorized("token has been revoked", code="token_revoked")
    return row


@query("auth.user", {"id": v.string()})
async def user_by_id(ctx: QueryCtx, args: dict[str, Any]) -> dict[str, Any] | None:
    """The user with this id, or None (a mirror stamp's user: no token is checked here)."""
    row = (await ctx.read(USER_BY_ID, {"id": args["id"]})).mappings().first()
    return dict(row) if row else None


@query("auth.userByEmail", {"email": v.string()})
async def user_by_email(ctx: QueryCtx, args: dict[str, Any]) -> dict[str, Any] | None:
    email = args["email"].strip().lower()
    row = (await ctx.read(USER_BY_EMAIL, {"email": email})).mappings().first()
    return dict(row) if row else None


@mutation(
    "auth.createUser",
    {
        "id": v.string(),
        "email": v.string(),
        "name": v.string(),
        "password_hash": v.string(),
        "idem_key_hash": v.nullable(v.string()),
        "created_ms": v.integer(minimum=0),
    },
)
async def create_user(ctx: MutationCtx, args: dict[str, Any]) -> dict[str, Any]:
    await ctx.write(users.insert().values(**args))
    return dict(args)


@action(
    "auth.register",
    {"email": v.string(), "password": v.string(strip=False), "name": v.string(), **KEY},
    optional=OPTIONAL_KEY,
)
async def register(ctx: ActionCtx, args: dict[str, Any]) -> Reply:
    key = args.get("idempotency_key")
    user_id, created_ms = ids.user_id_for(args["email"]), now_ms()
    salt = passwords.salt_for(user_id, created_ms)
    hashed = await asyncio.to_thread(passwords.hash_password, args["password"], salt=salt)
    existing = await ctx.run_query("auth.userByEmail", {"email": args["email"]})
    if existing is not None:
        again = await registration.repeats(
            existing,
            name=args["name"],
            password=args["password"],
            key=key,
            hashed=hashed,
            created_ms=created_ms,
        )
        if not again:
            raise Conflict("an account with this email exists", code="email_taken")
        return Reply(token_body(existing), 201, dict(idempotency.REPLAYED))
    try:
        row = await ctx.run_mutation(
            "auth.createUser",
            {
                "id": user_id,
                "email": args["email"],
                "name": args["name"],
                "password_hash": hashed,
                "idem_key_hash": idempotency.key_hash(key) if key else None,
                "created_ms": created_ms,
            },
        )
    except IntegrityError:
        raise Conflict("an account with this email exists", code="email_taken") from None
    return Reply(token_body(row), 201)


@action("auth.login", {"email": v.string(), "password": v.string(strip=False)})
async def login(ctx: ActionCtx, args: dict[str, Any]) -> dict[str, Any]:
    row = await ctx.run_query("auth.userByEmail", {"email": args["email"]})
    if not _DUMMY:
        _DUMMY.append(passwords.hash_password("no such user, same cost"))
    stored = row["password_hash"] if row else _DUMMY[0]
    ok = await asyncio.to_thread(passwords.verify_password, args["password"], stored)
    if row is None or not ok:
        raise Unauthorized("email or password is incorrect", code="invalid_credentials")
    return token_body(row)


@mutation("auth.logout", {**CALLER})
async def logout(ctx: MutationCtx, args: dict[str, Any]) -> Reply:
    caller = args["caller"]
    if not (await ctx.read(REVOKED_ONLY, {"jti": caller["jti"]})).scalar():
        row = {"jti": caller["jti"], "exp_ms": int(caller["exp"]) * 1000}
        await ctx.write(revoked_tokens.insert(), row)
    return Reply(status=204)


@query("auth.me", {**CALLER})
async def me(ctx: QueryCtx, args: dict[str, Any]) -> dict[str, Any]:
    return {"user": user_json(args["caller"])}
