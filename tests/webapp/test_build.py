"""The committed build of the web app matches its sources (rebuild with `npm run build` in web/)."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path

import pytest

from banyan.webapp import DIST, SOURCES, build_info, sources_digest

STALE = "banyan/webapp/dist is stale: run `npm ci && npm run build` in web/ and commit dist/"


def source_files() -> list[str]:
    fixed = ["build.mjs", "digest.mjs", "package.json", "package-lock.json", "tsconfig.json"]
    found = [p.relative_to(SOURCES).as_posix() for p in (SOURCES / "src").rglob("*") if p.is_file()]
    return sorted(fixed + found)


def test_the_build_was_made_from_the_sources_as_they_are() -> None:
    info = build_info()
    assert info["sources"] == source_files(), STALE  # a source added or removed since the build
    assert sources_digest(SOURCES, info["sources"]) == info["sources_digest"], STALE


def test_every_built_file_is_there_as_built_and_nothing_else() -> None:
    files = build_info()["files"]
    on_disk = {p.relative_to(DIST).as_posix() for p in DIST.rglob("*") if p.is_file()} - {
        "build.json"
    }
    assert on_disk == set(files)
    for name, digest in files.items():
        assert hashlib.sha256((DIST / name).read_bytes()).hexdigest() == digest, name
    index = (DIST / "index.html").read_text()
    assets = [name for name in files if name.startswith("assets/")]
    assert assets and all(f'"{name}"' in index for name in assets)  # relative, hashed names


def test_the_digest_changes_with_any_source_byte(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "a.ts").write_text("export const a = 1\n")
    (tmp_path / "b.json").write_text("{}")
    before = sources_digest(tmp_path, ["src/a.ts", "b.json"])
    assert before == sources_digest(tmp_path, ["b.json", "src/a.ts"])  # order-free
    (tmp_path / "src" / "a.ts").write_text("export const a = 2\n")
    assert sources_digest(tmp_path, ["src/a.ts", "b.json"]) != before


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_python_and_the_build_script_compute_the_same_digest() -> None:
    done = subprocess.run(
        ["node", "digest.mjs"], cwd=SOURCES, capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == sources_digest(SOURCES, source_files())
