"""A replicated Banyan stack on loopback, laid out as deploy/compose.yaml lays it out.

Owns :class:`ReplicaStack`, for the whole-stack test (tests/stack) and ``bench/replicas.py``:
HAProxy (the ``haproxy`` binary, ``deploy/haproxy.cfg`` with every address moved to loopback and
``backend proxies`` given one server per proxy replica) in front of N proxy replicas that share
one read-only flag file (``{legacy}`` and ``{new}`` in its text name HAProxy's internal
frontends) and one control store (``--control-db``), two replicas of each backend
on PostgreSQL and Redis, and the model server — every one a real process. :func:`stack_config`
is that HAProxy configuration. Processes are started through :mod:`banyan.processes` and all
stopped by :meth:`ReplicaStack.down`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import stat
from collections.abc import Mapping
from pathlib import Path

import aiohttp

from banyan.ports import free_port
from banyan.processes import PYTHON_CLI, Child, start, stop

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
BACKENDS = ("legacy-1", "legacy-2", "new-1", "new-2")
FRONTENDS = ("public", "legacy_internal", "new_internal")


def stack_config(source: str, ports: Mapping[str, int], fronts: Mapping[str, int]) -> str:
    """``source`` (deploy/haproxy.cfg) on loopback: binds on ``fronts`` (by frontend name), the
    backends' servers on ``ports`` (by server name), one ``proxy-N`` server per ``proxy-*`` port,
    health checks every 500 ms (a test cannot wait 6 s for a dead server), no Docker resolver."""
    proxies = sorted(name for name in ports if name.startswith("proxy-"))
    out: list[str] = []
    section = ""
    for line in source.splitlines():
        words = line.split("#", 1)[0].split()
        if words and not line[0].isspace():
            section = " ".join(words[:2])
        if section.startswith("resolvers"):
            continue
        if words[:1] == ["default-server"]:
            line = re.sub(r" resolvers \S+| init-addr \S+", "", line)
            line = line.replace("inter 2s", "inter 500ms")
        elif words[:1] == ["bind"]:
            line = f"    bind 127.0.0.1:{fronts[section.split()[1]]}"
        elif words[:1] == ["server"]:
            if section == "backend proxies":
                if words[1] != "proxy-1":
                    continue  # every replica is written after the first one's line
                out.extend(f"    server {p} 127.0.0.1:{ports[p]}" for p in proxies)
                continue
            line = f"    server {words[1]} 127.0.0.1:{ports[words[1]]}"
        out.append(line)
    return "\n".join(out) + "\n"


class ReplicaStack:
    """``proxies`` proxy replicas, two of each backend, the model server, HAProxy in front."""

    def __init__(
        self,
        workdir: Path,
        *,
        env: Mapping[str, str],
        legacy_db: str,
        new_db: str,
        redis: str,
        control_db: str,
        flags: str,
        proxies: int = 3,
    ) -> None:
        self.workdir = workdir
        self.env = dict(env)
        from banyan.backends.common.tokens import SECRET_ENV, new_secret  # the backends' rules

        self.env.setdefault(SECRET_ENV, os.environ.get(SECRET_ENV) or new_secret())
        self.dbs = {"legacy": legacy_db, "new": new_db}
        self.redis = redis
        self.control_db = control_db
        self.flags_text = flags
        self.proxies = [f"proxy-{i}" for i in range(1, proxies + 1)]
        names = ["model", *BACKENDS, *self.proxies]
        self.ports = {name: free_port() for name in names}
        self.fronts = {name: free_port() for name in FRONTENDS}
        self.flags_path = workdir / "flags" / "flags.yaml"
        self.children: dict[str, Child] = {}
        self.haproxy: asyncio.subprocess.Process | None = None

    @property
    def public(self) -> str:
        return f"http://127.0.0.1:{self.fronts['public']}"

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]}"

    def backend_url(self, role: str) -> str:
        """Where the proxies reach ``role``'s replicas: HAProxy's internal frontend."""
        return f"http://127.0.0.1:{self.fronts[role + '_internal']}"

    def argv(self, name: str) -> list[str]:
        role = name.split("-")[0]
        base = [*PYTHON_CLI, role, "--port", str(self.ports[name])]
        if role in self.dbs:
            return [*base, "--db", self.dbs[role], "--redis", self.redis]
        if role == "proxy":
            return [
                *base,
                "--no-access-log",
                "--flags",
                str(self.flags_path),
                "--control-db",
                self.control_db,
            ]
        return base

    async def start(self, name: str) -> None:
        # each proxy its own SQLite mirror queue and parity store unless the caller names shared
        # ones: replicas creating one SQLite file's tables at the same instant collide
        env = {
            "BANYAN_MIRROR_DB": f"sqlite+aiosqlite:///{self.workdir / (name + '-mirror.db')}",
            "BANYAN_PARITY_DB": f"sqlite+aiosqlite:///{self.workdir / (name + '-parity.db')}",
            **self.env,
        }
        # a proxy's log (stderr) stays visible: why a replica refused to start, what it decided
        quiet = not name.startswith("proxy-")
        self.children[name] = await start(name, self.argv(name), env=env, quiet=quiet)

    async def start_all(self, *names: str) -> None:
        """Start ``names`` at once; every start has ended before a failure is raised."""
        results = await asyncio.gather(*(self.start(n) for n in names), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result

    async def up(self) -> str:
        """Start everything; the public URL once HAProxy leads to every proxy replica."""
        self.flags_path.parent.mkdir(parents=True, exist_ok=True)
        text = self.flags_text.replace("{legacy}", self.backend_url("legacy"))
        self.flags_path.write_text(text.replace("{new}", self.backend_url("new")), "utf-8")
        self.flags_path.chmod(stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)  # read-only
        config = self.workdir / "haproxy.cfg"
        source = (DEPLOY / "haproxy.cfg").read_text(encoding="utf-8")
        config.write_text(stack_config(source, self.ports, self.fronts), encoding="utf-8")
        await self.start("model")
        self.env["OPENAI_BASE_URL"] = self.children["model"].url + "/v1"
        # one replica of each backend first: two creating an empty database's tables at once
        # can collide (deploy/compose.yaml orders them alike)
        await self.start_all("legacy-1", "new-1")
        await self.start_all("legacy-2", "new-2", *self.proxies)
        self.haproxy = await asyncio.create_subprocess_exec(
            "haproxy", "-f", str(config), stdout=asyncio.subprocess.DEVNULL
        )
        await self.wait_balanced(self.proxies)
        return self.public

    async def wait_balanced(self, names: list[str], tries: int = 300) -> None:
        """Until HAProxy's stats say ``names`` are UP (checked through their /readyz)."""
        async with aiohttp.ClientSession() as session:
            for _ in range(tries):
                with contextlib.suppress(aiohttp.ClientError):
                    async with session.get(self.public + "/readyz") as response:
                        if response.status == 200 and await self._all_ready(session, names):
                            return
                await asyncio.sleep(0.1)
        raise RuntimeError("HAProxy never led to every proxy replica")

    async def _all_ready(self, session: aiohttp.ClientSession, names: list[str]) -> bool:
        for name in names:
            try:
                async with session.get(self.url(name) + "/readyz") as response:
                    if response.status != 200:
                        return False
            except aiohttp.ClientError:
                return False
        await asyncio.sleep(1.0)  # HAProxy's checks (every 500 ms, rise 2) see them too
        return True

    async def kill(self, name: str) -> None:
        """SIGKILL ``name`` and wait until it is gone: no drain, connections dropped as a crashed
        host drops them."""
        process = self.children[name].process
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, signal.SIGKILL)
        await process.wait()

    async def stop(self, name: str) -> None:
        await stop(self.children[name].process)

    async def down(self) -> None:
        if self.haproxy is not None and self.haproxy.returncode is None:
            await stop(self.haproxy)
        await asyncio.gather(*(stop(c.process) for c in self.children.values()))
        for child in self.children.values():
            if child._drain is not None:
                child._drain.cancel()
        with contextlib.suppress(OSError):
            self.flags_path.chmod(0o644)
