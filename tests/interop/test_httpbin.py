"""Proof against software we did not write: httpbin (from PyPI, in its own venv, served by
gunicorn) twice behind the proxy, as legacy and as new.

(a) For a battery of safe requests, the answer through the proxy is the direct answer byte for
byte, apart from what a proxy must change (its three marks; ``Connection``/``Transfer-Encoding``
framing; the ``Date`` value, which is the clock's).
(b) In ``mode: shadow`` with ``sample: 100``, three rounds of the battery compare without a single
mismatch, and no unsafe request reaches the candidate.
(c) A candidate with three known differences has each found and pinpointed in the parity store.

httpbin is not a project dependency: it is installed once into a venv under
``$BANYAN_INTEROP_CACHE`` (default ``~/.cache/banyan-interop``). Without PyPI the tests skip,
loudly — except under CI (``CI`` set), where PyPI is there and a failed install fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from banyan.parity.store import ParityRecorder, ParityStore
from banyan.ports import free_port
from banyan.proxy.app import STATE, create_app
from banyan.proxy.shadow import Shadow
from banyan.serving import serve
from tests.interop.httpbin_battery import (
    BATTERY,
    UNSAFE,
    Answer,
    RawClient,
    client_form,
    direct_form,
)

INTEROP = Path(__file__).parent
CACHE = Path(os.environ.get("BANYAN_INTEROP_CACHE", Path.home() / ".cache" / "banyan-interop"))
REQUIREMENTS = ["httpbin>=0.10,<0.11", "gunicorn>=21"]
OURS = {b"x-banyan-feature", b"x-banyan-backend", b"x-request-id"}
FRAMING = {b"connection", b"keep-alive", b"transfer-encoding"}

FLAGS = """\
version: 1
backends:
  legacy: {legacy}
  new: {new}
features:
  everything:
    routes: ["/**"]
    mode: {mode}
    parity: {{sample: 100, noise_sample: 0, headers: [content-type, set-cookie, location]}}
