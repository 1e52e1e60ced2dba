"""Contract: token rules — pinned HS256, expiry, forgery, revocation, and cross-backend tokens."""

from __future__ import annotations

import time
import uuid

import httpx
import jwt
import pytest

from banyan.backends.common import tokens
from banyan.backends.contract.client import User, assert_error, authed, unique_email
from banyan.backends.contract.targets import Target

pytestmark = pytest.mark.asyncio(loop_scope="session")


def claims(user_id: str, **overrides: object) -> dict[str, object]:
    now = int(time.time())
    base: dict[str, object] = {
        "sub": user_id,
        "iat": now,
        "exp": now + 600,
        "jti": uuid.uuid4().hex,
    }
    base.update(overrides)
    return base


def signing_secret() -> str:
    """The secret the target signs with (shared through ``BANYAN_JWT_SECRET``), or a skip."""
    try:
        return tokens.secret()
    except tokens.MissingSecret:
        pytest.skip("export the server's BANYAN_JWT_SECRET to sign tokens for it")


async def expect(target: Target, token: str, code: str) -> None:
    async with authed(target, token) as client:
        assert_error(await client.get("/api/auth/me"), 401, code)
        assert_error(await client.get("/api/folders"), 401, code)


async def test_alg_none_is_refused(target: Target, user: User) -> None:
    await expect(target, jwt.encode(claims(user.id), None, algorithm="none"), "unauthorized")


async def test_hs512_is_refused(target: Target, user: User) -> None:
    token = jwt.encode(claims(user.id), signing_secret(), algorithm="HS512")
    await expect(target, token, "unauthorized")


async def test_forged_signature_is_refused(target: Target, user: User) -> None:
    token = jwt.encode(claims(user.id), "not-the-secret-" * 4, algorithm="HS256")
    await expect(target, token, "unauthorized")
    head, payload, signature = user.token.split(".")
    flipped = signature[:-2] + ("AA" if signature[-2:] != "AA" else "BB")
    await expect(target, f"{head}.{payload}.{flipped}", "unauthorized")


async def test_missing_claims_are_refused(target: Target, user: User) -> None:
    body = claims(user.id)
    del body["jti"]
    await expect(target, jwt.encode(body, signing_secret(), algorithm="HS256"), "unauthorized")


async def test_expired_token(target: Target, user: User) -> None:
    now = int(time.time())
    token = jwt.encode(
        claims(user.id, iat=now - 7200, exp=now - 3600), signing_secret(), algorithm="HS256"
    )
    await expect(target, token, "token_expired")


async def test_the_old_built_in_secret_is_refused(target: Target, user: User) -> None:
    """Backends once fell back to a secret written in the code; a token signed with it is forged."""
    old = "banyan-dev-secret-change-me-" + "0123456789abcdef" * 3
    await expect(target, jwt.encode(claims(user.id), old, algorithm="HS256"), "unauthorized")


async def test_token_of_unknown_user_is_refused(target: Target) -> None:
    signing_secret()
    token, _ = tokens.issue(str(uuid.uuid4()))
    await expect(target, token, "unauthorized")


async def test_token_minted_elsewhere_is_accepted(target: Target, user: User) -> None:
    """Both backends share the secret: a token the other side issued works here."""
    signing_secret()
    token, _ = tokens.issue(user.id)
    async with authed(target, token) as client:
        me = await client.get("/api/auth/me")
    assert me.status_code == 200, me.text
    assert me.json()["user"]["id"] == user.id


async def test_token_from_the_other_backend(target: Target) -> None:
    """Behind the proxy the other backend runs too: register there, use its token here."""
    if target.peer_url is None:
        pytest.skip("needs both backends (proxy targets); minted tokens cover the rest")
    if target.shadowed:
        pytest.skip("writes to the candidate directly: its shadow copy would then meet the account")
    body = {"email": unique_email("cross"), "password": "cross backend pw", "name": "Cross"}
    async with httpx.AsyncClient(base_url=target.peer_url) as direct:
        there = await direct.post("/api/auth/register", json=body)
    assert there.status_code == 201, there.text
    async with httpx.AsyncClient(base_url=target.base_url) as proxied:
        here = await proxied.post("/api/auth/register", json=body)  # what a mirror would do
    assert here.status_code == 201, here.text
    assert here.json()["user"]["id"] == there.json()["user"]["id"]
    async with authed(target, there.json()["token"]) as client:
        me = await client.get("/api/auth/me")
    assert me.status_code == 200, me.text
    assert me.json()["user"]["id"] == there.json()["user"]["id"]
