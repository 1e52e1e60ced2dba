"""Every health path the deployment files ask (Kubernetes probes, compose health checks, HAProxy
checks) is answered 200 by the real server of that role, started here on loopback."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from aiohttp import web

from banyan.serving import serve
from tests.deploy.deployfiles import (
    banyan_services,
    environment,
    haproxy_sections,
    loopback_flags,
    of_kind,
    pod_spec,
    services_of_role,
)

ROLES = ("proxy", "legacy", "new", "model")


def _asked_paths() -> dict[str, set[str]]:
    """role -> every path some deployment file probes it on."""
    asked: dict[str, set[str]] = {role: set() for role in ROLES}
    for doc in of_kind("Deployment"):
        (container,) = pod_spec(doc)["containers"]
        for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
            if probe in container:
                asked[container["args"][0]].add(container[probe]["httpGet"]["path"])
    for spec in banyan_services().values():
        asked[spec["command"][0]].add(urlsplit(environment(spec)["HEALTHCHECK_URL"]).path)
    for section in haproxy_sections("backend").values():
        (check,) = section.directives("http-check", "send")
        hosts = {line[2].rsplit(":", 1)[0] for line in section.directives("server")}
        for role in ROLES:
            if hosts and hosts <= set(services_of_role(role)):
                asked[role].add(check[check.index("uri") + 1])
    return asked


def test_every_role_is_probed_somewhere() -> None:
    asked = _asked_paths()
    assert all(asked[role] for role in ROLES), asked
    assert {"/readyz", "/healthz"} <= asked["proxy"]


def _app(role: str, workdir: Path) -> web.Application:
    if role == "proxy":
        from banyan.proxy.app import create_app as proxy_app

        return proxy_app(loopback_flags(workdir / "flags.yaml"), health_interval=60)
    if role == "model":
        from banyan.backends.model.server import create_app as model_app

        return model_app()
    make: Callable[..., web.Application]
    if role == "legacy":
        from banyan.backends.legacy.app import create_app as make
    else:
        from banyan.backends.new.app import create_app as make
    return make(f"sqlite+aiosqlite:///{workdir / (role + '.db')}")


@pytest.mark.parametrize("role", ROLES)
async def test_the_real_server_answers_every_path_it_is_probed_on(
    role: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BANYAN_JWT_SECRET", "deploy-probe-test-" + "x" * 32)
    paths = sorted(_asked_paths()[role])
    async with serve(_app(role, tmp_path)) as url, httpx.AsyncClient(timeout=30) as client:
        for path in paths:
            response = await client.get(url + path)
            assert response.status_code == 200, f"{role} {path}: {response.status_code}"
        missing = await client.get(url + "/_proxy/no-such-probe")
        assert missing.status_code != 200, "a wrong probe path would be noticed"
