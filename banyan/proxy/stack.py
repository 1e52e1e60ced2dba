"""``banyan up``: the whole stack in one command — model server, legacy, new and the proxy.

Each part runs as its own process (``python -m banyan.proxy.cli <part> ...``) so it behaves exactly
as it does in production. The backends' ports come from the flag file's ``backends`` URLs, so the
proxy and the processes always agree. Stores are SQLite files in ``--data-dir`` (default
``.banyan/`` beside the flag file). Both backends get the same JWT secret: ``BANYAN_JWT_SECRET``
when exported, else a random one made on the first run and kept in ``<data-dir>/jwt-secret`` (mode
0600; a file other users can read is refused); the proxy gets it too, to stamp each write's time.
The proxy also gets an admin token (``BANYAN_ADMIN_TOKEN``, else ``.banyan/admin-token`` beside the
flag file, made the same way) that ``banyan rollout``/``mirror``/``status`` find there. The first
process to exit, or Ctrl-C / SIGTERM, stops the others.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import os
import signal
import sys
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import yaml

from banyan import private_file, processes
from banyan.admin_token import TOKEN_ENV, AdminTokenError, stack_token
from banyan.backends.common.tokens import MIN_SECRET_CHARS, SECRET_ENV, new_secret
from banyan.env import flags_default
from banyan.errors import StackError

MODULES = {
    "model": "banyan.backends.model.cli",
    "legacy": "banyan.backends.legacy.cli",
    "new": "banyan.backends.new.cli",
    "proxy": "banyan.proxy.server_cli",
}


SECRET_FILE = "jwt-secret"


@dataclass
class Part:
    name: str
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    process: asyncio.subprocess.Process | None = None
    url: str | None = None


def _port_of(url: str, fallback: int) -> int:
    return urlsplit(url).port or fallback


def _backend_urls(flags_path: Path) -> dict[str, str]:
    data = yaml.safe_load(flags_path.read_text()) or {}
    urls: dict[str, str] = {}
    for name, spec in (data.get("backends") or {}).items():
        urls[name] = spec["url"] if isinstance(spec, dict) else str(spec)
    return urls


def available(module: str) -> bool:
    """Whether a part's command module is installed (a checkout may not have every part yet)."""
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


def stack_secret(data_dir: Path) -> str:
    """The JWT secret both backends share: the exported one, else the data dir's own file (made
    with a random secret, readable only by this user, on the first run)."""
    exported = os.environ.get(SECRET_ENV)
    if exported:
        return exported
    path = data_dir / SECRET_FILE
    try:
        return private_file.keep(
            path,
            new_secret,
            what="secret",
            min_chars=MIN_SECRET_CHARS,
            lose=" (tokens signed with it stop working)",
        )
    except private_file.PrivateFileError as exc:
        raise StackError(str(exc)) from exc


def _backend_part(
    name: str, py: list[str], host: str, port: int, data_dir: Path, env: dict[str, str]
) -> Part:
    """Legacy or new, on ``port``, its SQLite store in ``data_dir``."""
    db = f"sqlite+aiosqlite:///{data_dir / f'{name}.db'}"
    return Part(name, [*py, name, "--host", host, "--port", str(port), "--db", db], env)


def _proxy_part(
    py: list[str], flags_path: Path, host: str, port: int, data_dir: Path, secret: str, admin: str
) -> Part:
    """The proxy, its parity and mirror stores in ``data_dir`` unless exported."""
    env = {
        "BANYAN_PARITY_DB": os.environ.get(
            "BANYAN_PARITY_DB", f"sqlite+aiosqlite:///{data_dir / 'parity.db'}"
        ),
        "BANYAN_MIRROR_DB": os.environ.get(
            "BANYAN_MIRROR_DB", f"sqlite+aiosqlite:///{data_dir / 'mirror.db'}"
        ),
        SECRET_ENV: secret,  # stamps writes (X-Banyan-Stamp) as the backends verify them
        TOKEN_ENV: admin,  # the CLI finds it in .banyan/admin-token (banyan.admin_token)
    }
    argv = [*py, "proxy", "--flags", str(flags_path), "--host", host, "--port", str(port)]
    return Part("proxy", argv, env)


