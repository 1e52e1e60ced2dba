"""Tests for banyan/parity/store.py, banyan/parity/report.py and banyan/parity/cli.py on SQLite and
PostgreSQL."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from sqlalchemy import select

from banyan.parity import cli
from banyan.parity.compare import Response, compare
from banyan.parity.models import ComparisonRecord, NoiseRecord, RollbackRecord, SkipRecord
from banyan.parity.report import render_html, render_json, render_text
from banyan.parity.store import ParityRecorder, ParityStore, examples, percentile_from_buckets
from banyan.pg import postgres_available, temp_database
from banyan.serving import serve

JSON = {"content-type": "application/json"}


def record(i: int, *, candidate_title: str = "B", error: str | None = None) -> ComparisonRecord:
    primary = Response(
        200, JSON, json.dumps({"title": "A", "n": i, "password": "hunter2"}).encode(), 10.0 + i
    )
    candidate = Response(
        200 if error is None else 0,
        JSON,
        json.dumps({"title": candidate_title, "n": i, "password": "hunter2"}).encode(),
        20.0 + i,
        error=error,
    )
    return ComparisonRecord(
        feature="sessions",
        endpoint="GET /api/sessions/*",
        method="GET",
        path=f"/api/sessions/{i}",
        request_headers={
            "Authorization": "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1In0.c2ln",
            "Accept": "*/*",
        },
        request_body=b'{"password": "hunter2", "token": "t"}',
        primary_backend="legacy",
        candidate_backend="new",
        primary=primary,
        candidate=candidate,
        comparison=compare(primary, candidate),
    )


@pytest.fixture(params=["sqlite", "postgresql"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[ParityStore]:
    if request.param == "sqlite":
        parity = ParityStore(f"sqlite+aiosqlite:///{tmp_path / 'parity.db'}", examples_per_path=3)
        await parity.open()
        yield parity
        await parity.close()
        return
    if not await postgres_available():
        pytest.skip(
            "PostgreSQL not reachable at 127.0.0.1:5432: the parity store runs on SQLite only"
        )
    async with temp_database("parity") as url:
        parity = ParityStore(url, examples_per_path=3)
        await parity.open()
        yield parity
        await parity.close()


async def test_counters_examples_latency_and_noise(store: ParityStore) -> None:
    await store.write([record(i) for i in range(10)])
    await store.write([record(10, candidate_title="A"), record(11, error="timeout")])
    await store.write(
        [NoiseRecord("sessions", "GET /api/sessions/*", ["$.updated_at"]) for _ in range(2)]
    )
    await store.write([SkipRecord("sessions", "GET /api/sessions/*", "body_too_large")])
    data = await store.summary()
    feature = data["features"][0]
    assert (
        feature["compared"],
        feature["matched"],
        feature["mismatched"],
        feature["errors"],
        feature["skipped"],
    ) == (
        12,
        1,
        10,
        1,
        1,
    )
    # rates are over the answered comparisons: the candidate's timeout is an error, not a mismatch
    assert feature["mismatch_rate"] == round(10 / 11, 6)
    assert feature["error_rate"] == round(1 / 12, 6)
    endpoint = feature["endpoints"][0]
    assert (
        endpoint["top_fields"][0]["path"] == "$.title" and endpoint["top_fields"][0]["count"] == 10
    )
    assert len(endpoint["top_fields"][0]["examples"]) == 3  # bounded
    assert feature["latency"]["legacy"]["count"] == 12 and feature["latency"]["new"]["count"] == 11
    assert (
        10 <= feature["latency"]["legacy"]["p50"] <= 17 and feature["latency"]["new"]["p99"] >= 29
    )
    assert feature["noise"] == [
        {"endpoint": "GET /api/sessions/*", "path": "$.updated_at", "count": 2}
    ]
    assert (await store.summary(feature="other"))["features"] == []
    assert (await store.summary(since=9_999_999_999))["features"] == []


async def test_nothing_secret_is_stored(store: ParityStore) -> None:
    await store.write([record(1)])
    async with store.engine.connect() as conn:
        rows = (await conn.execute(select(examples))).mappings().all()
    text = json.dumps([dict(r) for r in rows], default=str)
    assert "hunter2" not in text and "eyJhbGciOiJIUzI1NiJ9" not in text and "[REDACTED]" in text
    example = await store.example(rows[0]["id"])
    assert example is not None and example["request"]["headers"]["Authorization"] == "[REDACTED]"
    assert await store.example(999_999) is None


async def test_recorder_batches_and_drops_when_full(tmp_path: Path) -> None:
    parity = ParityStore(f"sqlite+aiosqlite:///{tmp_path / 'p.db'}")
    recorder = ParityRecorder(parity, max_queue=5, batch=2, flush_interval=0.01)
    await recorder.start()
    accepted = [recorder.record(record(i)) for i in range(8)]
    assert accepted.count(False) == 3 and recorder.dropped == 3
    for _ in range(100):
        if recorder.written == 5:
            break
        await asyncio.sleep(0.02)
    assert recorder.written == 5
    recorder.record(record(99))
    await recorder.stop()
    again = ParityStore(f"sqlite+aiosqlite:///{tmp_path / 'p.db'}")
    await again.open()
    assert (await again.summary())["features"][0]["compared"] == 6
    await again.close()


async def test_a_flush_writes_what_was_recorded_before_it_not_what_keeps_coming(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A report flushes first. Under comparisons arriving faster than the store takes them, a
    flush that waited for an empty queue never ended (a drill's report waited minutes); it writes
    what was there when it was asked, and what comes meanwhile waits for the next write.

    Every write here brings twenty new comparisons while it takes ten: a flush waiting for an
    empty queue would never end. (A task recording in a tight loop instead held the interpreter
    lock so hard on a loaded machine that the store's thread crawled.)"""
    parity = ParityStore(f"sqlite+aiosqlite:///{tmp_path / 'p.db'}")
    recorder = ParityRecorder(parity, batch=10, flush_interval=60)
    written_by_store = parity.write
    arriving = itertools.count(1000)
    more_arrive = True  # comparisons keep coming until the test is over

    async def write_while_more_arrive(items: list[Any]) -> None:
        for n in itertools.islice(arriving, 20 if more_arrive else 0):
            recorder.record(record(n))
        await written_by_store(items)

    monkeypatch.setattr(parity, "write", write_while_more_arrive)
    await recorder.start()
    for i in range(50):
        recorder.record(record(i))
    try:
        await asyncio.wait_for(recorder.flush(), 30)
        assert recorder.written >= 50
        assert not recorder.queue.empty()  # what came during the flush is left for later
    finally:
        more_arrive = False
        await recorder.stop()


