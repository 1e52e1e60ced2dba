"""What the contract suite runs against: each target is a base URL with a fresh store behind it.

Targets: ``legacy`` and ``new`` (the backend in-process on SQLite in a temp dir), ``proxy-legacy``
and ``proxy-new`` (both backends plus the proxy, every ``/api/**`` and ``/ws/**`` route flagged
to one of them), ``legacy-pg`` and ``new-pg`` (the backend on a throwaway PostgreSQL database),
``proxy-shadow`` and ``proxy-shadow-new`` (the proxy on the repository's ``flags.yaml`` with every
feature in shadow mode, legacy resp. new answering, its own parity store; see
:mod:`banyan.backends.contract.shadow`), and ``external`` (a server somebody else started, given
with
``--base-url``). A target whose
modules do not import yet, or whose database is unreachable, is skipped with the reason. Every
local target has its own deterministic model server (``Target.model_url``), which its backends
reach through ``OPENAI_BASE_URL``.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from banyan import pg
from banyan.backends.contract.shadow import BACKENDS, SHADOW_PRIMARY, shadow_flags
from banyan.ports import free_port
from banyan.serving import serve

LOCAL_TARGETS: tuple[str, ...] = (
    "legacy",
    "new",
    "proxy-legacy",
    "proxy-new",
    "legacy-pg",
    "new-pg",
    "proxy-shadow",
    "proxy-shadow-new",
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
    model_url: str | None = None  # the model server the backends ask (``.../v1``), when known
    shadow: Any = (
        None  # shadow targets: the proxy's ``banyan.proxy.shadow.Shadow`` (parity recorder)
    )

    @property
    def shadowed(self) -> bool:
        """Every request is also sent to the other backend and compared (``proxy-shadow*``)."""
        return self.shadow is not None

    @property
    def ws_url(self) -> str:
        return "ws" + self.base_url.removeprefix("http")


def backend_factory(kind: str) -> Callable[..., web.Application]:
    """``banyan.backends.<kind>.app.create_app``."""
    factory: Callable[..., web.Application] = importlib.import_module(
        f"banyan.backends.{kind}.app"
    ).create_app
    return factory


def sqlite_url(directory: Path, kind: str) -> str:
    return f"sqlite+aiosqlite:///{directory / f'{kind}.db'}"


@asynccontextmanager
async def postgres_database(prefix: str) -> AsyncIterator[str]:
    if not await pg.postgres_available():
        pytest.skip(f"PostgreSQL not reachable at {pg.postgres_url()}: the -pg targets need it")
    async with pg.temp_database(prefix) as url:
        yield url


@contextmanager
def environment(values: Mapping[str, str]) -> Iterator[None]:
    """Set environment variables for the block (backends read them when they are created)."""
    previous = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in previous.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@asynccontextmanager
async def model_server(**knobs: Any) -> AsyncIterator[str]:
    """The deterministic model server in-process; yield its ``/v1`` URL. Backends created inside
    the block are pointed at it through ``OPENAI_BASE_URL`` (restored afterwards). ``knobs`` are
    the server's fault settings (``fail_rate``, ``malformed_rate``, ``latency_ms``...);
    ``down=True`` starts nothing and points at a closed port instead."""
    if knobs.pop("down", False):
        with environment({"OPENAI_BASE_URL": f"http://127.0.0.1:{free_port()}/v1"}):
            yield os.environ["OPENAI_BASE_URL"]
        return
    model = importlib.import_module("banyan.backends.model.server")
    async with serve(model.create_app(**knobs)) as url:
        with environment({"OPENAI_BASE_URL": url + "/v1"}):
            yield url + "/v1"


@asynccontextmanager
async def serve_backend(kind: str, db_url: str, **options: Any) -> AsyncIterator[str]:
    """Run one backend in-process on ``db_url``; yield its base URL."""
    factory = backend_factory(kind)
    try:
        app = factory(db_url, **options)
    except TypeError as exc:
        if options:
            pytest.skip(
                f"banyan.backends.{kind}.app.create_app does not accept {sorted(options)}: {exc}"
            )
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
    name: str,
    workdir: Path,
    *,
    base_url: str | None = None,
    model: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
    **options: Any,
) -> AsyncIterator[Target]:
    """Start target ``name`` with a fresh store under ``workdir``; stop it when the block ends.
    ``model`` holds fault knobs of its model server, ``env`` variables its backends are created
    with (e.g. ``BANYAN_LLM_TIMEOUT``), ``options`` keyword arguments of ``create_app``."""
    async with AsyncExitStack() as stack:
        stack.enter_context(environment(env or {}))
        if name == EXTERNAL:
            if not base_url:
                pytest.skip("the external target needs --base-url")
            yield Target(name, base_url.rstrip("/"), None)
            return
        if name not in LOCAL_TARGETS:
            raise ValueError(f"unknown contract target {name!r}")
        model_url = await stack.enter_async_context(model_server(**(model or {})))
        if name in ("legacy", "new"):
            url = await stack.enter_async_context(
                serve_backend(name, sqlite_url(workdir, name), **options)
            )
            yield Target(name, url, name, model_url=model_url)
            return
        if name in ("legacy-pg", "new-pg"):
            kind = name.removesuffix("-pg")
            db = await stack.enter_async_context(postgres_database(f"contract_{kind}"))
            url = await stack.enter_async_context(serve_backend(kind, db, **options))
            yield Target(name, url, kind, model_url=model_url)
            return
        if name in ("proxy-legacy", "proxy-new"):
            kind = name.removeprefix("proxy-")
            proxy_app = importlib.import_module("banyan.proxy.app")
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
            yield Target(name, url, kind, via_proxy=True, peer_url=peer, model_url=model_url)
            return
        yield await stack.enter_async_context(shadow_target(name, workdir, model_url, options))


@asynccontextmanager
async def shadow_target(
    name: str, workdir: Path, model_url: str, options: Mapping[str, Any]
) -> AsyncIterator[Target]:
    """Both backends and the proxy on the repository's features, every one shadowed."""
    try:
        proxy_app = importlib.import_module("banyan.proxy.app")
        shadow_module = importlib.import_module("banyan.proxy.shadow")
        parity_store = importlib.import_module("banyan.parity.store")
    except ImportError as exc:
        pytest.skip(f"the proxy's shadow mode is not available yet: {exc!r}")
    primary = SHADOW_PRIMARY[name]
    async with (
        serve_backend("legacy", sqlite_url(workdir, "legacy"), **options) as legacy_url,
        serve_backend("new", sqlite_url(workdir, "new"), **options) as new_url,
    ):
        flags = workdir / "flags.yaml"
        flags.write_text(shadow_flags(legacy_url, new_url, primary))
        store = parity_store.ParityStore(sqlite_url(workdir, "parity"))
        shadow = shadow_module.Shadow(parity_store.ParityRecorder(store, flush_interval=0.05))
        app = proxy_app.create_app(flags, access_log=False, health_interval=0.5, shadow=shadow)
        async with serve(app) as url:
            peer = new_url if primary == "legacy" else legacy_url
            BACKENDS[url] = (legacy_url, new_url)
            try:
                yield Target(
                    name,
                    url,
                    primary,
                    via_proxy=True,
                    peer_url=peer,
                    model_url=model_url,
                    shadow=shadow,
                )
            finally:
                BACKENDS.pop(url, None)
