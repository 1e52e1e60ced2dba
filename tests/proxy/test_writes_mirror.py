"""``writes: mirror`` in every mode, ``legacy`` included, and registration kept in step: both
stores hold every record whichever backend served it, so ``banyan data verify`` finds zero
differences after every flip (banyan/proxy/http_path.py ``mirror_target``, the shipped
``register`` feature of flags.yaml).

Real parts: both backends on SQLite behind the real proxy (mirror queue, shadow with its copy
sender); users are driven through the proxy with httpx; the stores are compared by the same
``verify`` the ``banyan data verify`` command runs.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from banyan.backends.datatools.cli import main as data_main
from banyan.backends.datatools.verify import verify
from banyan.backends.legacy.app import create_app as legacy_app
from banyan.backends.new.app import create_app as new_app
from banyan.proxy.app import STATE, ProxyState, create_app
from banyan.proxy.flags import load_flags
from banyan.proxy.shadow import shadow_from_env
from banyan.serving import serve

REPO_FLAGS = Path(__file__).resolve().parents[2] / "flags.yaml"

# The shipped arrangement of the account routes (register mirrored, logout always, auth skip)
# with two data features mirrored; every feature takes the step's mode.
FLAGS = """\
version: 1
backends:
  legacy: {legacy}
  new: {new}
features:
  logout:
    routes: ["/api/auth/logout"]
    mode: {mode}
    writes: always
  register:
    routes: ["/api/auth/register"]
    mode: {mode}
    writes: mirror
  auth:
    routes: ["/api/auth/**"]
    mode: {mode}
    writes: skip
  folders:
    routes: ["/api/folders/**"]
    mode: {mode}
    writes: mirror
  sessions:
    routes: ["/api/sessions/**"]
    mode: {mode}
    stick_by: user
    writes: mirror
default: legacy
"""
PASSWORD = "password-1"


@dataclass
class Stack:
    proxy: str
    backends: dict[str, str]
    stores: dict[str, str]
    state: ProxyState
    flags: Path
    urls: dict[str, str]

    def flip(self, mode: str) -> None:
        """Every feature to ``mode`` (``canary`` at 50%), applied before the next request."""
        tail = "\n    percent: 50" if mode == "canary" else ""
        text = FLAGS.replace("mode: {mode}", "mode: {mode}" + tail)
        self.flags.write_text(text.format(mode=mode, **self.urls))
        self.state.store.reload_now()  # False when the file already says so
        assert {f.mode for f in self.state.flags.features} == {mode}

    async def settled(self) -> None:
        """Wait until no copy or mirror write is on its way any more."""
        assert self.state.mirror is not None
        quiet = 0
        for _ in range(600):
            stats = await self.state.mirror.stats()
            shadow: Any = self.state.shadow
            busy = stats.pending or (shadow is not None and shadow.inflight)
            quiet = 0 if busy else quiet + 1
            if quiet >= 3:
                assert stats.dead == 0, await self.state.mirror.dead_letters()
                return
            await asyncio.sleep(0.05)
        raise AssertionError("mirror writes still pending")

    async def differences(self) -> int:
        await self.settled()
        reports = await verify(self.stores["legacy"], self.stores["new"])
        return sum(r.difference_count for r in reports)


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[Stack]:
    stores = {
        "legacy": f"sqlite+aiosqlite:///{tmp_path / 'legacy.db'}",
        "new": f"sqlite+aiosqlite:///{tmp_path / 'new.db'}",
    }
    async with (
        serve(legacy_app(stores["legacy"])) as legacy_url,
        serve(new_app(stores["new"])) as new_url,
    ):
        urls = {"legacy": legacy_url, "new": new_url}
        flags = tmp_path / "flags.yaml"
        flags.write_text(FLAGS.format(mode="legacy", **urls))
        app = create_app(flags, access_log=False, shadow=shadow_from_env(flags))
        async with serve(app) as proxy_url:
            yield Stack(proxy_url, urls, stores, app[STATE], flags, urls)


async def _ok(answer: Any, status: int) -> Any:
    response = await answer
    assert response.status_code == status, (response.request.url, response.text)
    return response.json() if response.content else None


@dataclass
class User:
    email: str
    auth: dict[str, str]
    folder: str = ""
    sessions: list[str] | None = None


async def _register(http: httpx.AsyncClient, email: str) -> User:
    body = {"email": email, "password": PASSWORD, "name": email.split("@")[0]}
    made = await _ok(http.post("/api/auth/register", json=body), 201)
    return User(email, {"Authorization": f"Bearer {made['token']}"}, sessions=[])


async def _work(http: httpx.AsyncClient, user: User, step: str) -> None:
    """A user's writes of one step: folders, sessions, their context and messages."""
    auth = user.auth
    if not user.folder:
        folder = await _ok(http.post("/api/folders", json={"name": step}, headers=auth), 201)
        user.folder = folder["id"]
    else:
        await _ok(http.patch(f"/api/folders/{user.folder}", json={"name": step}, headers=auth), 200)
    body = {"title": step, "folder_id": user.folder}
    session = await _ok(http.post("/api/sessions", json=body, headers=auth), 201)
    assert user.sessions is not None
    user.sessions.append(session["id"])
    path = f"/api/sessions/{session['id']}"
    message = {"role": "user", "content": f"hello from {step}"}
    await _ok(http.post(f"{path}/messages", json=message, headers=auth), 201)
    await _ok(http.put(f"{path}/context", json={"context": {"step": step}}, headers=auth), 200)
    if len(user.sessions) > 1:
        first = user.sessions[0]
        await _ok(http.patch(f"/api/sessions/{first}", json={"title": step}, headers=auth), 200)
    if len(user.sessions) > 2:
        await _ok(http.delete(f"/api/sessions/{user.sessions.pop(1)}", headers=auth), 204)