async def test_candidate_errors_are_counted_apart_from_mismatches(tmp_path: Path) -> None:
    parity = ParityStore(f"sqlite+aiosqlite:///{tmp_path / 'parity.db'}")
    await parity.open()
    await parity.write([record(i, candidate_title="A") for i in range(3)])
    await parity.write([record(i, error="candidate refused or unreachable") for i in range(19)])
    data = await parity.summary()
    await parity.close()
    [feature] = data["features"]
    assert (feature["compared"], feature["matched"], feature["mismatched"], feature["errors"]) == (
        22,
        3,
        0,
        19,
    )
    assert feature["mismatch_rate"] == 0.0 and feature["match_rate"] == 1.0
    [endpoint] = feature["endpoints"]
    assert endpoint["top_fields"] == [] and endpoint["mismatch_rate"] == 0.0
    assert [f["count"] for f in endpoint["error_fields"]] == [19]
    text = render_text(data)
    assert "19 errors on error:candidate (not mismatches): candidate refused" in text
    assert "mismatch 0.00%" in text and "errors 19" in text
    page = render_html(data)
    assert "<td>19</td>" in page and "<mark>" not in page


def test_percentiles_from_buckets() -> None:
    assert percentile_from_buckets({}, 0.5) is None
    assert percentile_from_buckets({10: 1, 20: 1}, 0.5) == round(1.05**10, 3)
    assert percentile_from_buckets({10: 1, 20: 1}, 1.0) == round(1.05**20, 3)


