"""Tests for banyan/proxy/audit.py: append-only JSON lines, diffs of flag sets, history."""

from __future__ import annotations

from pathlib import Path

import pytest

from banyan.proxy.audit import AuditLog, default_path, diff_flagsets
from banyan.proxy.flags import Feature, FlagSet


def flagset(*features: Feature, digest: str = "d1") -> FlagSet:
    return FlagSet(
        version=1, backends={}, features=features, default="legacy", digest=digest, source="f"
    )


def test_default_path_beside_the_flag_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("BANYAN_AUDIT_LOG", raising=False)
    assert default_path(tmp_path / "flags.yaml") == tmp_path / "flags.audit.jsonl"
    monkeypatch.setenv("BANYAN_AUDIT_LOG", str(tmp_path / "x.jsonl"))
    assert default_path("flags.yaml") == tmp_path / "x.jsonl"


def test_diff_reports_changed_added_and_removed_features() -> None:
    old = flagset(Feature("a", ("/a",)), Feature("b", ("/b",)))
    new = flagset(Feature("a", ("/a",), mode="new"), Feature("c", ("/c",)))
    changes = {name: (before, after) for name, before, after in diff_flagsets(old, new)}
    assert set(changes) == {"a", "b", "c"}
    assert changes["a"][0]["mode"] == "legacy" and changes["a"][1]["mode"] == "new"
    assert changes["b"][1] is None and changes["c"][0] is None
    assert diff_flagsets(new, new) == []


def test_log_appends_and_reads_newest_first(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit" / "log.jsonl")
    assert log.history() == []
    old = flagset(Feature("a", ("/a",)))
    new = flagset(Feature("a", ("/a",), mode="new"), digest="d2")
    assert log.record_reload(old, new) == 1
    log.append(
        source="guard",
        feature="a",
        before={"mode": "new"},
        after={"mode": "legacy"},
        digest="d3",
        reason="errors",
    )
    with (tmp_path / "audit" / "log.jsonl").open("a") as handle:
        handle.write('{"torn": \n')
    history = log.history()
    assert [e["source"] for e in history] == ["guard", "file"]
    assert history[0]["reason"] == "errors" and history[1]["digest"] == "d2"
    assert log.history(feature="zzz") == [] and len(log.history(limit=1)) == 1
