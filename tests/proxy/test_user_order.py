"""A user's mirrored writes keep the user's order across features, and none depends on the user's
token still being valid when it is delivered: create-then-logout, 100 users in a row, in shadow
and in canary, leaves every record on both stores (banyan/proxy/mirror.py lanes,
banyan/proxy/write_mirror.py ``enqueue``, the stamps of banyan/proxy/stamping.py).

Real parts: both backends on SQLite behind the real proxy (mirror queue, shadow and its copy
sender); the stores are compared by ``banyan data verify``'s own ``verify``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from banyan.backends.datatools.verify import verify
from banyan.backends.legacy.app import create_app as legacy_app
from banyan.backends.new.app import create_app as new_app
from banyan.proxy.app import STATE, ProxyState, create_app
from banyan.proxy.shadow import shadow_from_env
from banyan.serving import serve

# The shipped account features (logout always, on legacy; register mirrored; auth skip) and
# sessions, the feature on the move, with writes mirrored.
FLAGS = """\
version: 1
backends:
  legacy: {legacy}
  new: {new}
features:
  logout:
    routes: ["/api/auth/logout"]
    mode: legacy
    writes: always
  register:
    routes: ["/api/auth/register"]
    mode: legacy
    writes: mirror
  auth:
    routes: ["/api/auth/**"]
    mode: legacy
    writes: skip
  sessions:
    routes: ["/api/sessions/**"]
    {sessions}
    writes: mirror
    stick_by: user
    parity: {{sample: 50}}
default: legacy
"""
USERS = 100
SESSIONS = 3


async def _settled(state: ProxyState) -> None:
    assert state.mirror is not None
    quiet = 0
    for _ in range(1200):
        stats = await state.mirror.stats()
        shadow: Any = state.shadow
        busy = stats.pending or (shadow is not None and shadow.inflight)
        quiet = 0 if busy else quiet + 1
        if quiet >= 5:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"still pending: {await state.mirror.stats()}")


@pytest.fixture(params=["mode: shadow", "mode: canary\n    percent: 50"], ids=["shadow", "canary"])
async def stack(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[tuple[str, ProxyState, dict[str, str]]]:
    stores = {
        "legacy": f"sqlite+aiosqlite:///{tmp_path / 'legacy.db'}",
        "new": f"sqlite+aiosqlite:///{tmp_path / 'new.db'}",
    }
    async with (
        serve(legacy_app(stores["legacy"])) as legacy_url,
        serve(new_app(stores["new"])) as new_url,
    ):
        flags = tmp_path / "flags.yaml"
        flags.write_text(FLAGS.format(legacy=legacy_url, new=new_url, sessions=request.param))
        app = create_app(flags, access_log=False, shadow=shadow_from_env(flags))
        async with serve(app) as proxy_url:
            yield proxy_url, app[STATE], stores


async def test_create_then_logout_loses_nothing(
    stack: tuple[str, ProxyState, dict[str, str]],
) -> None:
    proxy_url, state, stores = stack
    made: list[str] = []
    async with httpx.AsyncClient(base_url=proxy_url, timeout=30) as http:
        for number in range(USERS):
            body = {"email": f"u{number}@example.com", "password": "password-1", "name": "U"}
            registered = await http.post("/api/auth/register", json=body)
            assert registered.status_code == 201, registered.text
            auth = {"Authorization": f"Bearer {registered.json()['token']}"}
            for index in range(SESSIONS):
                created = await http.post(
                    "/api/sessions", json={"title": f"s{index}"}, headers=auth
                )
                assert created.status_code == 201, created.text
                made.append(created.json()["id"])
            logged_out = await http.post("/api/auth/logout", headers=auth)  # at once
            assert logged_out.status_code == 204, logged_out.text
    await _settled(state)
    assert state.mirror is not None
    stats = await state.mirror.stats()
    assert stats.dead == 0, await state.mirror.dead_letters()
    reports = {r.table: r for r in await verify(stores["legacy"], stores["new"])}
    sessions = reports["study_sessions->sessions"]
    assert sessions.legacy_rows == sessions.new_rows == len(made) == USERS * SESSIONS
    assert reports["users"].matched == USERS
    assert reports["revoked_tokens"].matched == USERS  # every logout held on both stores
    assert sum(r.difference_count for r in reports.values()) == 0


@pytest.mark.parametrize("logout", ["legacy", "new"])
async def test_a_logout_never_overtakes_the_users_read_copies(tmp_path: Path, logout: str) -> None:
    """Read, then log out at once, in shadow with every read compared: the logout's mirrored
    write waits for the user's read copies still on their way, so no copy meets a revoked token
    on the candidate (each was once reported as a 401-for-200 mismatch, and tripped the guard).
    With ``logout`` already on new, the logout itself is sent to the candidate: it waits for
    those copies the same way (a feature moved by hand while another is shadowed)."""
    stores = {
        "legacy": f"sqlite+aiosqlite:///{tmp_path / 'legacy.db'}",
        "new": f"sqlite+aiosqlite:///{tmp_path / 'new.db'}",
    }
    async with (
        serve(legacy_app(stores["legacy"])) as legacy_url,
        serve(new_app(stores["new"])) as new_url,
    ):
        flags = tmp_path / "flags.yaml"
        text = FLAGS.format(legacy=legacy_url, new=new_url, sessions="mode: shadow")
        text = text.replace(
            "mode: legacy\n    writes: always", f"mode: {logout}\n    writes: always"
        )
        flags.write_text(text.replace("sample: 50", "sample: 100"))
        app = create_app(flags, access_log=False, shadow=shadow_from_env(flags))
        async with serve(app) as proxy_url, httpx.AsyncClient(base_url=proxy_url) as http:
            state = app[STATE]
            for number in range(30):
                body = {"email": f"r{number}@example.com", "password": "password-1", "name": "R"}
                registered = await http.post("/api/auth/register", json=body)
                auth = {"Authorization": f"Bearer {registered.json()['token']}"}
                created = await http.post("/api/sessions", json={"title": "t"}, headers=auth)
                session = created.json()["id"]
                for _ in range(3):
                    read = await http.get(f"/api/sessions/{session}", headers=auth)
                    assert read.status_code == 200, read.text
                logged_out = await http.post("/api/auth/logout", headers=auth)
                assert logged_out.status_code == 204, logged_out.text
            await _settled(state)
            shadow: Any = state.shadow
            await shadow.recorder.flush()
            summary = await shadow.recorder.store.summary()
    (sessions,) = [f for f in summary["features"] if f["feature"] == "sessions"]
    assert sessions["compared"] >= 90
    assert sessions["mismatched"] == 0, sessions["endpoints"]
