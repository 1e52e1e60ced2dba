"""Starting Banyan servers as child processes and stopping them cleanly.

Every Banyan server prints ``banyan <name> listening on <url>`` once bound; :func:`start` waits for
that line, so ``--port 0`` works and the caller learns the real address. :func:`running_stack`
starts a whole stack on free ports (model, legacy, new, then a proxy whose flag file points at the
backends just started) for end-to-end tests and benchmarks, and stops every process on exit; its
backends and the proxy share the caller's ``BANYAN_JWT_SECRET``, or a random one made for that
stack.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

READY_TIMEOUT = 60.0
PYTHON_CLI = [sys.executable, "-m", "banyan.proxy.cli"]


@dataclass
class Child:
    name: str
    process: asyncio.subprocess.Process
    url: str
    _drain: asyncio.Task[None] | None = None


async def start(
    name: str,
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    timeout: float = READY_TIMEOUT,
    quiet: bool = True,
) -> Child:
    """Start ``argv`` and wait for its ``listening on`` line; raise RuntimeError if it dies."""
    process = await asyncio.create_subprocess_exec(
        *argv,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL if quiet else None,
        env={**os.environ, **(env or {})},
    )
    assert process.stdout is not None
    try:
        while True:
            line = await asyncio.wait_for(process.stdout.readline(), timeout)
            if not line:
                await process.wait()
                raise RuntimeError(f"{name} exited with code {process.returncode} before listening")
            text = line.decode().strip()
            if " listening on " in text:
                break
    except BaseException:
        await stop(process)
        raise
    child = Child(name, process, text.rsplit(" ", 1)[-1])
    child._drain = asyncio.create_task(_drain(process.stdout))
    return child


async def _drain(stream: asyncio.StreamReader) -> None:
    while await stream.readline():
        pass


async def stop(
    process: asyncio.subprocess.Process, *, timeout: float = 15.0, terminate: bool = True
) -> None:
    """SIGTERM (unless ``terminate`` is False: the process was told to end some other way), wait
    for a graceful exit, then SIGKILL."""
    if process.returncode is None:
        if terminate:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), timeout)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()


async def stop_all(children: Sequence[Child]) -> None:
    await asyncio.gather(*(stop(c.process) for c in reversed(children)))
    for child in children:
        if child._drain is not None:
            child._drain.cancel()


@dataclass
class RunningStack:
    workdir: Path
    flags_path: Path
    children: dict[str, Child] = field(default_factory=dict)

    def url(self, name: str) -> str:
        return self.children[name].url


DEFAULT_FEATURES = """\
features:
  tutor:
    routes: ["/api/sessions/*/ask", "/ws/tutor/*"]
    mode: legacy
  everything:
    routes: ["/api/**", "/ws/**"]
    mode: legacy
"""


def flags_text(legacy: str, new: str, features: str = DEFAULT_FEATURES) -> str:
    return f"version: 1\nbackends:\n  legacy: {legacy}\n  new: {new}\n{features}default: legacy\n"


@contextlib.asynccontextmanager
async def running_stack(
    workdir: Path,
    *,
    features: str = DEFAULT_FEATURES,
    model_args: Sequence[str] = (),
    proxy_args: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    with_proxy: bool = True,
) -> AsyncIterator[RunningStack]:
    """Model, legacy, new (and the proxy) on free loopback ports, stores under ``workdir``."""
    from banyan.backends.common.tokens import SECRET_ENV, new_secret  # the backends' own rules

    workdir.mkdir(parents=True, exist_ok=True)
    stack = RunningStack(workdir, workdir / "flags.yaml")
    started: list[Child] = []
    try:
        model = await start("model", [*PYTHON_CLI, "model", "--port", "0", *model_args], env=env)
        started.append(model)
        backend_env = {**(env or {}), "OPENAI_BASE_URL": model.url + "/v1"}
        backend_env.setdefault(SECRET_ENV, os.environ.get(SECRET_ENV) or new_secret())
        for name in ("legacy", "new"):
            db = f"sqlite+aiosqlite:///{workdir / (name + '.db')}"
            child = await start(
                name, [*PYTHON_CLI, name, "--port", "0", "--db", db], env=backend_env
            )
            started.append(child)
        stack.flags_path.write_text(flags_text(started[1].url, started[2].url, features))
        if with_proxy:
            proxy_env = {
                **(env or {}),
                "BANYAN_PARITY_DB": f"sqlite+aiosqlite:///{workdir / 'parity.db'}",
                SECRET_ENV: backend_env[SECRET_ENV],  # the proxy stamps writes with it
            }
            argv = [*PYTHON_CLI, "proxy", "--flags", str(stack.flags_path), "--port", "0"]
            started.append(await start("proxy", [*argv, *proxy_args], env=proxy_env))
        stack.children = {child.name: child for child in started}
        yield stack
    finally:
        await stop_all(started)