def _installed(parts: list[Part]) -> list[Part]:
    """``parts`` without those whose module this checkout lacks (each said on stdout)."""
    missing = [p.name for p in parts if not available(MODULES[p.name])]
    for name in missing:
        print(f"banyan up: {name} is not part of this checkout yet; not started", flush=True)
    return [p for p in parts if p.name not in missing]


def plan(args: argparse.Namespace) -> list[Part]:
    """The processes ``banyan up`` starts, in start order."""
    flags_path = Path(args.flags).resolve()
    data_dir = Path(args.data_dir).resolve() if args.data_dir else flags_path.parent / ".banyan"
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    urls = _backend_urls(flags_path)
    py = [sys.executable, "-m", "banyan.proxy.cli"]
    host = args.host
    model_url = f"http://{host}:{args.model_port}/v1"
    secret = stack_secret(data_dir)
    try:
        admin = stack_token(flags_path)
    except AdminTokenError as exc:
        raise StackError(str(exc)) from exc
    backend_env = {
        "OPENAI_BASE_URL": os.environ.get("OPENAI_BASE_URL", model_url),
        SECRET_ENV: secret,  # in the environment, never on a command line
    }
    parts: list[Part] = []
    if "OPENAI_BASE_URL" not in os.environ:
        parts.append(Part("model", [*py, "model", "--host", host, "--port", str(args.model_port)]))
    for name, default_port in (("legacy", 8001), ("new", 8002)):
        port = _port_of(urls.get(name, ""), default_port)
        parts.append(_backend_part(name, py, host, port, data_dir, backend_env))
    parts.append(_proxy_part(py, flags_path, host, args.port, data_dir, secret, admin))
    return _installed(parts)


async def _start(part: Part) -> None:
    child = await processes.start(part.name, part.argv, env=part.env, quiet=False)
    part.process, part.url = child.process, child.url
    print(f"  {part.name:<7} {part.url}", flush=True)


async def _stop(parts: list[Part]) -> None:
    await asyncio.gather(*(processes.stop(p.process) for p in reversed(parts) if p.process))


async def run_stack(parts: list[Part]) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    print("banyan up: starting the stack", flush=True)
    try:
        for part in parts:
            await _start(part)
        print("banyan up: ready — point the frontend at the proxy", flush=True)
        waits = [asyncio.ensure_future(p.process.wait()) for p in parts if p.process]
        stopper = asyncio.ensure_future(stop.wait())
        done, _ = await asyncio.wait([*waits, stopper], return_when=asyncio.FIRST_COMPLETED)
        for task in [*waits, stopper]:
            task.cancel()
        exited = [p for p in parts if p.process and p.process.returncode is not None]
        for part in exited:
            print(f"banyan up: {part.name} exited ({part.process.returncode})", file=sys.stderr)  # type: ignore[union-attr]
        return 1 if exited and stopper not in done else 0
    except (RuntimeError, TimeoutError) as exc:
        print(f"banyan up: {exc}", file=sys.stderr, flush=True)
        return 1
    finally:
        await _stop(parts)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="banyan up", description=__doc__)
    parser.add_argument("--flags", default=flags_default())
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080, help="proxy port")
    parser.add_argument("--model-port", type=int, default=8003)
    parser.add_argument("--data-dir", default=None, help="where the SQLite stores live")
    return parser


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    if not Path(args.flags).is_file():
        print(f"banyan up: flag file {args.flags} not found", file=sys.stderr)
        return 2
    try:
        parts = plan(args)
    except StackError as exc:
        print(f"banyan up: {exc}", file=sys.stderr)
        return 2
    return asyncio.run(run_stack(parts))
