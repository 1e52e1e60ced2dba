"""Tests for banyan/proxy/admin_access.py: the admin route tables registered as they ship, each
route's call handing its handler the parts of the proxy read from the state at each call, every
route behind the access rules, and only the status page given the whole state. (That each call
hands a handler parts of the types it declares is mypy's to check, not a test's.)"""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import httpx
from aiohttp import web

from banyan.proxy import admin, mirror_admin, parity_admin
from banyan.proxy.admin_access import register
from banyan.proxy.flags import FlagStore
from banyan.proxy.settings import SETTINGS, Settings
from banyan.proxy.state import STATE, ProxyState
from banyan.serving import serve
from tests.proxy.conftest import ALL_LEGACY
from tests.proxy.upstreams import flags_yaml

TABLES = (admin.ROUTES, admin.NOISE_ROUTES, parity_admin.ROUTES, mirror_admin.ROUTES)
TOKEN = "admin-" + "k" * 40


def flag_store(folder: Path, legacy: str) -> FlagStore:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "flags.yaml"
    path.write_text(flags_yaml(legacy, "http://127.0.0.1:9", ALL_LEGACY))
    return FlagStore(path, watch=False)


def admin_app(state: ProxyState, settings: Settings | None = None) -> web.Application:
    app = web.Application()
    app[STATE] = state
    if settings is not None:
        app[SETTINGS] = settings
    for table in TABLES:
        register(app, STATE, table)
    return app


def concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "1", path)


async def test_a_route_gives_its_handler_the_part_in_the_state_at_each_call(
    tmp_path: Path,
) -> None:
    first_store = flag_store(tmp_path / "first", "http://127.0.0.1:7")
    state = ProxyState(flags_path=first_store.path, store=first_store)
    async with serve(admin_app(state)) as url, httpx.AsyncClient(base_url=url) as client:
        before = (await client.get("/_proxy/flags")).json()
        state.store = flag_store(tmp_path / "later", "http://127.0.0.1:8")  # replaced after start
        after = (await client.get("/_proxy/flags")).json()
        explained = await client.get("/_proxy/explain", params={"path": "/api/x"})
    assert before["backends"]["legacy"]["url"] == "http://127.0.0.1:7"
    assert after["backends"]["legacy"]["url"] == "http://127.0.0.1:8"
    assert after["digest"] == state.store.current.digest != before["digest"]
    assert explained.status_code == 200 and explained.json()["backend"] == "legacy"


async def test_every_route_is_behind_the_access_rules(tmp_path: Path) -> None:
    store = flag_store(tmp_path, "http://127.0.0.1:7")
    state = ProxyState(flags_path=store.path, store=store)
    routes = [route for table in TABLES for route in table]
    writes = [route for route in routes if route.write]
    assert {(r.method, r.path) for r in writes} >= {("PUT", "/_proxy/flags/{feature}")}
    async with serve(admin_app(state, Settings(admin_token=TOKEN))) as url:
        async with httpx.AsyncClient(base_url=url) as client:
            for route in routes:
                anonymous = await client.request(route.method, concrete(route.path))
                wrong = await client.request(
                    route.method, concrete(route.path), headers={"Authorization": "Bearer no"}
                )
                assert (anonymous.status_code, wrong.status_code) == (401, 401), route.path
            given = await client.delete(
                "/_proxy/parity/noise", headers={"Authorization": f"Bearer {TOKEN}"}
            )
    assert given.status_code == 404  # let through: the handler says parity is off
    assert given.json()["error"]["message"] == "parity is not enabled"
    flags_before = store.path.read_text()
    async with serve(admin_app(state)) as url, httpx.AsyncClient(base_url=url) as client:
        refused = [await client.request(r.method, concrete(r.path)) for r in writes]
        read = await client.get("/_proxy/flags")  # loopback reads need no token
    assert [r.status_code for r in refused] == [403] * len(writes)
    assert read.status_code == 200 and store.path.read_text() == flags_before


def test_only_the_status_page_takes_the_whole_state() -> None:
    whole = [route.path for table in TABLES for route in table if route.call is admin.status]
    assert whole == ["/_proxy/status"]
    takes_state = [
        f"{module.__name__}.{name}"
        for module in (admin, parity_admin, mirror_admin)
        for name, handler in vars(module).items()
        if inspect.iscoroutinefunction(handler)
        and handler.__module__ == module.__name__
        and any("ProxyState" in str(a) for a in inspect.get_annotations(handler).values())
    ]
    assert takes_state == ["banyan.proxy.admin.status"]
