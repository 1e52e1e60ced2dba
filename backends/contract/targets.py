"""What the contract suite runs against: each target is a base URL with a fresh store behind it.

Targets: ``legacy`` and ``new`` (the backend in-process on SQLite in a temp dir), ``proxy-legacy``
and ``proxy-new`` (both backends plus the proxy, every ``/api/**`` and ``/ws/**`` route flagged
to one of them), ``legacy-pg`` and ``new-pg`` (the backend on a throwaway PostgreSQL database),
and ``external`` (a server somebody else started, given with ``--base-url``). A target whose
modules do not import yet, or whose database is unreachable, is skipped with the reason.
"""

from __future__ import annotations

import importlib
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from banyan import pg
from banyan.testing import serve

LOCAL_TARGETS: tuple[str, ...] = (
    "legacy",
    "new",
    "proxy-legacy",
    "proxy-new",
    "legacy-pg",
    "new-pg",
)
EXTERNAL = "external"


@dataclass(frozen=True, slots=True)
class Target:
    """A running API: where it is, which backend answers, and whether the proxy is in front."""

    name: str
    base_url: str
    backend: str | None  # "legacy" | "new"; None when unknown (external)
    via_proxy: bool = False
    peer_url: str | None = None  # behind the proxy: the backend that is NOT serving, directly

    @property
    def ws_url(self) -> str:
        return "ws" + self.base_url.removeprefix("http")


def backend_factory(kind: str) -> Callable[..., web.Application]:
    """``backends.<kind>.app.create_app``, or a skip naming why it cannot be imported."""
    module_name = f"backends.{kind}.app"
    try:
        module = importlib.import_module(module_name)
        factory: Callable[..., web.Application] = module.create_app
    except (ImportError, AttributeError) as exc:
        pytest.skip(f"{module_name}.create_app is not available yet: {exc!r}")
    return factory


def sqlite_url(directory: Path, kind: str) -> str:
    return f"sqlite+aiosqlite:///{directory / f'{kind}.db'}"


@asynccontextmanager
async def postgres_database(prefix: str) -> AsyncIterator[str]:
    if not await pg.postgres_available():
        pytest.skip(f"PostgreSQL not reachable at {pg.postgres_url()}: the -pg targets need it")
    async with pg.temp_database(prefix) as url:
        yield url


@asynccontextmanager
async def serve_backend(kind: str, db_url: str, **options: Any) -> AsyncIterator[str]:
    """Run one backend in-process on ``db_url``; yield its base URL."""
    factory = backend_factory(kind)
    try:
        app = factory(db_url, **options)
    except TypeError as exc:
        if options:
            pytest.skip(f"backends.{kind}.app.create_app does not accept {sorted(options)}: {exc}")
        raise
    async with serve(app) as url:
        yield url


def proxy_flags(legacy_url: str, new_url: str, mode: str) -> str:
    return (
        "version: 1\n"
        f"backends:\n  legacy: {legacy_url}\n  new: {new_url}\n"
        "features:\n"
        "  api:\n"
        '    routes: ["/api/**", "/ws/**"]\n'
        f"    mode: {mode}\n"
        "default: legacy\n"
    )


@asynccontextmanager
async def open_target(
    name: str, workdir: Path, *, base_url: str | None = None, **options: Any
) -> AsyncIterator[Target]:
    """Start target ``name`` with a fresh store under ``workdir``; stop it when the block ends."""
    async with AsyncExitStack() as stack:
        if name == EXTERNAL:
            if not base_url:
                pytest.skip("the external target needs --base-url")
            yield Target(name, base_url.rstrip("/"), None)
            return
        if name in ("legacy", "new"):
            url = await stack.enter_async_context(
                serve_backend(name, sqlite_url(workdir, name), **options)
            )
            yield Target(name, url, name)
            return
        if name in ("legacy-pg", "new-pg"):
            kind = name.removesuffix("-pg")
            db = await stack.enter_async_context(postgres_database(f"contract_{kind}"))
            url = await stack.enter_async_context(serve_backend(kind, db, **options))
            yield Target(name, url, kind)
            return
        if name in ("proxy-legacy", "proxy-new"):
            kind = name.removeprefix("proxy-")
            try:
                proxy_app = importlib.import_module("proxy.app")
            except ImportError as exc:
                pytest.skip(f"proxy.app is not available yet: {exc!r}")
            legacy_url = await stack.enter_async_context(
                serve_backend("legacy", sqlite_url(workdir, "legacy"), **options)
            )
            new_url = await stack.enter_async_context(
                serve_backend("new", sqlite_url(workdir, "new"), **options)
            )
            flags = workdir / "flags.yaml"
            flags.write_text(proxy_flags(legacy_url, new_url, kind))
            app = proxy_app.create_app(flags, access_log=False, health_interval=0.5)
            url = await stack.enter_async_context(serve(app))
            peer = new_url if kind == "legacy" else legacy_url
            yield Target(name, url, kind, via_proxy=True, peer_url=peer)
            return
        raise ValueError(f"unknown contract target {name!r}")
