"""Tests for banyan/replicas.py's HAProxy configuration (the stack itself: tests/stack)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from banyan.replicas import DEPLOY, ReplicaStack, stack_config

PORTS = {
    "legacy-1": 9101,
    "legacy-2": 9102,
    "new-1": 9201,
    "new-2": 9202,
    "proxy-1": 9301,
    "proxy-2": 9302,
    "proxy-3": 9303,
}
FRONTS = {"public": 9000, "legacy_internal": 9001, "new_internal": 9002}


def config() -> str:
    return stack_config((DEPLOY / "haproxy.cfg").read_text(), PORTS, FRONTS)


def test_every_address_is_on_loopback_and_every_proxy_replica_is_a_server() -> None:
    text = config()
    assert "resolvers" not in text and "127.0.0.11" not in text and "init-addr" not in text
    assert "inter 500ms" in text
    for port in FRONTS.values():
        assert f"bind 127.0.0.1:{port}\n" in text
    for name, port in PORTS.items():
        assert f"    server {name} 127.0.0.1:{port}\n" in text
    proxies = text.split("backend proxies", 1)[1].split("frontend", 1)[0]
    assert proxies.count("    server ") == 3


@pytest.mark.skipif(shutil.which("haproxy") is None, reason="haproxy is not installed here")
def test_haproxy_accepts_it(tmp_path: Path) -> None:
    path = tmp_path / "haproxy.cfg"
    path.write_text(config())
    done = subprocess.run(["haproxy", "-c", "-f", str(path)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_proxies_read_one_flag_file_and_one_control_store(tmp_path: Path) -> None:
    stack = ReplicaStack(
        tmp_path,
        env={},
        legacy_db="postgresql+asyncpg://h/l",
        new_db="postgresql+asyncpg://h/n",
        redis="redis://h/0",
        control_db="postgresql://h/c",
        flags="{legacy} {new}",
        proxies=2,
    )
    assert stack.proxies == ["proxy-1", "proxy-2"]
    argv = stack.argv("proxy-2")
    assert argv[argv.index("--control-db") + 1] == "postgresql://h/c"
    assert argv[argv.index("--flags") + 1] == str(stack.flags_path)
    assert argv[argv.index("--port") + 1] == str(stack.ports["proxy-2"])
    legacy = stack.argv("legacy-1")
    assert legacy[legacy.index("--db") + 1] == "postgresql+asyncpg://h/l"
    assert legacy[legacy.index("--redis") + 1] == "redis://h/0"
    assert stack.public == f"http://127.0.0.1:{stack.fronts['public']}"
