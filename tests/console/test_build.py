"""The committed build of the console matches its sources (rebuild with `npm run build` in
console/), and the proxy can read it."""

from __future__ import annotations

import hashlib
import shutil
import subprocess

import pytest

from banyan.console import DIST, SOURCES
from banyan.webapp import build_info, load_assets, sources_digest

STALE = "banyan/console/dist is stale: run `npm ci && npm run build` in console/ and commit dist/"


def source_files() -> list[str]:
    fixed = ["build.mjs", "digest.mjs", "package.json", "package-lock.json", "tsconfig.json"]
    found = [p.relative_to(SOURCES).as_posix() for p in (SOURCES / "src").rglob("*") if p.is_file()]
    return sorted(fixed + found)


def test_the_build_was_made_from_the_sources_as_they_are() -> None:
    info = build_info(DIST)
    assert info["sources"] == source_files(), STALE
    assert sources_digest(SOURCES, info["sources"]) == info["sources_digest"], STALE


def test_every_built_file_is_there_as_built_and_nothing_else() -> None:
    files = build_info(DIST)["files"]
    on_disk = {p.relative_to(DIST).as_posix() for p in DIST.rglob("*") if p.is_file()}
    assert on_disk - {"build.json"} == set(files)
    for name, digest in files.items():
        assert hashlib.sha256((DIST / name).read_bytes()).hexdigest() == digest, name
    index = (DIST / "index.html").read_text()
    assets = [name for name in files if name.startswith("assets/")]
    assert len(assets) == 2 and all(f'"{name}"' in index for name in assets)  # relative names
    assert set(load_assets(DIST)) == set(files)


def test_the_console_is_small_and_loads_nothing_from_elsewhere() -> None:
    files = build_info(DIST)["files"]
    total = sum((DIST / name).stat().st_size for name in files)
    assert total < 100_000  # no framework: a few panels of plain TypeScript
    for name in files:
        text = (DIST / name).read_text()
        assert "http://" not in text.replace("http://www.w3.org/2000/svg", "")
        assert "https://" not in text


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_python_and_the_build_script_compute_the_same_digest() -> None:
    done = subprocess.run(
        ["node", "digest.mjs"], cwd=SOURCES, capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == sources_digest(SOURCES, source_files())
