"""Tests of banyan/backends/legacy/auth.py: the identity cache, and revocations seen through it."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import pytest
from sqlalchemy import insert

from banyan.backends.common import tokens
from banyan.backends.legacy.app import create_app
from banyan.backends.legacy.auth import Caller, Identities, identities
from banyan.backends.legacy.db import REVOKED
from banyan.backends.legacy.state import STATE
from banyan.serving import serve

ALICE = Caller("u-1", "a@x.io", "A", 1)


def claims_of(sub: str, jti: str) -> tokens.Claims:
    now = int(time.time())
    return tokens.Claims(sub=sub, jti=jti, iat=now, exp=now + 60)


def test_kept_identities_are_found_until_they_expire() -> None:
    cache = Identities(ttl=60)
    cache.keep("j1", ALICE, cache.logouts)
    assert cache.get(claims_of("u-1", "j1")) == ALICE
    assert cache.get(claims_of("u-2", "j1")) is None  # never another user's, and forgotten
    assert len(cache) == 0
    stale = Identities(ttl=-1)
    stale.keep("j1", ALICE, stale.logouts)
    assert stale.get(claims_of("u-1", "j1")) is None and len(stale) == 0


def test_a_logout_forgets_and_a_lookup_under_way_is_not_kept() -> None:
    cache = Identities()
    cache.keep("j1", ALICE, cache.logouts)
    started = cache.logouts  # a lookup of j2 starts ...
    cache.forget("j1")  # ... a logout commits meanwhile ...
    cache.keep("j2", ALICE, started)  # ... so what it read is not kept
    assert cache.get(claims_of("u-1", "j1")) is None
    assert cache.get(claims_of("u-1", "j2")) is None


def test_the_cache_is_bounded() -> None:
    cache = Identities(max_entries=2)
    for jti in ("a", "b", "c"):
        cache.keep(jti, ALICE, cache.logouts)
    assert len(cache) == 2 and cache.get(claims_of("u-1", "a")) is None


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'legacy.db'}"


async def test_logout_is_immediate_and_a_replicas_revocation_is_seen_after_the_ttl(
    db_url: str,
) -> None:
    app = create_app(db_url)
    async with serve(app) as url, httpx.AsyncClient(base_url=url) as http:
        body = {"email": "r@x.io", "password": "password1", "name": "R"}
        token = (await http.post("/api/auth/register", json=body)).json()["token"]
        auth = {"Authorization": f"Bearer {token}"}
        assert (await http.get("/api/auth/me", headers=auth)).status_code == 200
        cache = identities(app[STATE])
        assert len(cache) == 1
        # another process on the same store revokes the token: seen once the entry expires
        cache.ttl = 0.05
        cache.forget(tokens.verify(token).jti)
        assert (await http.get("/api/auth/me", headers=auth)).status_code == 200
        async with app[STATE].db.engine.begin() as conn:
            jti = tokens.verify(token).jti
            await conn.execute(insert(REVOKED), {"jti": jti, "exp_ms": 2**40})
        await asyncio.sleep(0.06)
        refused = await http.get("/api/auth/me", headers=auth)
        assert refused.status_code == 401 and refused.json()["error"]["code"] == "token_revoked"
        # a logout here is seen at once, although the identity was just cached
        login = {"email": body["email"], "password": body["password"]}
        other = (await http.post("/api/auth/login", json=login)).json()["token"]
        auth = {"Authorization": f"Bearer {other}"}
        cache.ttl = 60
        assert (await http.get("/api/auth/me", headers=auth)).status_code == 200
        assert (await http.post("/api/auth/logout", headers=auth)).status_code == 204
        after = await http.get("/api/auth/me", headers=auth)
        assert after.status_code == 401 and after.json()["error"]["code"] == "token_revoked"
