"""Tests for banyan/control/store.py: overrides, key/value state, audit, and the change feed."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from banyan.control.db import ControlError, schema_from_env
from banyan.control.store import ControlStore, Snapshot, default_actor, merge_changes

pytestmark = pytest.mark.postgres


def store(url: str, **kwargs: Any) -> ControlStore:
    return ControlStore(url, schema=schema_from_env(), **kwargs)


def test_merge_changes_merges_nested_mappings_and_keeps_removals() -> None:
    base = {"mode": "canary", "percent": 5, "guards": {"window": 10, "max_error_rate": 0.1}}
    merged = merge_changes(base, {"percent": 50, "guards": {"window": 20}, "parity": None})
    assert merged == {
        "mode": "canary",
        "percent": 50,
        "guards": {"window": 20, "max_error_rate": 0.1},
        "parity": None,
    }
    assert base["percent"] == 5  # not modified


def test_actor_names_role_user_host_and_process() -> None:
    actor = default_actor("cli")
    assert (
        actor.startswith("cli:")
        and "@" in actor
        and actor.endswith(f":{__import__('os').getpid()}")
    )


async def test_an_unreachable_store_is_a_clear_error() -> None:
    bad = ControlStore("postgresql://postgres@127.0.0.1:1/test", schema="x")
    with pytest.raises(ControlError, match="cannot reach"):
        await bad.open()
    with pytest.raises(ControlError, match="not open"):
        _ = bad.pool


async def test_overrides_merge_audit_and_clear(control_db: str) -> None:
    a = store(control_db, actor="test:a")
    await a.open()
    try:
        first = await a.set_override("api", {"mode": "canary", "percent": 5}, source="admin")
        again = await a.set_override("api", {"percent": 5}, source="admin")
        second = await a.set_override("api", {"percent": 50}, source="cli", reason="more")
        assert first is not None and again is None and second is not None
        assert second.changes == {"mode": "canary", "percent": 50}
        assert second.version > first.version
        await a.refresh()
        assert a.snapshot.overrides["api"].changes == {"mode": "canary", "percent": 50}
        assert a.snapshot.overrides["api"].actor == "test:a"
        assert a.snapshot.overrides["api"].reason == "more"
        stale = await a.clear_overrides({"api": first.version}, source="reconcile")
        assert stale == []  # changed since: kept
        cleared = await a.clear_overrides({"api": second.version}, source="reconcile")
        assert cleared == ["api"]
        await a.refresh()
        assert a.snapshot.overrides == {}
        history = await a.history(feature="api")
        assert [e["source"] for e in history] == ["reconcile", "cli", "admin"]
        assert history[1]["before"] == {"mode": "canary", "percent": 5}
        assert history[1]["after"] == {"mode": "canary", "percent": 50}
        assert history[0]["after"] is None
        assert await a.history(feature="other") == []
    finally:
        await a.close()


async def test_only_if_decides_under_the_lock_once_among_many(control_db: str) -> None:
    writers = [store(control_db, actor=f"test:{i}") for i in range(5)]
    for w in writers:
        await w.open()
    try:

        def not_legacy(current: dict[str, Any]) -> bool:
            return current.get("mode", "new") != "legacy"

        results = await asyncio.gather(
            *(
                w.set_override("api", {"mode": "legacy"}, source="guard", only_if=not_legacy)
                for w in writers
            )
        )
        assert sum(r is not None for r in results) == 1
        assert len(await writers[0].history(feature="api")) == 1
    finally:
        for w in writers:
            await w.close()


async def test_describe_fills_the_audit_and_its_refusal_aborts_the_write(control_db: str) -> None:
    a = store(control_db)
    await a.open()
    try:

        def describe(changes: dict[str, Any] | None) -> dict[str, Any]:
            if changes and changes.get("mode") == "bogus":
                raise ValueError("no such mode")
            return {"mode": (changes or {}).get("mode", "legacy"), "described": True}

        await a.set_override("api", {"mode": "new"}, source="admin", describe=describe)
        with pytest.raises(ValueError, match="no such mode"):
            await a.set_override("api", {"mode": "bogus"}, source="admin", describe=describe)
        await a.refresh()
        assert a.snapshot.overrides["api"].changes == {"mode": "new"}
        (entry,) = await a.history()
        assert entry["before"] == {"mode": "legacy", "described": True}
        assert entry["after"] == {"mode": "new", "described": True}
    finally:
        await a.close()


async def test_key_value_state_reaches_another_replica_by_notify(control_db: str) -> None:
    writer = store(control_db)
    reader = store(control_db, poll_interval=3600)  # only NOTIFY can tell it in time
    await writer.open()
    await reader.start()
    seen: asyncio.Queue[Snapshot] = asyncio.Queue()

    async def on_change(_old: Snapshot, new: Snapshot) -> None:
        await seen.put(new)

    reader.subscribe(on_change)
    try:
        await writer.put("rollout/api", {"step": 2, "percent": 25}, source="rollout")
        snapshot = await asyncio.wait_for(seen.get(), 10)
        assert reader.notifications >= 1
        assert snapshot.kv["rollout/api"].value == {"step": 2, "percent": 25}
        assert reader.get("rollout/api") == {"step": 2, "percent": 25}
        assert reader.items("rollout/") == {"rollout/api": {"step": 2, "percent": 25}}
        assert reader.get("missing", "dflt") == "dflt"
        assert await writer.delete("rollout/api") is True
        assert await writer.delete("rollout/api") is False
        await asyncio.wait_for(seen.get(), 10)
        assert reader.items() == {}
    finally:
        await reader.close()
        await writer.close()


async def test_the_poll_reconnects_a_lost_listener(control_db: str) -> None:
    writer = store(control_db)
    reader = store(control_db, poll_interval=0.05)
    await writer.open()
    await reader.start()
    try:
        assert reader._listener is not None
        await reader._listener.close()
        await writer.put("k", 1, source="test")
        for _ in range(400):
            if reader.get("k") == 1 and reader._listener and not reader._listener.is_closed():
                break
            await asyncio.sleep(0.05)
        assert reader.get("k") == 1
        assert reader._listener is not None and not reader._listener.is_closed()
    finally:
        await reader.close()
        await writer.close()


async def test_a_failing_subscriber_does_not_stop_the_others(control_db: str) -> None:
    a = store(control_db)
    await a.open()
    calls: list[int] = []

    async def broken(_old: Snapshot, _new: Snapshot) -> None:
        raise RuntimeError("boom")

    async def fine(_old: Snapshot, new: Snapshot) -> None:
        calls.append(new.version)

    a.subscribe(broken)
    a.subscribe(fine)
    try:
        await a.put("k", "v", source="test")
        assert await a.refresh() is True
        assert await a.refresh() is False
        assert calls == [a.snapshot.version]
    finally:
        await a.close()


async def test_audit_events_are_kept_once(control_db: str) -> None:
    a, b = store(control_db), store(control_db)
    await a.open()
    await b.open()
    try:
        kwargs: dict[str, Any] = {
            "source": "file",
            "feature": "api",
            "before": {"mode": "legacy"},
            "after": {"mode": "new"},
            "digest": "d1",
            "event": "file:d0:d1:api",
        }
        assert await a.audit(**kwargs) is True
        assert await b.audit(**kwargs) is False
        assert len(await a.history()) == 1
    finally:
        await a.close()
        await b.close()
