"""Tests for banyan/proxy/admin.py: status, flags, PUT, explain, metrics, audit and access rules."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from banyan.ports import free_port


async def test_status_reports_flags_features_and_backends(make_stack: Any) -> None:
    async with make_stack() as stack, httpx.AsyncClient(base_url=stack.url) as client:
        dead = f"http://127.0.0.1:{free_port()}"
        stack.flags.write_text(stack.flags.read_text().replace(stack.new_url, dead))
        assert stack.state.store.reload_now()
        await client.get("/api/x")
        for _ in range(50):
            status = (await client.get("/_proxy/status")).json()
            if status["backends"].get("new", {}).get("healthy") is False:
                break
            await asyncio.sleep(0.05)
        assert status["flags"]["digest"] == stack.state.flags.digest
        assert status["flags"]["last_error"] is None
        assert status["features"]["api"]["mode"] == "legacy"
        assert status["features"]["api"]["requests"]["legacy"] >= 1
        assert status["backends"]["legacy"]["url"] == stack.legacy_url
        assert (
            status["backends"]["new"]["healthy"] is False
        )  # test upstream answers /healthz with echo? no: 200
        # (the recording upstream answers any path, so /healthz is 200 -> healthy)


async def test_healthz_and_readyz_are_the_proxys_own(make_stack: Any) -> None:
    async with make_stack() as stack, httpx.AsyncClient(base_url=stack.url) as client:
        health = await client.get("/healthz")
        ready = await client.get("/readyz")
    assert health.json() == {"status": "ok", "service": "proxy"}
    assert ready.json() == {"status": "ready"}
    assert [r for r in stack.legacy.requests if "x-forwarded-for" in r["headers"]] == []


async def test_explain_flags_and_unknown(make_stack: Any) -> None:
    async with make_stack() as stack, httpx.AsyncClient(base_url=stack.url) as client:
        explained = (await client.get("/_proxy/explain", params={"path": "/api/sessions"})).json()
        missing = await client.get("/_proxy/explain")
        flags = (await client.get("/_proxy/flags")).json()
        nothing = await client.get("/_proxy/nope")
    assert explained["feature"] == "api" and explained["backend"] == "legacy"
    assert "mode legacy" in explained["reason"]
    assert missing.status_code == 400
    assert (
        flags["features"]["api"]["mode"] == "legacy" and flags["digest"] == stack.state.flags.digest
    )
    assert nothing.status_code == 404 and nothing.json()["error"]["code"] == "not_found"


async def test_metrics_are_prometheus_text(make_stack: Any) -> None:
    async with make_stack() as stack, httpx.AsyncClient(base_url=stack.url) as client:
        await client.get("/api/x")
        await client.get("/status/500")
        text = (await client.get("/_proxy/metrics")).text
    assert "# TYPE banyan_requests_total counter" in text
    assert 'banyan_requests_total{feature="api",backend="legacy",status="200"} 1' in text
    assert 'banyan_requests_total{feature="api",backend="legacy",status="500"} 1' in text
    assert 'banyan_request_duration_seconds_count{feature="api",backend="legacy"} 2' in text
    assert f'banyan_flags_info{{digest="{stack.state.flags.digest}"}} 1' in text
    assert "banyan_mirror_writes" in text


async def test_writes_need_the_token(make_stack: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    async with make_stack() as stack, httpx.AsyncClient(base_url=stack.url) as client:
        refused = await client.put("/_proxy/flags/api", json={"mode": "new"})
        assert refused.status_code == 403
        monkeypatch.setenv("BANYAN_ADMIN_TOKEN", "s3cret")  # read once, when a proxy starts
        assert (await client.put("/_proxy/flags/api", json={"mode": "new"})).status_code == 403
    async with make_stack() as stack, httpx.AsyncClient(base_url=stack.url) as client:
        anonymous = await client.get("/_proxy/status")
        wrong = await client.get("/_proxy/status", headers={"Authorization": "Bearer nope"})
        auth = {"Authorization": "Bearer s3cret"}
        assert anonymous.status_code == 401 and wrong.status_code == 401
        assert (await client.get("/_proxy/status", headers=auth)).status_code == 200
        changed = await client.put("/_proxy/flags/api", json={"mode": "new"}, headers=auth)
        assert changed.status_code == 200 and changed.json()["settings"]["mode"] == "new"
        assert "mode: new" in stack.flags.read_text()
        assert (await client.get("/api/x")).headers["x-banyan-backend"] == "new"
        bad = await client.put("/_proxy/flags/api", json={"mode": "sideways"}, headers=auth)
        assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_flags"
        assert (
            await client.put("/_proxy/flags/zzz", json={"mode": "new"}, headers=auth)
        ).status_code == 404
        assert (
            await client.put("/_proxy/flags/api", content=b"{", headers=auth)
        ).status_code == 400
        assert (
            await client.put("/_proxy/flags/api", json={"routes": []}, headers=auth)
        ).status_code == 400
        assert (await client.put("/_proxy/flags/api", json={}, headers=auth)).status_code == 400
        audit = (await client.get("/_proxy/audit", headers=auth)).json()["entries"]
        assert audit[0]["source"] == "admin" and audit[0]["after"]["mode"] == "new"
        assert len([e for e in audit if e["feature"] == "api"]) == 1  # not again as a file edit
        assert (await client.get("/_proxy/audit?limit=x", headers=auth)).status_code == 400
        assert (await client.get("/_proxy/parity.json", headers=auth)).status_code == 404


async def test_file_edits_are_audited(make_stack: Any) -> None:
    from tests.proxy.conftest import ALL_LEGACY

    async with make_stack() as stack, httpx.AsyncClient(base_url=stack.url) as client:
        stack.write_flags(ALL_LEGACY.replace("mode: legacy", "mode: new"))
        assert stack.state.store.check(force=True)
        entries = (await client.get("/_proxy/audit")).json()["entries"]
    assert entries[0]["source"] == "file" and entries[0]["feature"] == "api"
    assert entries[0]["before"]["mode"] == "legacy" and entries[0]["after"]["mode"] == "new"