async def test_reports_render_what_matters(tmp_path: Path) -> None:
    parity = ParityStore(f"sqlite+aiosqlite:///{tmp_path / 'parity.db'}")
    await parity.open()
    await parity.write([record(i) for i in range(3)])
    await parity.write([NoiseRecord("sessions", "GET /api/sessions/*", ["$.updated_at"])] * 2)
    data = await parity.summary()
    await parity.close()
    text = render_text(data)
    assert "sessions: 3 compared" in text and "$.title" in text and '"A"' in text and '"B"' in text
    assert "learned noise" in text and "$.updated_at" in text
    page = render_html(data)
    assert "<h2 id='f-sessions'>sessions</h2>" in page
    assert "<mark>A</mark>" in page and "<mark>B</mark>" in page
    assert "legacy (primary)" in page and "100.00%" in page and "banyan parity replay" in page
    assert "hunter2" not in page
    empty = {"schema": "banyan.parity/v1", "generated_at": 0, "features": []}
    assert "No comparisons" in render_text(empty) and "No comparisons" in render_html(empty)


async def test_cli_report_formats_and_replay(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = f"sqlite+aiosqlite:///{tmp_path / 'parity.db'}"
    parity = ParityStore(db)
    await parity.open()
    await parity.write([record(1)])
    example_id = (await parity.summary())["features"][0]["endpoints"][0]["top_fields"][0][
        "examples"
    ][0]["id"]
    await parity.close()

    def app(title: str) -> web.Application:
        application = web.Application()

        async def handler(request: web.Request) -> web.Response:
            assert request.headers.get("Authorization") == "Bearer fresh"
            return web.json_response({"title": title, "n": 1})

        application.router.add_get("/api/sessions/{n}", handler)
        return application

    for fmt, needle in (
        ("text", "sessions: 1 compared"),
        ("json", '"banyan.parity/v1"'),
        ("html", "<!doctype html>"),
    ):
        assert (
            await asyncio.to_thread(
                cli.main, ["report", "--db", db, "--format", fmt, "--since", "1h"]
            )
            == 0
        )
        assert needle in capsys.readouterr().out
    async with serve(app("A")) as legacy, serve(app("B")) as new, serve(app("A")) as fixed:
        flags = tmp_path / "flags.yaml"
        flags.write_text(
            f"version: 1\nbackends:\n  legacy: {legacy}\n  new: {new}\n"
            "features: {}\ndefault: legacy\n"
        )
        args = ["replay", str(example_id), "--db", db, "--flags", str(flags), "--token", "fresh"]
        assert await asyncio.to_thread(cli.main, args) == 1
        assert "$.title" in capsys.readouterr().out
        flags.write_text(
            f"version: 1\nbackends:\n  legacy: {legacy}\n  new: {fixed}\n"
            "features: {}\ndefault: legacy\n"
        )
        assert await asyncio.to_thread(cli.main, [*args, "--json"]) == 0
        assert json.loads(capsys.readouterr().out)["still_differs"] is False
    assert (
        await asyncio.to_thread(cli.main, ["replay", "424242", "--db", db, "--flags", str(flags)])
        == 2
    )


def test_since_parsing() -> None:
    assert cli.parse_since(None) is None
    assert cli.parse_since("2h", now=10_000) == 10_000 - 7200
    assert cli.parse_since("2023-11-14T22:13:20Z") == 1_700_000_000
    assert cli.default_db("some/flags.yaml").endswith("some/.banyan/parity.db")


async def test_cli_lists_and_forgets_learned_noise_in_the_store(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = f"sqlite+aiosqlite:///{tmp_path / 'parity.db'}"
    parity = ParityStore(db)
    await parity.open()
    await parity.write([NoiseRecord("sessions", "GET /api/sessions/*", ["$.updated_at"])] * 3)
    await parity.write([NoiseRecord("folders", "GET /api/folders", ["$.at", "$.once"])] * 1)
    await parity.write([NoiseRecord("folders", "GET /api/folders", ["$.at"])])
    await parity.close()
    assert await asyncio.to_thread(cli.main, ["noise", "--db", db]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert listed == [
        "folders  GET /api/folders  $.at  (seen 2x)",  # $.once, seen once, is not noise yet
        "sessions  GET /api/sessions/*  $.updated_at  (seen 3x)",
    ]
    assert await asyncio.to_thread(cli.main, ["noise", "--db", db, "--feature", "folders"]) == 0
    assert "sessions" not in capsys.readouterr().out
    forget = ["noise", "--db", db, "--forget", "$.updated_at", "--feature", "folders"]
    assert await asyncio.to_thread(cli.main, forget) == 1  # not learned for folders
    assert await asyncio.to_thread(cli.main, forget[:-2]) == 0
    capsys.readouterr()
    assert await asyncio.to_thread(cli.main, ["noise", "--db", db]) == 0
    assert "$.updated_at" not in capsys.readouterr().out
    empty = f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}"
    assert await asyncio.to_thread(cli.main, ["noise", "--db", empty]) == 0
    assert "No noise learned." in capsys.readouterr().out


def comparison(
    at: float, primary: dict[str, object], candidate: dict[str, object]
) -> ComparisonRecord:
    a = Response(200, JSON, json.dumps(primary).encode(), 1.0)
    b = Response(200, JSON, json.dumps(candidate).encode(), 1.0)
    return ComparisonRecord(
        feature="sessions",
        endpoint="GET /api/sessions/{id}",
        method="GET",
        path="/api/sessions/1",
        request_headers={},
        request_body=None,
        primary_backend="legacy",
        candidate_backend="new",
        primary=a,
        candidate=b,
        comparison=compare(a, b),
        at=at,
    )


async def test_each_path_shows_its_own_newest_examples(tmp_path: Path) -> None:
    parity = ParityStore(f"sqlite+aiosqlite:///{tmp_path / 'parity.db'}", examples_per_path=3)
    await parity.open()
    now = time.time()
    for n in range(8):  # one batch each: the examples rotate, the newest three are kept
        primary = {"id": f"31c9{n}", "title": f"Fractions {n}"}
        await parity.write([comparison(now + n, primary, {})])
    data = await parity.summary()
    since = await parity.summary(since=now + 6.5)
    await parity.close()
    [endpoint] = data["features"][0]["endpoints"]
    fields = {f["path"]: f for f in endpoint["top_fields"]}
    assert fields["$.title"]["count"] == 8
    titles = [e["differences"] for e in fields["$.title"]["examples"]]
    assert len(titles) == 3
    assert [e["at"] for e in fields["$.title"]["examples"]] == [now + 7, now + 6, now + 5]
    text = render_text(data)
    assert "removed  $.title  x8" in text
    assert 'legacy="Fractions 7" new=null' in text and 'legacy="31c97" new=null' in text
    title_line = text.splitlines()[text.splitlines().index("    removed  $.title  x8") + 1]
    assert "Fractions 7" in title_line and "31c9" not in title_line  # its own value, not the id
    page = render_html(data)
    assert "<mark>Fractions 7</mark>" in page
    [only] = since["features"][0]["endpoints"][0]["top_fields"][:1]
    assert [e["at"] for e in only["examples"]] == [now + 7]  # examples from `since` exactly


async def test_skip_reasons_and_guard_rollbacks_are_reported(tmp_path: Path) -> None:
    parity = ParityStore(f"sqlite+aiosqlite:///{tmp_path / 'parity.db'}")
    await parity.open()
    await parity.write([record(1)])
    await parity.write(
        [
            SkipRecord("sessions", "GET /api/sessions/*", "body_too_large"),
            SkipRecord("sessions", "GET /api/sessions/*", "body_too_large"),
            SkipRecord("sessions", "GET /api/sessions/*", "candidate_failing"),
            RollbackRecord("sessions", "max_mismatch_rate", 0.5, 0.02, 20, "guard breached: 0.5"),
            RollbackRecord("folders", "max_error_rate", 0.2, 0.01, 20, "guard breached: 0.2"),
        ]
    )
    data = await parity.summary()
    await parity.close()
    features = {f["feature"]: f for f in data["features"]}
    assert features["sessions"]["skip_reasons"] == {"body_too_large": 2, "candidate_failing": 1}
    assert features["sessions"]["skipped"] == 3
    assert [r["rule"] for r in features["sessions"]["rollbacks"]] == ["max_mismatch_rate"]
    assert features["folders"]["rollbacks"][0]["message"] == "guard breached: 0.2"
    text = render_text(data)
    assert "skipped: body_too_large 2, candidate_failing 1" in text
    assert "ROLLED BACK at" in text and "guard breached: 0.5" in text
    page = render_html(data)
    assert "Rolled back at" in page and "guard breached: 0.2" in page
    assert "body_too_large 2" in page
    assert '"rollbacks"' in render_json(data)


async def test_cli_reset_starts_over(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "parity.db"
    parity = ParityStore(f"sqlite+aiosqlite:///{path}")
    await parity.open()
    other = record(2)
    other.feature = "folders"
    await parity.write([record(1), other, NoiseRecord("sessions", "GET /x", ["$.a"])])
    await parity.write([SkipRecord("sessions", "GET /x", "queue_full")])
    await parity.close()
    # --db takes a plain file path too
    assert (
        await asyncio.to_thread(cli.main, ["reset", "--db", str(path), "--feature", "sessions"])
        == 0
    )
    assert "reset for feature sessions" in capsys.readouterr().out
    parity = ParityStore(f"sqlite+aiosqlite:///{path}")
    await parity.open()
    assert [f["feature"] for f in (await parity.summary())["features"]] == ["folders"]
    assert await parity.noise_counts() == []
    await parity.close()
    assert await asyncio.to_thread(cli.main, ["reset", "--db", str(path)]) == 0
    assert await asyncio.to_thread(cli.main, ["report", "--db", str(path)]) == 0
    assert "No comparisons recorded yet." in capsys.readouterr().out


async def test_replay_of_two_refusals_is_not_agreement(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = f"sqlite+aiosqlite:///{tmp_path / 'parity.db'}"
    parity = ParityStore(db)
    await parity.open()
    await parity.write([record(1)])
    data = await parity.summary()
    await parity.close()
    example_id = data["features"][0]["endpoints"][0]["top_fields"][0]["examples"][0]["id"]

    def refusing() -> web.Application:
        application = web.Application()

        async def handler(_: web.Request) -> web.Response:
            return web.json_response({"error": {"code": "unauthorized"}}, status=401)

        application.router.add_get("/api/sessions/{n}", handler)
        return application

    async with serve(refusing()) as legacy, serve(refusing()) as new:
        flags = tmp_path / "flags.yaml"
        flags.write_text(
            f"version: 1\nbackends:\n  legacy: {legacy}\n  new: {new}\n"
            "features: {}\ndefault: legacy\n"
        )
        args = ["replay", str(example_id), "--db", db, "--flags", str(flags)]
        assert await asyncio.to_thread(cli.main, args) == 3
        out = capsys.readouterr().out
        assert "legacy answered 401, new answered 401" in out and "both refused" in out
        assert "agree" not in out
        assert await asyncio.to_thread(cli.main, [*args, "--json"]) == 3
        summary = json.loads(capsys.readouterr().out)
    assert summary["verdict"] == "both refused" and summary["still_differs"] is False
    assert (summary["primary"]["status"], summary["candidate"]["status"]) == (401, 401)


async def test_differing_paths_per_endpoint_are_capped(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'parity.db'}"
    parity = ParityStore(url, paths_per_endpoint=3)
    await parity.open()
    now = time.time()
    for name in ("alice", "bob", "carol", "dave", "erin"):  # keys no heuristic takes for ids
        await parity.write([comparison(now, {"scores": {name: 1}}, {"scores": {name: 2}})])
    await parity.close()
    reopened = ParityStore(url, paths_per_endpoint=3)  # the paths already stored keep theirs
    await reopened.open()
    await reopened.write([comparison(now, {"scores": {"bob": 1}}, {"scores": {"bob": 3}})])
    await reopened.write([comparison(now, {"scores": {"frank": 1}}, {"scores": {"frank": 3}})])
    data = await reopened.summary()
    await reopened.close()
    [endpoint] = data["features"][0]["endpoints"]
    counts = {f["path"]: f["count"] for f in endpoint["top_fields"]}
    assert counts == {"$.scores.alice": 1, "$.scores.bob": 2, "$.scores.carol": 1, "other": 3}


async def test_replicas_opening_one_postgresql_store_at_once_do_not_collide() -> None:
    """Proxy replicas starting together each open the shared store: its tables are created
    under an advisory lock, so none trips over another's CREATE TABLE."""
    if not await postgres_available():
        pytest.skip("PostgreSQL not reachable at 127.0.0.1:5432: nothing shared to open")
    async with temp_database("parity_replicas") as url:
        stores = [ParityStore(url) for _ in range(6)]
        try:
            await asyncio.gather(*(store.open() for store in stores))
            assert await stores[0].endpoints() == []
        finally:
            await asyncio.gather(*(store.close() for store in stores))
