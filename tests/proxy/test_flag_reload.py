"""Tests for FlagStore in banyan/proxy/flags.py: real files, a real watcher, every way a file
changes."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from banyan.proxy.flags import FlagError, FlagSet, FlagStore
from banyan.proxy.flags.store import file_signature

GOOD = """\
version: 1
backends:
  legacy: http://127.0.0.1:8001
  new: http://127.0.0.1:8002
features:
  sessions:
    routes: ["/api/sessions/**"]
    mode: {mode}
default: legacy
"""

INVALID = GOOD.replace("    mode: {mode}\n", "    mode: {mode}\n    colour: red\n")


def text(mode: str) -> str:
    return GOOD.format(mode=mode)


async def until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    """Poll ``predicate`` until true; fail after ``timeout`` seconds (a deadline, not a timing)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError("condition not reached before the deadline")
        await asyncio.sleep(0.02)


async def started(store: FlagStore, directory: Path) -> FlagStore:
    """Start ``store``; with the watcher alone, wait until it demonstrably sees events."""
    await store.start()
    if store.watch:
        probe = directory / ".probe"
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 5.0
        while store.watch_events == 0:
            assert loop.time() < deadline, "the watcher never reported an event"
            probe.write_text(str(loop.time()))
            await asyncio.sleep(0.05)
        probe.unlink()
    return store


def mode_of(store: FlagStore) -> str:
    return store.router.decide("/api/sessions/1").mode


def write_in_place(path: Path, content: str) -> None:
    with open(path, "r+", encoding="utf-8") as handle:
        handle.seek(0)
        handle.write(content)
        handle.truncate()


