"""Fixtures for the rollout tests: the proxy tests' stack (two recording upstreams and a real
proxy), and the admin token that rollout actions need."""

from __future__ import annotations

import pytest

from tests.proxy.conftest import make_stack

__all__ = ["make_stack"]


@pytest.fixture(autouse=True)
def admin_token(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("BANYAN_ADMIN_TOKEN", "rollout-token")
    return "rollout-token"
