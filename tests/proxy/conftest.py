"""Fixtures for the proxy tests: two recording upstreams and a proxy in front of them."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import pytest
from aiohttp import web

from banyan.proxy.app import STATE, ProxyState, create_app
from banyan.serving import serve
from tests.proxy.fault_front import Fault, FaultFront
from tests.proxy.upstreams import Recorder, flags_yaml

ALL_LEGACY = """\
  api:
    routes: ["/api/**", "/ws/**", "/echo/**", "/upload", "/download", "/sse", "/ack",
             "/gzip", "/hop", "/slow", "/status/*", "/clock"]
    mode: legacy
"""


@dataclass
class Stack:
    url: str
    flags: Path
    legacy: Recorder
    new: Recorder
    state: ProxyState
    legacy_url: str
    new_url: str

    def write_flags(self, features: str, extra: str = "") -> None:
        tmp = self.flags.with_suffix(".tmp")
        tmp.write_text(flags_yaml(self.legacy_url, self.new_url, features, extra))
        tmp.replace(self.flags)


@pytest.fixture
def make_stack(tmp_path: Path) -> Callable[..., Any]:
    @asynccontextmanager
    async def factory(
        features: str = ALL_LEGACY, extra: str = "", **kwargs: Any
    ) -> AsyncIterator[Stack]:
        legacy, new = Recorder("legacy"), Recorder("new")
        async with serve(legacy.app) as legacy_url, serve(new.app) as new_url:
            flags = tmp_path / "flags.yaml"
            flags.write_text(flags_yaml(legacy_url, new_url, features, extra))
            kwargs.setdefault("health_interval", 0.2)
            app = create_app(flags, **kwargs)
            async with serve(app) as url:
                yield Stack(url, flags, legacy, new, app[STATE], legacy_url, new_url)

    return factory


@asynccontextmanager
async def real_backends_behind_proxy(
    tmp_path: Path,
    flags_template: str,
    *,
    shadow: Any = None,
    new_env: Mapping[str, str] | None = None,
    **fields: str,
) -> AsyncIterator[dict[str, str]]:
    """The real legacy and new backends (SQLite under ``tmp_path``) behind a real proxy whose flag
    file is ``flags_template`` filled with their URLs (and ``fields``), with ``shadow`` as its
    parity side if given; yields the base URLs by name: ``proxy``, ``legacy``, ``new``. New's app
    is made with ``new_env`` over the environment (another model server, say)."""
    from banyan.backends.contract.targets import environment
    from banyan.backends.legacy.app import create_app as legacy_app
    from banyan.backends.new.app import create_app as new_app

    legacy = legacy_app(f"sqlite+aiosqlite:///{tmp_path / 'legacy.db'}")
    with environment(new_env or {}):
        new = new_app(f"sqlite+aiosqlite:///{tmp_path / 'new.db'}")
    async with serve(legacy) as legacy_url, serve(new) as new_url:
        flags = tmp_path / "flags.yaml"
        flags.write_text(flags_template.format(legacy=legacy_url, new=new_url, **fields))
        async with serve(create_app(flags, access_log=False, shadow=shadow)) as proxy_url:
            yield {"proxy": proxy_url, "legacy": legacy_url, "new": new_url}


@asynccontextmanager
async def real_backends_new_behind_faults(
    tmp_path: Path, features: str, faults: list[Fault], *, shadow: Any = None
) -> AsyncIterator[tuple[web.Application, FaultFront, httpx.AsyncClient]]:
    """The real legacy and new backends, new behind a :class:`FaultFront` applying ``faults``, and
    a real proxy whose flag file holds ``features`` (:func:`flags_yaml`), with ``shadow`` (by
    default the environment's); yields the proxy's app, the front and a client of the proxy."""
    from banyan.backends.legacy.app import create_app as legacy_app
    from banyan.backends.new.app import create_app as new_app
    from banyan.proxy.shadow import shadow_from_env

    async with (
        serve(legacy_app(f"sqlite+aiosqlite:///{tmp_path / 'legacy.db'}")) as legacy_url,
        serve(new_app(f"sqlite+aiosqlite:///{tmp_path / 'new.db'}")) as new_url,
    ):
        front = FaultFront(new_url, faults)
        async with serve(front.app) as front_url:
            flags = tmp_path / "flags.yaml"
            flags.write_text(flags_yaml(legacy_url, front_url, features))
            shadow = shadow if shadow is not None else shadow_from_env(flags)
            app = create_app(flags, access_log=False, shadow=shadow)
            async with serve(app) as proxy_url, httpx.AsyncClient(base_url=proxy_url) as http:
                yield app, front, http


async def tutor_session_of(http: httpx.AsyncClient, email: str) -> tuple[str, dict[str, str], str]:
    """Register ``email`` through ``http`` and open a study session: (token, auth headers, id)."""
    body = {"email": email, "password": "password-1", "name": "T"}
    token = (await http.post("/api/auth/register", json=body)).json()["token"]
    auth = {"Authorization": f"Bearer {token}"}
    session = (await http.post("/api/sessions", json={"title": "t"}, headers=auth)).json()
    return token, auth, session["id"]


async def tutor_turn(ws: aiohttp.ClientWebSocketResponse, text: str) -> dict[str, Any]:
    """Ask ``text`` over a tutor socket; its ``done`` frame (the stored question and answer)."""
    await ws.send_json({"type": "ask", "text": text})
    while True:
        frame: dict[str, Any] = await ws.receive_json(timeout=10)
        if frame["type"] == "done":
            return frame
        assert frame["type"] == "token", frame


async def stored_messages(
    base_url: str, session_id: str, auth: dict[str, str], at_least: int
) -> list[tuple[str, str]]:
    """(role, content) of a session's messages on one backend, read directly, once it holds
    ``at_least`` of them (the mirror queue retries with backoff while earlier writes land), or
    what it holds after 30 s."""
    items: list[dict[str, Any]] = []
    async with httpx.AsyncClient(base_url=base_url, timeout=10) as direct:
        for _ in range(600):
            got = await direct.get(f"/api/sessions/{session_id}/messages", headers=auth)
            items = got.json().get("items", []) if got.status_code == 200 else []
            if len(items) >= at_least:
                break
            await asyncio.sleep(0.05)
    return [(m["role"], m["content"]) for m in items]


def turn_messages(*turns: dict[str, Any]) -> list[tuple[str, str]]:
    """(role, content) of the question and answer of each ``done`` frame, in order."""
    return [(m["role"], m["content"]) for t in turns for m in (t["question"], t["answer"])]
