"""Browser test harness: Debian's Chromium, driven by playwright-core, from Python tests.

Reusable by any browser test (the web app's, the migration console's):

- :func:`require_browser` finds Chromium (``$BANYAN_CHROMIUM``, else ``/usr/bin/chromium``, else
  ``chromium`` on PATH) and the npm packages of this folder (``npm ci`` when missing). Anything
  missing is a loud skip locally and a failure in CI (``CI=true``).
- :class:`Driver` is one ``node driver.mjs`` process holding one browser; :meth:`Driver.page`
  opens a named page in its own browser context (its own storage: one page, one user).
- :class:`Page` has the few actions tests need (goto, click, fill, draw, wait_for...) with
  Playwright selectors (``role=button[name="Ask"]``, ``text=...``, CSS), screenshots into the
  test's artifact folder, the page's console errors, and the WebSocket handshakes it made with the
  ``X-Banyan-Backend`` the proxy answered (which page scripts cannot read).
- :func:`web_stack` starts the whole stack as ``banyan up`` does (model, legacy, new, proxy, each
  its own process on a loopback port, the shipped ``flags.yaml`` features) and stops it.

Waits are bounded (``BANYAN_BROWSER_TIMEOUT_MS``, default 30 s) and a wait that runs out fails the
test with the driver's message; nothing here asserts how long anything took.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import shutil
import subprocess
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from banyan.processes import RunningStack, running_stack

BROWSER_DIR = Path(__file__).resolve().parent
DRIVER = BROWSER_DIR / "driver.mjs"
REPO = BROWSER_DIR.parents[1]
ARTIFACTS = BROWSER_DIR / "artifacts"
JWT_SECRET = "browser-tests-secret-0123456789abcdef-0123456789"


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def missing(reason: str) -> None:
    """A browser test cannot run: fail in CI, skip loudly elsewhere."""
    if in_ci():
        pytest.fail(f"browser tests cannot run in CI: {reason}")
    pytest.skip(f"BROWSER TESTS SKIPPED — {reason}")


def find_chromium() -> str | None:
    given = os.environ.get("BANYAN_CHROMIUM")
    candidates = [given] if given else ["/usr/bin/chromium", shutil.which("chromium")]
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


def require_browser() -> str:
    """The Chromium executable, with playwright-core installed beside the driver."""
    chromium = find_chromium()
    if chromium is None:
        missing("no Chromium: `apt-get install -y chromium` (or set BANYAN_CHROMIUM)")
    if shutil.which("node") is None or shutil.which("npm") is None:
        missing("node/npm are not installed")
    if not (BROWSER_DIR / "node_modules" / "playwright-core").is_dir():
        done = subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund"],
            cwd=BROWSER_DIR,
            capture_output=True,
            text=True,
            timeout=300,
        )
        if done.returncode != 0:
            missing(f"npm ci in tests/browser failed: {done.stderr[-500:]}")
    assert chromium is not None
    return chromium


class DriverError(AssertionError):
    """A browser action failed (a selector never appeared, a wait ran out, a page crashed)."""


class Driver:
    """One ``node driver.mjs`` process and its browser; calls may run concurrently."""

    def __init__(self, process: asyncio.subprocess.Process, shots: Path) -> None:
        self.process = process
        self.shots = shots
        self.version = ""
        self._next = 0
        self._waiting: dict[int, asyncio.Future[Any]] = {}
        self._reader: asyncio.Task[None] | None = None

    @classmethod
    async def start(cls, chromium: str, shots: Path) -> Driver:
        process = await asyncio.create_subprocess_exec(
            "node",
            str(DRIVER),
            chromium,
            cwd=BROWSER_DIR,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        driver = cls(process, shots)
        driver._waiting[0] = asyncio.get_running_loop().create_future()
        driver._reader = asyncio.create_task(driver._read())
        try:
            hello = await asyncio.wait_for(driver._waiting[0], 60)
        except BaseException:
            await driver.close()
            raise
        driver.version = hello["version"]
        return driver

    async def _read(self) -> None:
        assert self.process.stdout is not None
        while line := await self.process.stdout.readline():
            try:
                reply = json.loads(line)
            except ValueError:
                continue  # a stray line (a library's warning): not a reply
            future = self._waiting.pop(reply.get("id"), None)
            if future is None or future.done():
                continue
            if reply.get("ok"):
                future.set_result(reply.get("result"))
            else:
                future.set_exception(DriverError(reply.get("error")))
        for future in self._waiting.values():
            if not future.done():
                future.set_exception(DriverError("the browser driver exited"))
        self._waiting.clear()

    async def call(self, op: str, **args: Any) -> Any:
        assert self.process.stdin is not None
        self._next += 1
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting[self._next] = future
        self.process.stdin.write((json.dumps({"id": self._next, "op": op, **args}) + "\n").encode())
        await self.process.stdin.drain()
        return await future

    async def page(self, name: str, base_url: str) -> Page:
        await self.call("new_page", page=name)
        return Page(self, name, base_url)

    async def close(self) -> None:
        if self.process.returncode is None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.call("quit"), 10)
            try:
                await asyncio.wait_for(self.process.wait(), 10)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()
        if self._reader is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader


class Page:
    """One named page (one user) of a :class:`Driver`."""

    def __init__(self, driver: Driver, name: str, base_url: str) -> None:
        self.driver = driver
        self.name = name
        self.base_url = base_url.rstrip("/")
        self._shots = 0

    async def _do(self, op: str, **args: Any) -> Any:
        return await self.driver.call(op, page=self.name, **args)

    async def goto(self, path: str = "/") -> str:
        url: str = await self._do("goto", url=self.base_url + path)
        return url

    async def click(self, selector: str) -> None:
        await self._do("click", selector=selector)

    async def fill(self, selector: str, value: str) -> None:
        await self._do("fill", selector=selector, value=value)

    async def check(self, selector: str) -> None:
        await self._do("check", selector=selector)

    async def set_file(self, selector: str, name: str, content: bytes, mime: str) -> None:
        encoded = base64.b64encode(content).decode()
        await self._do("set_file", selector=selector, name=name, mime=mime, base64=encoded)

    async def text(self, selector: str) -> str:
        value: str = await self._do("text", selector=selector)
        return value

    async def texts(self, selector: str) -> list[str]:
        values: list[str] = await self._do("texts", selector=selector)
        return values

    async def attr(self, selector: str, name: str) -> str | None:
        value: str | None = await self._do("attr", selector=selector, name=name)
        return value

    async def count(self, selector: str) -> int:
        value: int = await self._do("count", selector=selector)
        return value

    async def wait(self, selector: str, state: str = "visible") -> None:
        await self._do("wait", selector=selector, state=state)

    async def wait_for(self, expression: str, arg: Any = None) -> Any:
        """Wait until the JS ``expression`` (a function of ``arg``) is truthy; return its value."""
        return await self._do("wait_for", expression=expression, arg=arg)

    async def eval(self, expression: str, arg: Any = None) -> Any:
        return await self._do("eval", expression=expression, arg=arg)

    async def draw(self, selector: str, points: Sequence[tuple[float, float]]) -> None:
        """Press, move through ``points`` (fractions of the element's box) and release."""
        await self._do("draw", selector=selector, points=[list(p) for p in points])

    async def screenshot(self, label: str) -> Path:
        self._shots += 1
        self.driver.shots.mkdir(parents=True, exist_ok=True)
        path = self.driver.shots / f"{self.name}-{self._shots:02d}-{label}.png"
        await self._do("screenshot", path=str(path))
        return path

    async def problems(self) -> list[str]:
        """Console errors and uncaught exceptions of the page so far, except the 400s that the
        app's route probes (``HEAD`` on a socket path, see web/src/api.ts) get by design."""
        found: list[str] = await self._do("problems")
        return [p for p in found if not ("Failed to load resource" in p and "/ws/" in p)]

    async def handshakes(self) -> list[dict[str, Any]]:
        """WebSocket handshakes: ``{path, status, backend, feature}`` as the proxy answered."""
        found: list[dict[str, Any]] = await self._do("handshakes")
        return found

    async def local(self, key: str) -> Any:
        return await self.eval("(key) => localStorage.getItem(key)", key)


def shipped_features(changes: Mapping[str, Mapping[str, Any]] | None = None) -> str:
    """The ``features:`` block of the repository's ``flags.yaml``, with per-feature overrides."""
    data = yaml.safe_load((REPO / "flags.yaml").read_text())
    features = data["features"]
    for name, fields in (changes or {}).items():
        features[name] = {**features[name], **fields}
    return yaml.safe_dump({"features": features}, sort_keys=False)


@contextlib.asynccontextmanager
async def web_stack(
    workdir: Path,
    *,
    model_args: Sequence[str] = (),
    changes: Mapping[str, Mapping[str, Any]] | None = None,
) -> AsyncIterator[RunningStack]:
    """Model, legacy, new and the proxy as processes, the shipped features routing."""
    env = {"BANYAN_JWT_SECRET": JWT_SECRET}
    async with running_stack(
        workdir, features=shipped_features(changes), model_args=model_args, env=env
    ) as stack:
        yield stack


async def wait_for_route(proxy: str, path: str, backend: str, *, rounds: int = 400) -> None:
    """Poll until the proxy routes ``path`` to ``backend`` (a flag edit applied); 50 ms apart."""
    async with httpx.AsyncClient() as client:
        for _ in range(rounds):
            answer = await client.head(proxy + path)
            if answer.headers.get("X-Banyan-Backend") == backend:
                return
            await asyncio.sleep(0.05)
    raise AssertionError(f"the proxy never routed {path} to {backend}")


def keep_artifacts(shots: Path, test_name: str) -> None:
    """Copy a test's screenshots to tests/browser/artifacts/<test>/ (CI's artifacts: every run
    keeps the last screenshots of each page); ``BANYAN_BROWSER_ARTIFACTS=0`` keeps none."""
    if os.environ.get("BANYAN_BROWSER_ARTIFACTS") == "0" or not shots.is_dir():
        return
    target = ARTIFACTS / test_name
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(shots, target)
