"""Quizzes and analytics shadowed through the real proxy: legacy answers, new is the candidate,
writes are mirrored (same ``Idempotency-Key`` to both), and the parity report shows 100% match.

Everything is real: both backends on SQLite, the deterministic model server behind both, the
proxy with its parity store. The ``core`` feature (auth, sessions, messages) is shadowed and
mirrored too, so both stores hold the same users and sessions; only the ``learning`` feature
(quizzes and analytics) is judged. ``created_at`` is the one field ignored: it is the write's own
clock on each store.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from banyan.backends.common.clock import iso, now_ms
from banyan.backends.legacy.app import create_app as legacy_app
from banyan.backends.model.server import create_app as model_app
from banyan.backends.new.app import create_app as new_app
from banyan.parity.store import ParityRecorder, ParityStore
from banyan.proxy.app import STATE, create_app
from banyan.proxy.shadow import Shadow
from banyan.serving import serve

FLAGS = """\
version: 1
backends:
  legacy: {legacy}
  new: {new}
features:
  learning:
    routes: ["/api/quizzes/**", "/api/analytics/**"]
    mode: shadow
    writes: mirror
    parity: {{sample: 100, noise_sample: 0, ignore: ["$.created_at"]}}
  core:
    routes: ["/api/**"]
    mode: shadow
    writes: mirror
    parity: {{sample: 100, noise_sample: 0}}
default: legacy
"""


class Proxy:
    def __init__(self, url: str, shadow: Shadow) -> None:
        self.url = url
        self.shadow = shadow

    async def settle(self, compared: int) -> dict[str, Any]:
        """Wait until ``compared`` comparisons in all are recorded and nothing is in flight."""
        done = 0
        for _ in range(500):
            await self.shadow.recorder.flush()
            report = await self.shadow.recorder.store.summary()
            done = sum(f["compared"] for f in report["features"])
            if done >= compared and self.shadow.inflight == 0:
                return report
            await asyncio.sleep(0.02)
        raise AssertionError(f"only {done} of {compared} comparisons recorded")


@pytest.fixture
async def proxy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Proxy]:
    async with serve(model_app()) as model_url:
        monkeypatch.setenv("OPENAI_BASE_URL", model_url + "/v1")
        legacy = legacy_app(f"sqlite+aiosqlite:///{tmp_path / 'legacy.db'}")
        new = new_app(f"sqlite+aiosqlite:///{tmp_path / 'new.db'}")
        async with serve(legacy) as legacy_url, serve(new) as new_url:
            flags = tmp_path / "flags.yaml"
            flags.write_text(FLAGS.format(legacy=legacy_url, new=new_url))
            store = ParityStore(f"sqlite+aiosqlite:///{tmp_path / 'parity.db'}")
            shadow = Shadow(ParityRecorder(store, flush_interval=0.05))
            app = create_app(flags, access_log=False, health_interval=0.5, shadow=shadow)
            async with serve(app) as url:
                assert app[STATE].shadow is shadow
                yield Proxy(url, shadow)


def learning(report: dict[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = next(f for f in report["features"] if f["feature"] == "learning")
    return found


async def test_quizzes_and_analytics_match_in_shadow_mode(proxy: Proxy) -> None:
    async with httpx.AsyncClient(base_url=proxy.url, timeout=30) as http:
        registered = await http.post(
            "/api/auth/register",
            json={"email": "shadow@x.io", "password": "password1", "name": "S"},
        )
        assert registered.status_code == 201
        await proxy.settle(1)  # the user exists on both stores before anyone acts as them
        http.headers["Authorization"] = f"Bearer {registered.json()['token']}"
        session = (await http.post("/api/sessions", json={"title": "Fractions"})).json()
        for text in ("What is 1/2 + 1/4?", "It is 3/4: write both in quarters first."):
            path = f"/api/sessions/{session['id']}/messages"
            assert (await http.post(path, json={"role": "user", "content": text})).is_success
        await proxy.settle(4)  # both stores hold the session before a quiz is written from it

        quiz = await http.post("/api/quizzes", json={"session_id": session["id"], "count": 3})
        assert quiz.status_code == 201 and quiz.headers["X-Banyan-Backend"] == "legacy"
        await proxy.settle(5)
        quiz_id = quiz.json()["id"]
        assert (await http.get(f"/api/quizzes/{quiz_id}")).status_code == 200
        attempt = await http.post(f"/api/quizzes/{quiz_id}/attempts", json={"answers": [0, 1, 2]})
        assert attempt.status_code == 201
        refused = [
            await http.post("/api/quizzes", json={"count": 2}),
            await http.post(f"/api/quizzes/{quiz_id}/attempts", json={"answers": [9]}),
            await http.get("/api/quizzes/00000000-0000-0000-0000-000000000000"),
        ]
        assert [r.status_code for r in refused] == [400, 400, 404]

        hour = now_ms() - now_ms() % 3_600_000
        events = [
            {"name": "quiz.finished", "at": iso(hour - 2 * 3_600_000 + 5)},
            {"name": "page_view", "at": iso(hour - 3_600_000 + 7)},
            {"name": "page_view"},
        ]
        accepted = await http.post("/api/analytics/events", json={"events": events})
        assert accepted.status_code == 202
        await proxy.settle(11)
        window = {"from": iso(hour - 5 * 3_600_000), "to": iso(hour + 3_600_000)}
        summary = await http.get("/api/analytics/summary", params=window)
        assert summary.json()["total"] == 3
        bad = await http.get("/api/analytics/summary", params={"from": "nope"})
        assert bad.status_code == 400
        report = await proxy.settle(13)

    feature = learning(report)
    assert feature["compared"] == 9, feature
    assert feature["matched"] == 9 and feature["mismatched"] == 0 and feature["errors"] == 0
