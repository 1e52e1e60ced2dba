"""deploy/haproxy.cfg against the compose file it serves: each backend's servers are exactly the
compose replicas of one role on the port they listen on, checked on ``/readyz``; the flag file's
backends are HAProxy's internal frontends; timeouts keep WebSockets open. ``haproxy -c`` runs too
where the binary is installed."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from banyan.proxy.flags import load_flags
from tests.deploy.deployfiles import (
    DEPLOY,
    FLAGS_PATH,
    Section,
    haproxy_sections,
    port_of,
    services,
    services_of_role,
)

ROLE_OF_BACKEND = {"proxies": "proxy", "legacy": "legacy", "new": "new"}


def _seconds(text: str) -> float:
    match = re.fullmatch(r"(\d+)(ms|s|m|h|d)?", text)
    assert match, f"timeout {text!r}"
    scale = {"ms": 0.001, None: 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
    return int(match.group(1)) * scale[match.group(2)]


def _timeout(name: str) -> float:
    (defaults,) = haproxy_sections("defaults").values()
    (line,) = defaults.directives("timeout", name)
    return _seconds(line[2])


def _bind_port(frontend: Section) -> int:
    (bind,) = frontend.directives("bind")
    return int(bind[1].rsplit(":", 1)[1])


def _servers(backend: Section) -> dict[str, tuple[str, int]]:
    found = {}
    for line in backend.directives("server"):
        host, port = line[2].rsplit(":", 1)
        found[line[1]] = (host, int(port))
    return found


def _frontend_for(port: int) -> Section:
    (frontend,) = [f for f in haproxy_sections("frontend").values() if _bind_port(f) == port]
    return frontend


def test_every_frontend_leads_to_a_defined_backend() -> None:
    backends = haproxy_sections("backend")
    assert set(backends) == set(ROLE_OF_BACKEND)
    for name, frontend in haproxy_sections("frontend").items():
        (default,) = frontend.directives("default_backend")
        assert default[1] in backends, f"frontend {name}"


@pytest.mark.parametrize("backend", sorted(ROLE_OF_BACKEND))
def test_servers_are_the_compose_replicas_on_their_ports(backend: str) -> None:
    replicas = services_of_role(ROLE_OF_BACKEND[backend])
    servers = _servers(haproxy_sections("backend")[backend])
    assert {host for host, _ in servers.values()} == set(replicas)
    for host, port in servers.values():
        assert port == port_of(replicas[host]["command"]), host


@pytest.mark.parametrize("backend", sorted(ROLE_OF_BACKEND))
def test_servers_take_traffic_only_while_ready(backend: str) -> None:
    section = haproxy_sections("backend")[backend]
    assert section.directives("option", "httpchk")
    assert section.directives("http-check", "send", "meth", "GET", "uri", "/readyz")
    assert section.directives("http-check", "expect", "status", "200")
    (defaults,) = haproxy_sections("defaults").values()
    (server_defaults,) = defaults.directives("default-server")
    assert "check" in server_defaults


def test_the_public_frontend_is_the_published_port_and_leads_to_the_proxies() -> None:
    (published,) = services()["haproxy"]["ports"]
    host_port, container_port = (int(part) for part in published.split(":"))
    frontend = haproxy_sections("frontend")["public"]
    assert _bind_port(frontend) == container_port == host_port
    assert frontend.directives("default_backend", "proxies")
    mounted = [volume.split(":")[:2] for volume in services()["haproxy"]["volumes"]]
    assert ["./haproxy.cfg", "/usr/local/etc/haproxy/haproxy.cfg"] in mounted


def test_the_flag_file_backends_are_the_internal_frontends() -> None:
    flags = load_flags(DEPLOY / "flags" / FLAGS_PATH.rsplit("/", 1)[1])
    for side in ("legacy", "new"):
        url = flags.backends[side].url
        match = re.fullmatch(r"http://haproxy:(\d+)", url)
        assert match, f"backends.{side} = {url}: not an HAProxy frontend"
        frontend = _frontend_for(int(match.group(1)))
        (default,) = frontend.directives("default_backend")
        assert ROLE_OF_BACKEND[default[1]] == side


def test_timeouts_keep_websockets_open_and_bound_everything_else() -> None:
    for name in ("connect", "client", "server", "http-request"):
        assert _timeout(name) > 0
    assert _timeout("tunnel") >= 3600, "an idle WebSocket must survive an hour"
    assert _timeout("tunnel") > max(_timeout("client"), _timeout("server"))
    # a streamed answer (SSE) may pause up to the backends' read timeout between tokens
    flags = load_flags(DEPLOY / "flags" / FLAGS_PATH.rsplit("/", 1)[1])
    assert _timeout("server") > max(spec.read_timeout for spec in flags.backends.values())


def test_a_draining_replica_loses_no_request() -> None:
    (defaults,) = haproxy_sections("defaults").values()
    # a refused connection (the replica stopped accepting) is retried on another server...
    assert defaults.directives("option", "redispatch")
    assert int(defaults.directives("retries")[0][1]) >= 1
    # ...and no request rides a kept-alive connection the replica is closing (bench.balancer_drain)
    assert defaults.directives("option", "http-server-close")


@pytest.mark.skipif(shutil.which("haproxy") is None, reason="haproxy is not installed here")
def test_haproxy_itself_accepts_the_configuration() -> None:
    result = subprocess.run(
        ["haproxy", "-c", "-f", str(DEPLOY / "haproxy.cfg")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
