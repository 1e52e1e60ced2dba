"""What clients see through the deployment's HAProxy while replicas drain and come back.

``deploy/haproxy.cfg`` runs as shipped but for addresses (each ``bind`` and ``server`` moved to a
loopback port; Docker's resolver dropped). Behind it, laid out as ``deploy/compose.yaml`` lays
them out and as real processes: two proxies, two legacy and two new replicas on PostgreSQL
(127.0.0.1:5432, a temporary database each) sharing Redis (127.0.0.1:6379), the model server.
The proxies run without ``--control-db`` (not built yet). Clients (``--clients``) loop over list,
create and get of sessions through HAProxy's public port with a short pause; ``--sockets`` live
sockets stay subscribed, and one that closes is reopened. A quarter into the run proxy-1 gets
SIGTERM and is restarted on its port once it exited; at 60% legacy-1 likewise. Prints, per phase,
requests, failures (5xx, 4xx or transport), p50/p99, and sockets closed and reopened.

    .venv/bin/python -m bench.balancer_drain [--duration 40] [--clients 16] [--sockets 20]
                                             [--config deploy/haproxy.cfg]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import secrets
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from banyan.pg import postgres_available, temp_database
from banyan.ports import free_port
from banyan.processes import PYTHON_CLI, Child, start, stop
from banyan.serving import install_uvloop
from bench.common import markdown_table, percentile

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
SERVERS = ("model", "legacy-1", "legacy-2", "new-1", "new-2", "proxy-1", "proxy-2")
FRONTENDS = {"public": 8080, "legacy_internal": 8001, "new_internal": 8002}


def loopback_haproxy(source: Path, ports: dict[str, int], fronts: dict[str, int]) -> str:
    """``source`` (deploy/haproxy.cfg) with every address on loopback and no Docker resolver."""
    out: list[str] = []
    section = ""
    for line in source.read_text(encoding="utf-8").splitlines():
        words = line.split("#", 1)[0].split()
        if words and not line[0].isspace():
            section = words[0] + " " + (words[1] if len(words) > 1 else "")
        if section.startswith("resolvers"):
            continue
        if words[:1] == ["default-server"]:
            line = re.sub(r" resolvers \S+| init-addr \S+", "", line)
        elif words[:1] == ["bind"]:
            line = f"    bind 127.0.0.1:{fronts[section.split()[1]]}"
        elif words[:1] == ["server"]:
            line = f"    server {words[1]} 127.0.0.1:{ports[words[1]]}"
        out.append(line)
    return "\n".join(out) + "\n"


@dataclass
class Record:
    started: float
    ms: float
    outcome: str  # ok | 5xx | 4xx | transport


@dataclass
class Run:
    records: list[Record] = field(default_factory=list)
    events: list[tuple[str, float, float]] = field(default_factory=list)
    socket_closes: list[float] = field(default_factory=list)
    socket_reopen_failures: int = 0
    notes: list[str] = field(default_factory=list)

    def phase(self, at: float) -> str:
        for name, begin, end in self.events:
            if begin <= at < end:
                return name
        return "steady"


class Stack:
    def __init__(self, workdir: Path, env: dict[str, str], config: Path) -> None:
        self.workdir = workdir
        self.config = config
        self.env = env
        self.ports = {name: free_port() for name in SERVERS}
        self.fronts = {name: free_port() for name in FRONTENDS}
        self.children: dict[str, Child] = {}
        self.haproxy: asyncio.subprocess.Process | None = None

    def argv(self, name: str) -> list[str]:
        role = name.split("-")[0]
        base = [*PYTHON_CLI, role, "--port", str(self.ports[name])]
        if role in {"legacy", "new"}:
            return [*base, "--db", self.env[f"{role.upper()}_DB"], "--redis", self.env["REDIS"]]
        if role == "proxy":
            return [*base, "--no-access-log", "--flags", str(self.workdir / "flags.yaml")]
        return base

    async def start(self, name: str) -> None:
        env = {**self.env, "BANYAN_AUDIT_LOG": str(self.workdir / f"{name}.audit.jsonl")}
        self.children[name] = await start(name, self.argv(name), env=env)

    async def start_all(self, *names: str) -> None:
        """Start ``names`` at once; every start has ended (and been recorded) before a failure
        is raised, so ``down`` stops all that did start."""
        results = await asyncio.gather(*(self.start(n) for n in names), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result

    async def up(self) -> str:
        flags = (DEPLOY / "flags" / "flags.yaml").read_text(encoding="utf-8")
        flags = flags.replace(
            "http://haproxy:8001", f"http://127.0.0.1:{self.fronts['legacy_internal']}"
        )
        flags = flags.replace(
            "http://haproxy:8002", f"http://127.0.0.1:{self.fronts['new_internal']}"
        )
        (self.workdir / "flags.yaml").write_text(flags, encoding="utf-8")
        config = self.workdir / "haproxy.cfg"
        config.write_text(loopback_haproxy(self.config, self.ports, self.fronts), encoding="utf-8")
        await self.start("model")
        self.env["OPENAI_BASE_URL"] = self.children["model"].url + "/v1"
        # One replica of each role first: two creating the tables of an empty database at the
        # same instant can collide, and one then exits (deploy/compose.yaml orders them alike).
        await self.start_all("legacy-1", "new-1")
        await self.start_all("legacy-2", "new-2", "proxy-1")
        await self.start_all("proxy-2")
        self.haproxy = await asyncio.create_subprocess_exec(
            "haproxy", "-f", str(config), stdout=asyncio.subprocess.DEVNULL
        )
        url = f"http://127.0.0.1:{self.fronts['public']}"
        await wait_ready(url)
        return url

    async def bounce(self, name: str, run: Run, clock: Callable[[], float]) -> None:
        """SIGTERM ``name``, wait for its exit, start it again on its port; record the window."""
        begin = clock()
        await stop(self.children[name].process, timeout=30)
        exited = clock()
        await self.start(name)
        run.events.append((f"{name} drain + restart", begin, clock() + 6))  # + HAProxy rise
        run.notes.append(
            f"{name}: SIGTERM to exit {exited - begin:.2f} s, restart to listening "
            f"{clock() - exited:.2f} s"
        )

    async def down(self) -> None:
        if self.haproxy is not None and self.haproxy.returncode is None:
            await stop(self.haproxy)
        await asyncio.gather(*(stop(c.process) for c in self.children.values()))


async def wait_ready(url: str) -> None:
    async with aiohttp.ClientSession() as session:
        for _ in range(200):
            try:
                async with session.get(url + "/readyz") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise RuntimeError("HAProxy never led to a ready proxy")


async def sign_up(session: aiohttp.ClientSession, base: str, index: int) -> str:
    body = {"email": f"drain-{index}-{secrets.token_hex(4)}@example.com", "password": "pass-1234"}
    async with session.post(base + "/api/auth/register", json={**body, "name": "D"}) as r:
        assert r.status == 201, await r.text()
    async with session.post(base + "/api/auth/login", json=body) as r:
        return str((await r.json())["token"])


async def client(base: str, token: str, run: Run, clock: Callable[[], float], end: float) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    steps = [("GET", "/api/sessions?limit=20", None), ("POST", "/api/sessions", {"title": "D"})]
    async with aiohttp.ClientSession(headers=headers) as session:
        while clock() < end:
            for method, path, body in steps:
                began = clock()
                try:
                    async with session.request(method, base + path, json=body) as r:
                        await r.read()
                        outcome = "ok" if r.status < 400 else f"{r.status // 100}xx"
                except (aiohttp.ClientError, TimeoutError) as exc:
                    outcome = "transport"
                    run.notes.append(f"transport error at {began:.2f} s on {method}: {exc!r}")
                run.records.append(Record(began, (clock() - began) * 1000, outcome))
                await asyncio.sleep(0.05)


async def live_socket(
    base: str, token: str, run: Run, clock: Callable[[], float], end: float
) -> None:
    subscribe = {"type": "subscribe", "id": "s", "query": "sessions.list", "args": {}}
    async with aiohttp.ClientSession() as session:
        while clock() < end:
            try:
                async with session.ws_connect(f"{base}/ws/live?token={token}") as ws:
                    await ws.send_str(json.dumps(subscribe))
                    while clock() < end:
                        try:
                            message = await ws.receive(timeout=max(0.1, end - clock()))
                        except TimeoutError:
                            return
                        if message.type != aiohttp.WSMsgType.TEXT:
                            break
                    if clock() < end:
                        run.socket_closes.append(clock())
            except (aiohttp.ClientError, TimeoutError):
                run.socket_reopen_failures += 1
                await asyncio.sleep(0.2)


def report(run: Run, duration: float) -> None:
    phases: dict[str, list[Record]] = {}
    for record in run.records:
        phases.setdefault(run.phase(record.started), []).append(record)
    rows = []
    for name, records in phases.items():
        ok = [r.ms for r in records if r.outcome == "ok"]
        bad = {
            kind: sum(r.outcome == kind for r in records) for kind in ("5xx", "4xx", "transport")
        }
        rows.append((name, len(records), bad["5xx"], bad["4xx"], bad["transport"],
                     round(percentile(ok, 0.5), 2), round(percentile(ok, 0.99), 2)))  # fmt: skip
    print(f"\n### Through HAProxy, {duration:g} s\n")
    headers = ["phase", "requests", "5xx", "4xx", "transport", "p50 ms", "p99 ms"]
    print(markdown_table(headers, rows))
    closes = {name: sum(run.phase(at) == name for at in run.socket_closes) for name in phases}
    print(f"\nlive sockets closed by phase: {closes}; failed reopen attempts: "
          f"{run.socket_reopen_failures}")  # fmt: skip
    print("socket closes at (s):", [round(at, 1) for at in run.socket_closes])
    for note in run.notes:
        print(note)


async def main_async(args: argparse.Namespace) -> int:
    if shutil.which("haproxy") is None or not await postgres_available():
        print("needs the haproxy binary and PostgreSQL at 127.0.0.1:5432", file=sys.stderr)
        return 2
    async with temp_database("drain_legacy") as legacy_db, temp_database("drain_new") as new_db:
        async with temp_database("drain_proxy") as proxy_db:
            env = {
                "LEGACY_DB": legacy_db, "NEW_DB": new_db, "REDIS": "redis://127.0.0.1:6379/0",
                "BANYAN_REDIS_PREFIX": f"drain-{secrets.token_hex(4)}",
                "BANYAN_JWT_SECRET": secrets.token_hex(32),
                "BANYAN_ADMIN_TOKEN": secrets.token_hex(32),
                "BANYAN_PARITY_DB": proxy_db, "BANYAN_MIRROR_DB": proxy_db,
            }  # fmt: skip
            with tempfile.TemporaryDirectory(prefix="banyan-drain-") as tmp:
                stack = Stack(Path(tmp), env, Path(args.config))
                try:
                    base = await stack.up()
                    await measure(stack, base, args)
                finally:
                    await stack.down()
    return 0


async def measure(stack: Stack, base: str, args: argparse.Namespace) -> None:
    run = Run()
    origin = time.monotonic()

    def clock() -> float:
        return time.monotonic() - origin

    async with aiohttp.ClientSession() as session:
        tokens = [await sign_up(session, base, i) for i in range(args.clients)]
    end = args.duration
    load = [client(base, t, run, clock, end) for t in tokens]
    load += [
        live_socket(base, tokens[i % len(tokens)], run, clock, end) for i in range(args.sockets)
    ]

    async def schedule() -> None:
        await asyncio.sleep(end * 0.25)
        await stack.bounce("proxy-1", run, clock)
        await asyncio.sleep(max(0.0, end * 0.6 - clock()))
        await stack.bounce("legacy-1", run, clock)

    await asyncio.gather(schedule(), *load)
    report(run, args.duration)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--duration", type=float, default=40.0)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--sockets", type=int, default=20)
    parser.add_argument("--config", default=str(DEPLOY / "haproxy.cfg"), help="a variant to try")
    install_uvloop()
    sys.exit(asyncio.run(main_async(parser.parse_args())))


if __name__ == "__main__":
    main()