default: legacy
"""


@pytest.fixture(scope="session")
def httpbin_venv() -> Path:
    """A venv holding httpbin and gunicorn, made once and kept in the cache."""
    venv = CACHE / f"httpbin-py{sys.version_info[0]}{sys.version_info[1]}"
    ready = venv / ".installed"
    if ready.exists():
        return venv
    CACHE.mkdir(parents=True, exist_ok=True)
    steps = [
        [sys.executable, "-m", "venv", "--clear", str(venv)],
        [str(venv / "bin" / "pip"), "install", "--quiet", *REQUIREMENTS],
    ]
    for step in steps:
        done = subprocess.run(step, capture_output=True, text=True, timeout=600)
        if done.returncode != 0:
            reason = f"interop: cannot install httpbin from PyPI: {done.stderr[-800:]}"
            if os.environ.get("CI"):
                pytest.fail(reason)
            pytest.skip(reason)
    ready.write_text(" ".join(REQUIREMENTS))
    return venv


@contextlib.contextmanager
def gunicorn(venv: Path, app: str, log: Path) -> Iterator[str]:
    """httpbin (or the variant) served by gunicorn on a loopback port; stopped on the way out."""
    port = free_port()
    process = subprocess.Popen(
        [
            str(venv / "bin" / "gunicorn"),
            "-b",
            f"127.0.0.1:{port}",
            "-k",
            "gthread",
            "-w",
            "3",
            "--threads",
            "1",  # httpbin seeds the process-wide random (/bytes?seed=): one request at a time
            "--limit-request-line",
            "0",  # a 12 KB query (the big answer header's)
            "--access-logfile",
            str(log),
            app,
        ],
        env={**os.environ, "PYTHONPATH": str(INTEROP)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                break
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"gunicorn {app} did not start")
            time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextlib.asynccontextmanager
async def behind_proxy(
    tmp_path: Path, legacy: str, new: str, mode: str, *, parity: bool = False
) -> AsyncIterator[tuple[str, Shadow | None]]:
    flags = tmp_path / "flags.yaml"
    flags.write_text(FLAGS.format(legacy=legacy, new=new, mode=mode))
    shadow = None
    if parity:
        store = ParityStore(f"sqlite+aiosqlite:///{tmp_path / 'parity.db'}")
        shadow = Shadow(ParityRecorder(store, flush_interval=0.05))
    app = create_app(flags, access_log=False, shadow=shadow, health_interval=3600)
    async with serve(app) as url:
        assert app[STATE].flags.feature("everything") is not None
        yield url, shadow


def normalized(answer: Answer, *, proxied: bool) -> tuple[bytes, list[tuple[bytes, bytes]], bytes]:
    """What must be equal: the status line, the headers but framing, our marks (proxied) and the
    Date value, and the body after framing (a gzip body without its timestamp)."""
    headers = []
    for name, value in answer.headers:
        lowered = name.lower()
        if lowered in FRAMING or (proxied and lowered in OURS):
            continue
        headers.append((name, b"<date>" if lowered == b"date" else value))
    body = answer.body
    if answer.header(b"content-encoding") == [b"gzip"] and body[:2] == b"\x1f\x8b":
        body = body[:4] + b"\0\0\0\0" + body[8:]  # gzip's MTIME is the clock's
    return answer.status_line, headers, body


async def run_battery(
    url: str,
    rid_prefix: str,
    battery: list[tuple[str, str, tuple[str, ...]]] = BATTERY,
    shadow: Shadow | None = None,
) -> list[Answer]:
    """Send the battery on one keep-alive connection; with a ``shadow``, keep its copies in
    flight under its cap (past it, copies are skipped as ``too_many_in_flight``, by design)."""
    client = RawClient(url)
    answers = []
    try:
        for i, (method, target, lines) in enumerate(battery):
            request = client_form(method, target, lines, f"{rid_prefix}-{i}")
            answers.append(await client.ask(request, head_request=method == "HEAD"))
            while shadow is not None and shadow.inflight > shadow.max_inflight // 4:
                await asyncio.sleep(0.01)
    finally:
        await client.close()
    return answers


async def settle(shadow: Shadow, count: int) -> dict[str, Any]:
    done = 0
    for _ in range(1500):
        await shadow.recorder.flush()
        data = await shadow.recorder.store.summary()
        done = sum(f["compared"] + f["skipped"] for f in data["features"])
        if done >= count and shadow.inflight == 0:
            return data
        await asyncio.sleep(0.02)
    raise AssertionError(f"only {done} of {count} comparisons recorded")


async def test_proxied_answers_equal_direct_answers_byte_for_byte(
    httpbin_venv: Path, tmp_path: Path
) -> None:
    assert len(BATTERY) >= 60
    with (
        gunicorn(httpbin_venv, "httpbin:app", tmp_path / "legacy.log") as legacy,
        gunicorn(httpbin_venv, "httpbin:app", tmp_path / "new.log") as new,
    ):
        async with behind_proxy(tmp_path, legacy, new, "legacy") as (url, _):
            proxied = await run_battery(url, "rid")
        direct_client = RawClient(legacy)
        try:
            direct = [
                await direct_client.ask(
                    direct_form(method, target, lines, f"rid-{i}"),
                    head_request=method == "HEAD",
                )
                for i, (method, target, lines) in enumerate(BATTERY)
            ]
        finally:
            await direct_client.close()
    differing = []
    for (method, target, _), through, alone in zip(BATTERY, proxied, direct, strict=True):
        if normalized(through, proxied=True) != normalized(alone, proxied=False):
            differing.append((method, target[:80], through.status_line, alone.status_line))
        assert through.header(b"x-banyan-backend") == [b"legacy"]
    assert differing == []
    big = proxied[[t for _, t, _ in BATTERY].index(next(t for _, t, _ in BATTERY if "X-Big" in t))]
    assert len(big.header(b"X-Big")[0]) == 12 * 1024
    gzipped = proxied[15]
    assert gzipped.header(b"content-encoding") == [b"gzip"] and gzip.decompress(gzipped.body)


async def test_shadowing_identical_backends_finds_no_mismatch(
    httpbin_venv: Path, tmp_path: Path
) -> None:
    with (
        gunicorn(httpbin_venv, "httpbin:app", tmp_path / "legacy.log") as legacy,
        gunicorn(httpbin_venv, "httpbin:app", tmp_path / "new.log") as new,
    ):
        async with behind_proxy(tmp_path, legacy, new, "shadow", parity=True) as (url, shadow):
            assert shadow is not None
            for round_ in range(3):
                await run_battery(url, f"r{round_}", shadow=shadow)
                await run_battery(url, f"u{round_}", UNSAFE, shadow=shadow)
            data = await settle(shadow, 3 * len(BATTERY))
            assert shadow.state is not None
            skipped = dict(shadow.state.metrics.shadow_skipped.values)
        candidate_log = (tmp_path / "new.log").read_text()
        primary_log = (tmp_path / "legacy.log").read_text()
    [feature] = data["features"]
    mismatches = {
        e["endpoint"]: [f["path"] for f in e["top_fields"]]
        for e in feature["endpoints"]
        if e.get("mismatched")
    }
    assert mismatches == {}
    assert feature["compared"] == 3 * len(BATTERY) and feature["errors"] == 0, skipped
    for method in ("POST", "PUT", "PATCH", "DELETE"):
        assert f'"{method} /' in primary_log
        assert f'"{method} /' not in candidate_log  # writes: skip — never copied


async def test_each_difference_of_a_candidate_is_pinpointed(
    httpbin_venv: Path, tmp_path: Path
) -> None:
    with (
        gunicorn(httpbin_venv, "httpbin:app", tmp_path / "legacy.log") as legacy,
        gunicorn(httpbin_venv, "httpbin_variant:app", tmp_path / "new.log") as new,
    ):
        async with behind_proxy(tmp_path, legacy, new, "shadow", parity=True) as (url, shadow):
            assert shadow is not None
            await run_battery(url, "v", shadow=shadow)
            data = await settle(shadow, len(BATTERY))
    [feature] = data["features"]
    found = {
        e["endpoint"]: sorted({f["path"] for f in e["top_fields"]})
        for e in feature["endpoints"]
        if e.get("mismatched")
    }
    assert found.get("GET /json") == ["$.slideshow.title"], found
    assert found.get("GET /redirect-to") == ["header:location"], found
    assert found.get("GET /cookies/set") == ["header:set-cookie"], found
    assert set(found) == {"GET /json", "GET /redirect-to", "GET /cookies/set"}, found
    endpoint = next(e for e in feature["endpoints"] if e["endpoint"] == "GET /cookies/set")
    [cookies] = endpoint["top_fields"]
    differences = cookies["examples"][0]["differences"]
    # the middle one of three cookies is the one missing
    assert [(d["path"], d["kind"], d["candidate"]) for d in differences] == [
        ("header:set-cookie[1]", "removed", None)
    ]
