"""Interop fixtures: npm install of the real yjs client once per session, a node driver."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

JS_DIR = Path(__file__).parent / "js"


@pytest.fixture(scope="session")
def node_client_ready() -> Path:
    """Install the pinned npm packages once; skip loudly without node/npm or the registry."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("interop: node/npm not installed, the real yjs client cannot run")
    if not (JS_DIR / "node_modules" / "y-websocket").exists():
        done = subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund"],
            cwd=JS_DIR,
            capture_output=True,
            text=True,
            timeout=180,
        )
        if done.returncode != 0:
            pytest.skip(f"interop: npm ci failed (no registry?): {done.stderr[-500:]}")
    return JS_DIR / "client.mjs"


class NodeClient:
    """One node process holding a yjs doc behind a WebsocketProvider, driven by JSON lines."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    @classmethod
    async def start(cls, script: Path, url: str, room: str, token: str | None = None) -> NodeClient:
        proc = await asyncio.create_subprocess_exec(
            "node",
            str(script),
            url,
            room,
            *([token] if token else []),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        return cls(proc)

    async def call(self, op: str, timeout: float = 5.0, **args: Any) -> Any:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write((json.dumps({"op": op, **args}) + "\n").encode())
        await self.proc.stdin.drain()
        line = await asyncio.wait_for(self.proc.stdout.readline(), timeout)
        reply = json.loads(line)
        assert reply["ok"], reply
        return reply["result"]

    async def stop(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()
        await self.proc.wait()
