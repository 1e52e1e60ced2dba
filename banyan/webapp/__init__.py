"""The AI Tutor web app as shipped: the committed build in ``dist/`` and how to read it.

The sources live in ``web/`` (TypeScript, bundled by esbuild, pinned by ``web/package-lock.json``);
``npm run build`` there writes ``dist/index.html``, ``dist/assets/*`` (content-hashed names) and
``dist/build.json``, which records the digest of the sources and of every built file. The build is
committed so that the backends serve the app with Python alone; ``tests/webapp/test_build.py``
fails when the sources changed without a rebuild. :func:`load_assets` reads the build once for
``banyan/backends/common/webapp.py``, which serves it.
"""

from __future__ import annotations

import gzip
import hashlib
import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

DIST = Path(__file__).parent / "dist"
SOURCES = Path(__file__).resolve().parents[2] / "web"  # only in a checkout, not an install

MEDIA_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
}


@dataclass(frozen=True)
class Asset:
    """One built file, held in memory with its gzip form (the whole app is ~120 KB)."""

    body: bytes
    gzipped: bytes
    media_type: str
    etag: str


def build_info(dist: Path = DIST) -> dict[str, Any]:
    """``dist/build.json``: ``sources_digest``, ``sources`` and ``files`` (path -> sha256)."""
    info: dict[str, Any] = json.loads((dist / "build.json").read_text())
    return info


def sources_digest(root: Path, paths: list[str]) -> str:
    """The digest ``web/build.mjs`` records: sha256 over ``path\\0sha256(content)\\n``, sorted."""
    lines = [
        f"{path}\0{hashlib.sha256((root / path).read_bytes()).hexdigest()}\n"
        for path in sorted(paths)
    ]
    return hashlib.sha256("".join(lines).encode()).hexdigest()


@lru_cache(maxsize=4)
def load_assets(dist: Path = DIST) -> dict[str, Asset]:
    """Every file ``build.json`` lists, by its path under ``dist`` (``index.html``,
    ``assets/main-<hash>.js``...). Raises ``FileNotFoundError`` without a build."""
    assets: dict[str, Asset] = {}
    for name, digest in build_info(dist)["files"].items():
        body = (dist / name).read_bytes()
        assets[name] = Asset(
            body=body,
            gzipped=gzip.compress(body, compresslevel=9, mtime=0),
            media_type=MEDIA_TYPES.get(Path(name).suffix, "application/octet-stream"),
            etag=f'"{digest[:32]}"',
        )
    return assets
