"""Tests for banyan/rollout/store.py: the JSON file store in the state folder."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from banyan.proxy.flags.rollout import Rollout, RolloutStep
from banyan.rollout.model import RolloutRecord
from banyan.rollout.store import FileRolloutStore, Records, default_path, state_dir

ROLLOUT = Rollout(steps=(RolloutStep("shadow", duration=1), RolloutStep("new")))


def test_records_are_kept_and_only_written_when_changed(tmp_path: Path) -> None:
    store = FileRolloutStore(tmp_path / ".banyan" / "rollouts.json")
    assert store.load() == {}

    def start(records: Records) -> str:
        records["f"] = RolloutRecord.new("f", ROLLOUT)
        return "done"

    assert store.update(start) == "done"
    loaded = store.load()
    assert list(loaded) == ["f"] and loaded["f"].steps[0]["label"] == "shadow"
    written = store.path.stat().st_mtime_ns
    store.update(lambda records: None)  # nothing changed: nothing written
    assert store.path.stat().st_mtime_ns == written


def test_concurrent_updates_lose_nothing(tmp_path: Path) -> None:
    store = FileRolloutStore(tmp_path / "rollouts.json")

    def add(name: str) -> None:
        store.update(lambda records: records.__setitem__(name, RolloutRecord.new(name, ROLLOUT)))

    threads = [threading.Thread(target=add, args=(f"f{i}",)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(store.load()) == [f"f{i}" for i in range(8)]


def test_a_corrupt_file_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "rollouts.json"
    path.write_text("{not json")
    with pytest.raises(ValueError, match="not a rollout file"):
        FileRolloutStore(path).load()
    path.write_text('{"rollouts": []}')
    with pytest.raises(ValueError, match="not a rollout file"):
        FileRolloutStore(path).load()


def test_where_the_file_lives(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    flags = tmp_path / "flags.yaml"
    monkeypatch.delenv("BANYAN_ROLLOUTS", raising=False)
    assert state_dir(flags) == tmp_path / ".banyan"
    assert default_path(flags) == tmp_path / ".banyan" / "rollouts.json"
    monkeypatch.setenv("BANYAN_ROLLOUTS", str(tmp_path / "elsewhere.json"))
    assert default_path(flags) == tmp_path / "elsewhere.json"