async def _relogin(http: httpx.AsyncClient, user: User) -> None:
    """Log out (on both stores), then log in again with a fresh token."""
    await _ok(http.post("/api/auth/logout", headers=user.auth), 204)
    body = {"email": user.email, "password": PASSWORD}
    made = await _ok(http.post("/api/auth/login", json=body), 200)
    user.auth = {"Authorization": f"Bearer {made['token']}"}


async def test_in_legacy_mode_writes_reach_new_too(stack: Stack) -> None:
    """Legacy serves; new receives every write (registration included), at the same times."""
    async with httpx.AsyncClient(base_url=stack.proxy, timeout=30) as http:
        user = await _register(http, "early@example.com")
        await _work(http, user, "legacy")
        answered = await _ok(http.get("/api/sessions", headers=user.auth), 200)
    await stack.settled()
    async with httpx.AsyncClient(base_url=stack.backends["new"], timeout=30) as new:
        on_new = await _ok(new.get("/api/sessions", headers=user.auth), 200)
        me = await _ok(new.get("/api/auth/me", headers=user.auth), 200)
    assert on_new == answered and me["user"]["email"] == "early@example.com"
    assert await stack.differences() == 0


async def test_verify_finds_nothing_after_every_flip(
    stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    """Users register, write, log out and in while every feature goes legacy -> shadow -> canary
    50 -> new -> legacy; after each step the two stores are the same, times included."""
    users: list[User] = []
    async with httpx.AsyncClient(base_url=stack.proxy, timeout=30) as http:
        for number, mode in enumerate(["legacy", "shadow", "canary", "new", "legacy"]):
            stack.flip(mode)
            users += [await _register(http, f"u{number}-{i}@example.com") for i in range(3)]
            for user in users:
                await _work(http, user, f"{mode}-{number}")
            await _relogin(http, users[number])
            for user in users:  # every user reads what they wrote, whoever serves them now
                listed = await _ok(http.get("/api/sessions", headers=user.auth), 200)
                assert {s["id"] for s in listed["items"]} == set(user.sessions or [])
            assert await stack.differences() == 0, f"after {mode}"
    both = ["--legacy", stack.stores["legacy"], "--new", stack.stores["new"]]
    assert await asyncio.to_thread(data_main, ["verify", *both]) == 0
    assert "stores match" in capsys.readouterr().out
    reports = {r.table: r for r in await verify(stack.stores["legacy"], stack.stores["new"])}
    assert reports["users"].matched == len(users) == 15


def test_the_shipped_flags_mirror_registration_in_every_mode() -> None:
    flags = load_flags(REPO_FLAGS)
    register = flags.feature("register")
    assert register is not None and register.writes == "mirror"
    assert tuple(register.routes) == ("/api/auth/register",)
    names = [f.name for f in flags.features]
    assert names.index("register") < names.index("auth")  # the first matching route wins
    auth = flags.feature("auth")
    assert auth is not None and auth.writes == "skip"  # a login is never replayed
