"""Fixtures for the proxy tests: two recording upstreams and a proxy in front of them."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from banyan.testing import serve
from proxy.app import STATE, ProxyState, create_app
from tests.proxy.upstreams import Recorder, flags_yaml

ALL_LEGACY = """\
  api:
    routes: ["/api/**", "/ws/**", "/echo/**", "/upload", "/download", "/sse", "/ack",
             "/gzip", "/hop", "/slow", "/status/*", "/clock"]
    mode: legacy
"""


@dataclass
class Stack:
    url: str
    flags: Path
    legacy: Recorder
    new: Recorder
    state: ProxyState
    legacy_url: str
    new_url: str

    def write_flags(self, features: str, extra: str = "") -> None:
        tmp = self.flags.with_suffix(".tmp")
        tmp.write_text(flags_yaml(self.legacy_url, self.new_url, features, extra))
        tmp.replace(self.flags)


@pytest.fixture
def make_stack(tmp_path: Path) -> Callable[..., Any]:
    @asynccontextmanager
    async def factory(
        features: str = ALL_LEGACY, extra: str = "", **kwargs: Any
    ) -> AsyncIterator[Stack]:
        legacy, new = Recorder("legacy"), Recorder("new")
        async with serve(legacy.app) as legacy_url, serve(new.app) as new_url:
            flags = tmp_path / "flags.yaml"
            flags.write_text(flags_yaml(legacy_url, new_url, features, extra))
            kwargs.setdefault("health_interval", 0.2)
            app = create_app(flags, **kwargs)
            async with serve(app) as url:
                yield Stack(url, flags, legacy, new, app[STATE], legacy_url, new_url)

    return factory


@asynccontextmanager
async def real_backends_behind_proxy(
    tmp_path: Path, flags_template: str, *, shadow: Any = None, **fields: str
) -> AsyncIterator[dict[str, str]]:
    """The real legacy and new backends (SQLite under ``tmp_path``) behind a real proxy whose flag
    file is ``flags_template`` filled with their URLs (and ``fields``), with ``shadow`` as its
    parity side if given; yields the base URLs by name: ``proxy``, ``legacy``, ``new``."""
    from backends.legacy.app import create_app as legacy_app
    from backends.new.app import create_app as new_app

    legacy = legacy_app(f"sqlite+aiosqlite:///{tmp_path / 'legacy.db'}")
    new = new_app(f"sqlite+aiosqlite:///{tmp_path / 'new.db'}")
    async with serve(legacy) as legacy_url, serve(new) as new_url:
        flags = tmp_path / "flags.yaml"
        flags.write_text(flags_template.format(legacy=legacy_url, new=new_url, **fields))
        async with serve(create_app(flags, access_log=False, shadow=shadow)) as proxy_url:
            yield {"proxy": proxy_url, "legacy": legacy_url, "new": new_url}
