"""Tests of banyan/proxy/stamping.py and the stamps the proxy sends: one time for a write on the
primary, its shadow copy and its mirror deliveries (retries included); a client's stamp never
reaches a backend.

Real parts: both backends on SQLite behind the real proxy (its mirror queue, and its shadow for
the copies); records are read from each backend directly.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import jwt

from banyan import stamps
from banyan.backends.common import tokens
from banyan.proxy.settings import Settings
from banyan.proxy.shadow import shadow_from_env
from banyan.proxy.stamping import Stamper, WriteStamp, acting_user, origin_form
from tests.proxy.conftest import real_backends_behind_proxy

USER = "0b7c1e6f-4b1a-5d8e-9a35-62616e79616e"

FLAGS = """\
version: 1
backends:
  legacy: {legacy}
  new: {new}
features:
  auth:
    routes: ["/api/auth/**"]
    mode: {auth_mode}
    writes: {auth_writes}
  sessions:
    routes: ["/api/sessions/**"]
    mode: {mode}
    writes: mirror
    parity: {{sample: 100}}
default: legacy
"""


def test_a_write_takes_one_time_and_signs_it_per_target() -> None:
    stamper = Stamper("s" * 40, clock=lambda: 1_700_000_000_123)
    assert stamper.take("GET", "k", USER) is None  # reads are never stamped
    stamp = stamper.take("post", "k", USER)
    assert stamp == WriteStamp(1_700_000_000_123, "POST", "k", USER)
    primary = stamper.value(stamp, "/api/x?a=1", mirror=False)
    copy = stamper.value(stamp, "/api/x?a=1", mirror=True)
    assert primary is not None and copy is not None
    read = stamps.read_stamp(
        copy, secret="s" * 40, method="POST", target="/api/x?a=1", key="k", now_ms=0
    )
    assert read is not None and read.ms == stamp.ms and read.user == USER and read.mirror
    read = stamps.read_stamp(
        primary,
        secret="s" * 40,
        method="POST",
        target="/api/x?a=1",
        key="k",
        now_ms=stamp.ms,
    )
    assert read is not None and read.kind == "primary" and read.user is None
    assert stamper.line(None, b"/x", mirror=False) == b""
    line = stamper.line(stamp, b"/api/x?a=1", mirror=True)
    assert line == f"X-Banyan-Stamp: {copy}\r\n".encode()


def test_no_secret_no_stamps_and_only_uuid_users() -> None:
    assert Stamper(None).take("POST", "k", USER) is None
    assert Stamper("").enabled is False
    unsigned = Stamper(None).value(WriteStamp(1, "POST", "k", None), "/x", mirror=True)
    assert unsigned is None
    assert Stamper(None).line(WriteStamp(1, "POST", "k", None), b"/x", mirror=True) == b""
    assert acting_user(USER) == USER
    assert acting_user("alice") is None and acting_user(USER.upper()) is None
    assert acting_user(None) is None
    stamp = Stamper("s" * 40).take("DELETE", "k", "alice")
    assert stamp is not None and stamp.user is None  # a token naming no user id: nobody


def test_absolute_targets_are_signed_in_origin_form() -> None:
    assert origin_form(b"/a/b?c=1") == "/a/b?c=1"
    assert origin_form(b"http://h:1/a?b") == "/a?b"
    assert origin_form(b"http://h:1?b=2") == "/?b=2"
    assert origin_form(b"http://h:1") == "/"
    assert origin_form(b"*") == "*"


async def _register(http: httpx.AsyncClient, email: str) -> tuple[str, dict[str, str]]:
    body = {"email": email, "password": "password-1", "name": "S"}
    answer = await http.post("/api/auth/register", json=body)
    assert answer.status_code == 201, answer.text
    token = answer.json()["token"]
    return token, {"Authorization": f"Bearer {token}"}


async def _read(base: str, path: str, auth: dict[str, str], tries: int = 300) -> Any:
    """A record read from one backend directly, once it is there."""
    async with httpx.AsyncClient(base_url=base, timeout=10) as direct:
        for _ in range(tries):
            got = await direct.get(path, headers=auth)
            if got.status_code == 200:
                return got.json()
            await asyncio.sleep(0.05)
    raise AssertionError(f"{path} never appeared on {base}")


async def test_a_client_stamp_is_dropped_and_the_proxy_stamps_the_primary(tmp_path: Path) -> None:
    fields = {"mode": "legacy", "auth_mode": "legacy", "auth_writes": "skip"}
    async with real_backends_behind_proxy(tmp_path, FLAGS, **fields) as urls:
        async with httpx.AsyncClient(base_url=urls["proxy"], timeout=10) as http:
            _, auth = await _register(http, "forger@example.com")
            # a stamp the client made up (even one signed with a guessed secret) never arrives:
            # a backend would answer it 400 invalid_stamp
            forged = stamps.make_stamp(
                secret="x" * 40, method="POST", target="/api/sessions", key="k1", ms=1
            )
            answer = await http.post(
                "/api/sessions",
                json={"title": "t"},
                headers={**auth, "Idempotency-Key": "k1", stamps.HEADER: forged},
            )
            assert answer.status_code == 201, answer.text
            # a stamp from the distant past would be refused (expired) if it got through
            genuine_but_old = stamps.make_stamp(
                secret=tokens.secret(), method="POST", target="/api/sessions", key="k2", ms=1
            )
            answer = await http.post(
                "/api/sessions",
                json={"title": "u"},
                headers={**auth, "Idempotency-Key": "k2", stamps.HEADER: genuine_but_old},
            )
            assert answer.status_code == 201, answer.text
            created = answer.json()["created_at"]
            assert not created.startswith("1970"), created


async def test_a_mirror_retry_carries_the_write_s_original_time(tmp_path: Path) -> None:
    """On new with ``writes: mirror``, a session is mirrored to legacy, where its user does not
    exist yet (registration was not mirrored): the delivery is refused and retried with backoff
    until the user registers there. The session then lands on legacy with new's times."""
    fields = {"mode": "new", "auth_mode": "new", "auth_writes": "skip"}
    async with real_backends_behind_proxy(tmp_path, FLAGS, **fields) as urls:
        async with httpx.AsyncClient(base_url=urls["proxy"], timeout=10) as http:
            _, auth = await _register(http, "late@example.com")
            created = await http.post("/api/sessions", json={"title": "kept in step"}, headers=auth)
            assert created.status_code == 201, created.text
            session_id = created.json()["id"]
            await asyncio.sleep(0.3)  # a few refused deliveries, each later than the write
            async with httpx.AsyncClient(base_url=urls["legacy"], timeout=10) as legacy:
                body = {"email": "late@example.com", "password": "password-1", "name": "S"}
                assert (await legacy.post("/api/auth/register", json=body)).status_code == 201
            on_new = await _read(urls["new"], f"/api/sessions/{session_id}", auth)
            on_legacy = await _read(urls["legacy"], f"/api/sessions/{session_id}", auth)
    assert on_legacy["created_at"] == on_new["created_at"]
    assert on_legacy["updated_at"] == on_new["updated_at"]
    assert on_legacy == on_new


