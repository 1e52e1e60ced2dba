"""Tests for FlagStore in banyan/proxy/flags/store.py: real files, a real watcher, every way a file
changes, hostile files in the flag file's place, and reads that happen off the event loop."""

from __future__ import annotations

import asyncio
import gc
import os
import sys
import threading
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
        "fallback, parity, guards, rollout)"
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


HOSTILE = {
    "dev_zero": (
        lambda p: p.symlink_to("/dev/zero"),
        ":0: cannot read the file: it is a character",
    ),
    "fifo": (os.mkfifo, ":0: cannot read the file: it is a FIFO (named pipe)"),
    "directory": (lambda p: p.mkdir(), ":0: cannot read the file: it is a directory"),
    "too_big": (
        lambda p: p.write_text("#" * 25_000),
        ":0: the file is 25000 bytes, over the 20000",
    ),
    "deep": (
        lambda p: p.write_text(text("new") + "x: " + "[" * 5000 + "]" * 5000 + "\n"),
        ":10: YAML too large: nested more than 64 levels deep",
    ),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
async def test_a_hostile_file_is_rejected_once_and_the_last_good_one_serves(
    tmp_path: Path, case: str
) -> None:
    path = tmp_path / "flags.yaml"
    path.write_text(text("legacy"))
    store = await started(
        FlagStore(path, watch=False, poll_interval=0.05, max_bytes=20_000), tmp_path
    )
    try:
        make, error = HOSTILE[case]
        path.unlink()
        make(path)
        await until(lambda: store.last_error is not None, timeout=30)
        assert store.last_error is not None and store.last_error.startswith(str(path))
        assert error in store.last_error and store.last_error_at is not None
        await asyncio.sleep(0.3)  # several more polls: the same refusal is not counted again
        assert store.rejected == 1 and mode_of(store) == "legacy" and store.reloads == 0
        if path.is_dir() and not path.is_symlink():
            path.rmdir()
        else:
            path.unlink()
        write_atomic(path, text("new"))
        await until(lambda: mode_of(store) == "new", timeout=30)
        assert store.last_error is None and store.reloads == 1
    finally:
        await store.stop()


async def test_reading_and_parsing_happen_off_the_event_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from banyan.proxy.flags import store as store_module

    path = tmp_path / "flags.yaml"
    path.write_text(text("legacy"))
    store = FlagStore(path)
    threads: list[int] = []
    real_parse = store_module.parse_flags

    def recording_parse(data: bytes, source: str) -> FlagSet:
        threads.append(threading.get_ident())
        return real_parse(data, source)

    monkeypatch.setattr(store_module, "parse_flags", recording_parse)
    path.write_text(text("new"))
    assert await store.reload() is True and mode_of(store) == "new"
    path.write_text(text("canary"))
    assert await store.refresh(force=True) is True and mode_of(store) == "canary"
    assert len(threads) == 2 and threading.get_ident() not in threads
    assert store.router.flags is store.current  # swapped together


async def test_the_interpreter_settings_a_parse_changes_are_put_back(tmp_path: Path) -> None:
    path = tmp_path / "flags.yaml"
    path.write_text(text("legacy"))
    store = FlagStore(path)
    thresholds, interval = gc.get_threshold(), sys.getswitchinterval()
    path.write_text(text("new"))
    assert await store.reload() is True
    path.write_text(INVALID.format(mode="new"))
    assert await store.reload() is False and store.rejected == 1
    assert gc.get_threshold() == thresholds and sys.getswitchinterval() == interval


async def test_a_read_overtaken_by_a_newer_apply_is_not_applied(tmp_path: Path) -> None:
    path = tmp_path / "flags.yaml"
    path.write_text(text("legacy"))
    store = FlagStore(path)
    path.write_text(text("new"))
    stale = store._prepare()  # read "new", not yet settled
    path.write_text(text("canary"))
    assert store.reload_now() is True and mode_of(store) == "canary"
    assert store._settle(stale) is False and mode_of(store) == "canary"  # never goes back
    assert store.check() is False and mode_of(store) == "canary"  # the re-read finds canary


async def test_the_store_takes_a_size_limit(tmp_path: Path) -> None:
    path = tmp_path / "flags.yaml"
    path.write_text(text("legacy"))
    with pytest.raises(FlagError, match="over the 10-byte limit"):
        FlagStore(path, max_bytes=10)