def write_atomic(path: Path, content: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(content)
    os.replace(tmp, path)


@pytest.fixture(params=["watcher", "poll"])
def follow(request: pytest.FixtureRequest) -> dict[str, Any]:
    """Each way of following the file on its own: the directory watcher, then the stat poll."""
    if request.param == "watcher":
        return {"watch": True, "poll_interval": 3600.0}
    return {"watch": False, "poll_interval": 0.25}


@pytest.fixture
async def plain(tmp_path: Path, follow: dict[str, Any]) -> AsyncIterator[tuple[Path, FlagStore]]:
    path = tmp_path / "flags.yaml"
    path.write_text(text("legacy"))
    store = await started(FlagStore(path, **follow), tmp_path)
    try:
        yield path, store
    finally:
        await store.stop()


async def test_in_place_rewrite_is_picked_up(plain: tuple[Path, FlagStore]) -> None:
    path, store = plain
    assert mode_of(store) == "legacy" and store.reloads == 0
    write_in_place(path, text("new"))
    await until(lambda: mode_of(store) == "new")
    assert store.current.features[0].mode == "new" and store.reloads == 1


async def test_atomic_rename_is_picked_up(plain: tuple[Path, FlagStore]) -> None:
    path, store = plain
    write_atomic(path, text("shadow"))
    await until(lambda: mode_of(store) == "shadow")
    assert store.router.decide("/api/sessions/1").shadow == "new"


async def test_symlink_swap_like_a_configmap_is_picked_up(
    tmp_path: Path, follow: dict[str, Any]
) -> None:
    # mount/flags.yaml -> ..data/flags.yaml, ..data -> ..v1 ; the update swaps ..data to ..v2
    mount = tmp_path / "mount"
    (mount / "..v1").mkdir(parents=True)
    (mount / "..v1" / "flags.yaml").write_text(text("legacy"))
    os.symlink("..v1", mount / "..data")
    os.symlink("..data/flags.yaml", mount / "flags.yaml")
    store = await started(FlagStore(mount / "flags.yaml", **follow), mount)
    try:
        (mount / "..v2").mkdir()
        (mount / "..v2" / "flags.yaml").write_text(text("canary"))
        os.symlink("..v2", mount / "..data_tmp")
        os.replace(mount / "..data_tmp", mount / "..data")
        await until(lambda: store.current.features[0].mode == "canary")
        # a plain symlink retarget is seen too
        (mount / "other.yaml").write_text(text("new"))
        os.symlink("other.yaml", mount / "flags.tmp")
        os.replace(mount / "flags.tmp", mount / "flags.yaml")
        await until(lambda: mode_of(store) == "new")
        assert store.reloads == 2
    finally:
        await store.stop()


async def test_invalid_edit_keeps_old_flags_then_valid_edit_clears(
    plain: tuple[Path, FlagStore],
) -> None:
    path, store = plain
    good_digest = store.current.digest
    with capture_logs() as logs:
        write_atomic(path, INVALID.format(mode="new"))
        await until(lambda: store.last_error is not None)
    assert store.last_error == f"{path}:9: features.sessions: unknown key 'colour' " + (
        "(allowed: routes, mode, primary, percent, stick_by, cohorts, writes, websocket, "
        "fallback, parity, guards)"
    )
    assert store.last_error_at is not None and store.rejected == 1
    assert store.current.digest == good_digest and mode_of(store) == "legacy"
    rejected = [e for e in logs if e["event"] == "flags_rejected"]
    assert rejected and rejected[0]["line"] == 9 and rejected[0]["log_level"] == "error"
    with capture_logs() as logs:
        write_atomic(path, text("new"))
        await until(lambda: mode_of(store) == "new")
    assert store.last_error is None and store.last_error_at is None
    applied = [e for e in logs if e["event"] == "flags_applied"]
    assert applied and applied[0]["digest"] == store.current.digest


async def test_reverting_to_the_serving_version_clears_the_error(tmp_path: Path) -> None:
    path = tmp_path / "flags.yaml"
    path.write_text(text("legacy"))
    store = FlagStore(path)
    path.write_text(INVALID.format(mode="legacy"))
    assert store.reload_now() is False and store.last_error is not None
    assert store.reload_now() is False and store.rejected == 1  # the same bad bytes: once
    path.write_text(text("legacy"))
    assert store.reload_now() is False
    assert store.last_error is None and store.reloads == 0


async def test_missing_file_keeps_serving_and_recovers(tmp_path: Path) -> None:
    path = tmp_path / "flags.yaml"
    path.write_text(text("legacy"))
    store = FlagStore(path)
    path.unlink()
    assert store.check() is False
    assert store.last_error is not None and "cannot read the file" in store.last_error
    assert mode_of(store) == "legacy"
    path.write_text(text("new"))
    assert store.check() is True and store.last_error is None and mode_of(store) == "new"


async def test_subscribers_get_old_and_new_and_a_failing_one_is_contained(tmp_path: Path) -> None:
    path = tmp_path / "flags.yaml"
    path.write_text(text("legacy"))
    store = FlagStore(path)
    seen: list[tuple[FlagSet, FlagSet]] = []

    def broken(old: FlagSet, new: FlagSet) -> None:
        raise RuntimeError("subscriber bug")

    store.subscribe(broken)
    store.subscribe(lambda old, new: seen.append((old, new)))
    first = store.current
    path.write_text(text("new"))
    with capture_logs() as logs:
        assert store.reload_now() is True
    assert [(o.digest, n.digest) for o, n in seen] == [(first.digest, store.current.digest)]
    assert any(e["event"] == "flags_subscriber_failed" for e in logs)
    assert store.reload_now() is False  # unchanged file: nothing applied
    assert len(seen) == 1


async def test_check_rereads_once_more_after_a_change(tmp_path: Path) -> None:
    path = tmp_path / "flags.yaml"
    path.write_text(text("legacy"))
    store = FlagStore(path)
    assert store.check() is False  # nothing changed
    path.write_text(text("new"))
    assert store.check() is True  # seen; one more re-read is due on the next check
    path.write_text(text("canary"))
    store._signature = file_signature(path)  # as if stat had not moved (same mtime tick and size)
    assert store.check() is True and mode_of(store) == "canary"
    assert store.check() is False


async def test_initial_invalid_file_raises(tmp_path: Path) -> None:
    path = tmp_path / "flags.yaml"
    path.write_text(INVALID.format(mode="legacy"))
    with pytest.raises(FlagError) as caught:
        FlagStore(path)
    assert caught.value.line == 9


async def test_start_and_stop_are_idempotent(tmp_path: Path) -> None:
    path = tmp_path / "flags.yaml"
    path.write_text(text("legacy"))
    store = FlagStore(path)
    await store.stop()
    await store.start()
    await store.start()
    await store.stop()
    await store.stop()
    path.write_text(text("new"))
    await asyncio.sleep(0.3)
    assert mode_of(store) == "legacy"  # stopped: nothing follows the file any more
