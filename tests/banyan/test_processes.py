"""Tests of banyan/processes.py's ``running_stack``: the proxy it starts holds the secret the
backends hold, so it stamps writes they accept — even when the caller exported none."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from banyan.processes import running_stack

FEATURES = """\
features:
  register:
    routes: ["/api/auth/register"]
    mode: legacy
    writes: mirror
  everything:
    routes: ["/api/**"]
    mode: legacy
"""


async def test_the_proxy_shares_the_stack_s_made_up_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("BANYAN_JWT_SECRET", raising=False)
    async with running_stack(tmp_path, features=FEATURES) as stack:
        proxy, legacy, new = stack.url("proxy"), stack.url("legacy"), stack.url("new")
        async with httpx.AsyncClient(timeout=30) as http:
            body = {"email": "p@example.com", "password": "password-1", "name": "P"}
            made = await http.post(f"{proxy}/api/auth/register", json=body)
            assert made.status_code == 201, made.text
            auth = {"Authorization": f"Bearer {made.json()['token']}"}
            seen = {}
            for _ in range(200):  # the registration is mirrored to new through the queue
                answer = await http.get(f"{new}/api/auth/me", headers=auth)
                if answer.status_code == 200:
                    seen["new"] = answer.json()["user"]
                    break
                await asyncio.sleep(0.05)
            seen["legacy"] = (await http.get(f"{legacy}/api/auth/me", headers=auth)).json()["user"]
    # stamped by the proxy with the stack's secret: the same user, created at the same time
    assert seen["new"] == seen["legacy"]
