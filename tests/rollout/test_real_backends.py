"""A rollout of ``sessions`` with the real backends (SQLite) behind the real proxy: registered
users create and read sessions all along while the proxy walks mirror -> shadow -> canary 50 -> new;
no user sees an error, the rollout succeeds on its gates, and ``banyan data verify`` finds the two
stores identical at the end. (Users read single sessions, not their list: a list read's shadow
copy can still be overtaken by the same user's next create, a parity question outside rollouts.)"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx

from banyan.backends.datatools.verify import verify
from banyan.backends.legacy.app import create_app as legacy_app
from banyan.backends.new.app import create_app as new_app
from banyan.proxy.app import STATE, create_app
from banyan.proxy.shadow import shadow_from_env
from banyan.serving import serve

ADMIN = {"Authorization": "Bearer rollout-token"}
FLAGS = """\
version: 1
backends:
  legacy: {legacy}
  new: {new}
features:
  logout:
    routes: ["/api/auth/logout"]
    writes: always
  register:
    routes: ["/api/auth/register"]
    writes: mirror
  auth:
    routes: ["/api/auth/**"]
  sessions:
    routes: ["/api/sessions/**"]
    stick_by: user
    parity:
      ignore: ["$..created_at", "$..updated_at", "$..expires_at", "$.next_cursor"]
      mask: ["$.items[*].id"]
    rollout:
      steps:
        - mirror: {{}}
        - shadow: {{for: 1s}}
        - canary: {{percent: 50, for: 1s}}
        - new: {{}}
      analysis: {{max_latency_ratio: null, min_samples: 20}}
default: legacy
"""


async def settled(state: Any) -> None:
    """Wait until the mirror queue and the shadow copies are done; no dead letter."""
    assert state.mirror is not None
    for _ in range(600):
        stats = await state.mirror.stats()
        if not stats.pending and not getattr(state.shadow, "inflight", 0):
            break
        await asyncio.sleep(0.05)
    assert stats.dead == 0


async def test_sessions_roll_out_to_new_with_no_user_visible_error(tmp_path: Path) -> None:
    stores = {
        "legacy": f"sqlite+aiosqlite:///{tmp_path / 'legacy.db'}",
        "new": f"sqlite+aiosqlite:///{tmp_path / 'new.db'}",
    }
    async with (
        serve(legacy_app(stores["legacy"])) as legacy_url,
        serve(new_app(stores["new"])) as new_url,
    ):
        flags = tmp_path / "flags.yaml"
        flags.write_text(FLAGS.format(legacy=legacy_url, new=new_url))
        app = create_app(flags, access_log=False, shadow=shadow_from_env(flags))
        state = app[STATE]
        async with serve(app) as proxy, httpx.AsyncClient(base_url=proxy, timeout=30) as http:
            answers: list[tuple[str, int]] = []

            async def call(method: str, path: str, **kw: Any) -> httpx.Response:
                response = await http.request(method, path, **kw)
                answers.append((f"{method} {path}", response.status_code))
                return response

            users: list[dict[str, str]] = []
            for number in range(12):  # registered (and mirrored to new) before the rollout
                body = {"email": f"u{number}@example.com", "password": "password-1", "name": "U"}
                made = await call("POST", "/api/auth/register", json=body)
                users.append({"Authorization": f"Bearer {made.json()['token']}"})
            await settled(state)
            started = await http.post("/_proxy/rollouts/sessions/start", headers=ADMIN)
            assert started.status_code == 200, started.text
            record: dict[str, Any] = {}
            for round_ in range(400):
                for auth in users[round_ % 2 :: 2]:
                    created = await call("POST", "/api/sessions", json={"title": "x"}, headers=auth)
                    assert created.status_code == 201, (created.text, answers[-3:])
                    await call("GET", f"/api/sessions/{created.json()['id']}", headers=auth)
                record = (await http.get("/_proxy/rollouts/sessions", headers=ADMIN)).json()
                if record["state"] != "running":
                    break
            assert record["state"] == "succeeded", (record["reason"], record["gates"])
            assert state.flags.feature("sessions").mode == "new"
            failed = [a for a in answers if a[1] >= 400]
            assert failed == [], failed[:5]
            await settled(state)
    reports = await verify(stores["legacy"], stores["new"])
    assert sum(r.difference_count for r in reports) == 0