async def test_a_shadow_copy_is_written_at_the_primary_s_time(tmp_path: Path) -> None:
    fields = {"mode": "shadow", "auth_mode": "shadow", "auth_writes": "mirror"}
    shadow = shadow_from_env(tmp_path / "flags.yaml")
    async with real_backends_behind_proxy(tmp_path, FLAGS, shadow=shadow, **fields) as urls:
        async with httpx.AsyncClient(base_url=urls["proxy"], timeout=10) as http:
            token, auth = await _register(http, "copy@example.com")
            await _read(urls["new"], "/api/auth/me", auth)  # the registration's copy landed
            ids = []
            for title in ("a", "b", "c"):
                answer = await http.post("/api/sessions", json={"title": title}, headers=auth)
                assert answer.status_code == 201, answer.text
                ids.append(answer.json()["id"])
            for session_id in ids:
                on_legacy = await _read(urls["legacy"], f"/api/sessions/{session_id}", auth)
                on_new = await _read(urls["new"], f"/api/sessions/{session_id}", auth)
                assert on_new == on_legacy
            # the registration's copy was stamped too: the user was created at the same time
            me_legacy = await _read(urls["legacy"], "/api/auth/me", auth)
            me_new = await _read(urls["new"], "/api/auth/me", auth)
    assert me_legacy == me_new
    assert me_new["user"]["created_at"] == me_legacy["user"]["created_at"]
    assert jwt.decode(token, options={"verify_signature": False})["sub"] == me_new["user"]["id"]


async def test_a_mirrored_write_acts_for_its_user_after_a_logout_there(tmp_path: Path) -> None:
    """A mirror delivery acts for the user its stamp names: a create mirrored to a store where the
    user's token was already logged out is accepted there (the stamp vouches for the user)."""
    fields = {"mode": "new", "auth_mode": "new", "auth_writes": "skip"}
    async with real_backends_behind_proxy(tmp_path, FLAGS, **fields) as urls:
        async with httpx.AsyncClient(base_url=urls["proxy"], timeout=10) as http:
            _, auth = await _register(http, "gone@example.com")
            async with httpx.AsyncClient(base_url=urls["legacy"], timeout=10) as legacy:
                body = {"email": "gone@example.com", "password": "password-1", "name": "S"}
                assert (await legacy.post("/api/auth/register", json=body)).status_code == 201
                # the token new minted is logged out on legacy (as a mirrored logout would)
                assert (await legacy.post("/api/auth/logout", headers=auth)).status_code == 204
                assert (await legacy.get("/api/auth/me", headers=auth)).status_code == 401
            created = await http.post("/api/sessions", json={"title": "x"}, headers=auth)
            assert created.status_code == 201, created.text
            session_id = created.json()["id"]
            fresh = await legacy_login(urls["legacy"], "gone@example.com")
            on_legacy = await _read(urls["legacy"], f"/api/sessions/{session_id}", fresh)
            on_new = await _read(urls["new"], f"/api/sessions/{session_id}", auth)
    assert on_legacy == on_new


async def legacy_login(base: str, email: str) -> dict[str, str]:
    async with httpx.AsyncClient(base_url=base, timeout=10) as direct:
        answer = await direct.post(
            "/api/auth/login", json={"email": email, "password": "password-1"}
        )
        assert answer.status_code == 200, answer.text
        return {"Authorization": f"Bearer {answer.json()['token']}"}


def test_the_secret_comes_from_the_environment() -> None:
    secret = Settings.from_env({"BANYAN_JWT_SECRET": "e" * 40}).stamp_secret
    assert Stamper.configured(secret).secret == "e" * 40
    unset = Settings.from_env({}).stamp_secret
    assert not Stamper.configured(unset).enabled  # logged as stamps_disabled; the proxy still runs
