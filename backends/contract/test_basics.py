"""Contract: health, unknown routes, wrong methods, and the proxy's headers."""

from __future__ import annotations

import re

import httpx
import pytest

from backends.contract.client import User, assert_error
from backends.contract.targets import Target

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_healthz_names_the_service(target: Target, anon: httpx.AsyncClient) -> None:
    if target.via_proxy:
        pytest.skip("/healthz through the proxy is the proxy's own health")
    response = await anon.get("/healthz")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["service"] in ("legacy", "new")
    if target.backend is not None:
        assert body["service"] == target.backend


async def test_readyz_once_migrated(target: Target, anon: httpx.AsyncClient) -> None:
    if target.via_proxy:
        pytest.skip("/readyz through the proxy is the proxy's own readiness")
    response = await anon.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {"status": "ready"}


async def test_unknown_route_is_404_json(user: User) -> None:
    assert_error(await user.client.get("/api/no-such-thing"), 404, "not_found")
    assert_error(await user.client.post("/api/folders/x/y/z", json={}), 404, "not_found")


async def test_wrong_method_is_405_json(user: User) -> None:
    assert_error(
        await user.client.put("/api/folders", json={"name": "x"}), 405, "method_not_allowed"
    )
    assert_error(await user.client.delete("/api/auth/me"), 405, "method_not_allowed")


async def test_proxy_marks_every_response(target: Target, user: User) -> None:
    if not target.via_proxy:
        pytest.skip("only responses through the proxy carry X-Banyan-* headers")
    for response in (
        await user.client.get("/api/auth/me"),
        await user.client.get("/api/no-such-thing"),
        await user.client.post("/api/folders", json={"name": "p"}),
    ):
        assert response.headers["X-Banyan-Backend"] == target.backend
        assert response.headers["X-Banyan-Feature"] == "api"
        assert re.fullmatch(r"[A-Za-z0-9._-]{8,}", response.headers["X-Request-Id"])


async def test_proxy_keeps_a_given_request_id(target: Target, user: User) -> None:
    if not target.via_proxy:
        pytest.skip("only the proxy promises X-Request-Id")
    response = await user.client.get("/api/auth/me", headers={"X-Request-Id": "contract-rid-42"})
    assert response.headers["X-Request-Id"] == "contract-rid-42"
