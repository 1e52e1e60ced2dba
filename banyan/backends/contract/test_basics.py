"""Contract: health, unknown routes, wrong methods, and the proxy's headers."""

from __future__ import annotations

import re

import httpx
import pytest

from banyan.backends.contract.client import User, assert_error
from banyan.backends.contract.targets import Target

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
    # The shadow targets run the repository's flags.yaml, whose features are named by area.
    features = ("auth", "-", "folders") if target.shadowed else ("api", "api", "api")
    for response, feature in zip(
        (
            await user.client.get("/api/auth/me"),
            await user.client.get("/api/no-such-thing"),
            await user.client.post("/api/folders", json={"name": "p"}),
        ),
        features,
        strict=True,
    ):
        assert response.headers["X-Banyan-Backend"] == target.backend
        assert response.headers["X-Banyan-Feature"] == feature
        assert re.fullmatch(r"[A-Za-z0-9._-]{8,}", response.headers["X-Request-Id"])


async def test_proxy_keeps_a_given_request_id(target: Target, user: User) -> None:
    if not target.via_proxy:
        pytest.skip("only the proxy promises X-Request-Id")
    response = await user.client.get("/api/auth/me", headers={"X-Request-Id": "contract-rid-42"})
    assert response.headers["X-Request-Id"] == "contract-rid-42"


async def test_idempotency_key_on_other_calls_is_ignored(user: User) -> None:
    """The write mirror sends a key with every write; calls that create nothing ignore it."""
    key = {"Idempotency-Key": "k-ignored-1"}
    folder = (await user.client.post("/api/folders", json={"name": "f"})).json()
    session = (await user.client.post("/api/sessions", json={"title": "t"})).json()
    sid, fid = session["id"], folder["id"]
    responses = [
        await user.client.get("/api/sessions", headers=key),
        await user.client.get(f"/api/sessions/{sid}", headers=key),
        await user.client.patch(f"/api/sessions/{sid}", json={"title": "u"}, headers=key),
        await user.client.put(f"/api/sessions/{sid}/context", json={"context": {}}, headers=key),
        await user.client.patch(f"/api/folders/{fid}", json={"name": "g"}, headers=key),
        await user.client.get("/api/folders", headers=key),
        await user.client.get("/api/auth/me", headers=key),
    ]
    assert [r.status_code for r in responses] == [200] * len(responses), responses[-1].text
    deleted = await user.client.delete(f"/api/sessions/{session['id']}", headers=key)
    assert deleted.status_code == 204
    deleted = await user.client.delete(f"/api/folders/{folder['id']}", headers=key)
    assert deleted.status_code == 204
