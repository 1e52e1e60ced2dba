"""Tests for banyan/parity/browse.py: the store read a piece at a time (SQLite)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from banyan.parity import browse
from banyan.parity.store import HOUR, ParityStore
from tests.parity.test_store import record


async def test_series_and_mismatches_filter_by_feature_endpoint_path_and_time(
    tmp_path: Path,
) -> None:
    store = ParityStore(f"sqlite+aiosqlite:///{tmp_path / 'parity.db'}")
    await store.open()
    now = 1_700_000_000.0
    old = dataclasses.replace(record(1), at=now - 3 * HOUR)
    recent = [dataclasses.replace(record(n), at=now + n) for n in (2, 3)]
    same = dataclasses.replace(record(4, candidate_title="A"), at=now + 4)  # a match
    other = dataclasses.replace(record(5), at=now + 5, feature="quizzes", endpoint="GET /q")
    await store.write([old, *recent, same, other])
    try:
        hours = await browse.series(store, feature="sessions")
        windowed = await browse.series(store, since=now - HOUR, until=now + HOUR)
        listed = await browse.mismatches(store, feature="sessions")
        by_endpoint = await browse.mismatches(store, endpoint="GET /q")
        by_time = await browse.mismatches(store, since=now, until=now + 2.5)
        by_path = await browse.mismatches(store, path="$.title", limit=1)
        nothing = await browse.mismatches(store, path="$.nowhere")
    finally:
        await store.close()
    assert [(h["hour"], h["compared"], h["mismatched"]) for h in hours] == [
        (int(now - 3 * HOUR) // HOUR * HOUR, 1, 1),
        (int(now) // HOUR * HOUR, 3, 2),
    ]
    assert hours[1]["match_rate"] == round(1 / 3, 6)
    assert {h["feature"] for h in windowed} == {"sessions", "quizzes"} and len(windowed) == 2
    assert [m["url"] for m in listed] == ["/api/sessions/3", "/api/sessions/2", "/api/sessions/1"]
    assert listed[0]["paths"] == [{"path": "$.title", "kind": "changed"}]
    assert [m["feature"] for m in by_endpoint] == ["quizzes"]
    assert [m["url"] for m in by_time] == ["/api/sessions/2"]
    assert [(m["feature"], m["url"]) for m in by_path] == [("quizzes", "/api/sessions/5")]
    assert nothing == []
