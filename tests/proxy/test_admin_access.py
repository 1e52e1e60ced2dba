"""Tests for banyan/proxy/admin_access.py: each admin handler is given the parts of the proxy its
keyword-only parameters name, read from the state at each call; a name the state does not have
is refused when the table is registered."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web

from banyan.proxy import admin, mirror_admin, parity_admin
from banyan.proxy.admin_access import Route, parts_of, register
from banyan.proxy.flags import FlagStore
from banyan.proxy.hooks import ShadowHook
from banyan.proxy.state import STATE, ProxyState
from banyan.serving import serve
from tests.proxy.conftest import ALL_LEGACY
from tests.proxy.upstreams import flags_yaml

TABLES = (admin.ROUTES, admin.NOISE_ROUTES, parity_admin.ROUTES, mirror_admin.ROUTES)


def proxy_state(tmp_path: Path) -> ProxyState:
    path = tmp_path / "flags.yaml"
    path.write_text(flags_yaml("http://127.0.0.1:9", "http://127.0.0.1:9", ALL_LEGACY))
    return ProxyState(flags_path=path, store=FlagStore(path, watch=False))


async def test_a_handler_is_given_the_parts_it_names_at_each_call(tmp_path: Path) -> None:
    state = proxy_state(tmp_path)
    given: list[dict[str, Any]] = []

    async def seen(
        request: web.Request, *, store: FlagStore, shadow: ShadowHook | None
    ) -> web.Response:
        given.append({"store": store, "shadow": shadow})
        return web.Response(text="ok")

    app = web.Application()
    app[STATE] = state
    register(app, STATE, [Route("GET", "/_proxy/seen", seen)])
    async with serve(app) as url, httpx.AsyncClient(base_url=url) as client:
        first = await client.get("/_proxy/seen")
        later = FlagStore(state.flags_path, watch=False)
        state.store = later  # a part replaced after registration is what the next call gets
        second = await client.get("/_proxy/seen")
    assert first.status_code == second.status_code == 200
    assert given[0]["store"] is not later and given[1]["store"] is later
    assert [g["shadow"] for g in given] == [None, None]


def test_a_part_the_state_does_not_have_is_refused_at_registration() -> None:
    async def typo(request: web.Request, *, stor: FlagStore) -> web.Response:
        return web.Response()

    with pytest.raises(TypeError, match="typo: the proxy's state has no part 'stor'"):
        register(web.Application(), STATE, [Route("GET", "/_proxy/typo", typo)])


def test_only_the_status_page_takes_the_whole_state() -> None:
    whole = [r.path for table in TABLES for r in table if "state" in parts_of(r.handler)]
    assert whole == ["/_proxy/status"]
    named = {r.path: parts_of(r.handler) for table in TABLES for r in table}
    assert named["/_proxy/flags/{feature}"] == ("store", "flags_path", "control", "edits")
    assert named["/_proxy/mirror"] == ("mirror",)
    assert named["/_proxy/parity/examples/{id}/replay"] == ("shadow", "store")
