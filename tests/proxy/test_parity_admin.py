"""Tests for banyan/proxy/parity_admin.py (and banyan/parity/replay.py through it): the parity
endpoints the console reads, on a real proxy shadowing two real recording upstreams that answer
with their own names (so every comparison differs at ``$.backend``)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.proxy.test_shadow import features, make_shadow, settle

# only what the recorders say about themselves is compared (not the headers they saw)
COMPARED = """\
  api:
    routes: ["/api/**"]
    mode: shadow
    parity: {sample: 100, noise_sample: 0, ignore: ["$.headers"]}
"""

TOKEN = "console-admin-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(autouse=True)
def admin_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BANYAN_ADMIN_TOKEN", TOKEN)


async def test_series_mismatches_example_and_replay(make_stack: Any, tmp_path: Path) -> None:
    async with make_stack(COMPARED, shadow=make_shadow(tmp_path)) as stack:
        async with httpx.AsyncClient(base_url=stack.url, headers=AUTH) as client:
            for n in range(3):
                await client.get(f"/api/lessons/{n}?x={n}")
            await settle(stack, 3)
            series = (await client.get("/_proxy/parity/series?feature=api&since=1h")).json()
            listed = (await client.get("/_proxy/parity/mismatches?feature=api")).json()["items"]
            by_path = await client.get("/_proxy/parity/mismatches?path=$.backend&limit=2")
            elsewhere = await client.get("/_proxy/parity/mismatches?path=$.nothing")
            future = await client.get(f"/_proxy/parity/mismatches?since={time.time() + 3600}")
            example = (await client.get(f"/_proxy/parity/examples/{listed[0]['id']}")).json()
            # the backends now agree: replay says so (the recorders answer with their own names
            # unless told otherwise; give both the same one)
            before = await client.post(
                f"/_proxy/parity/examples/{listed[0]['id']}/replay", json={"token": "user-token"}
            )
            stack.legacy.name = stack.new.name = "same"
            after = await client.post(f"/_proxy/parity/examples/{listed[0]['id']}/replay")
    hour = series["hours"][0]
    assert hour["feature"] == "api" and hour["compared"] == 3 and hour["mismatched"] == 3
    assert hour["match_rate"] == 0.0
    assert len(listed) == 3  # one row per comparison, however many paths differed
    assert [item["url"] for item in listed] == [f"/api/lessons/{n}?x={n}" for n in (2, 1, 0)]
    assert {"path": "$.backend", "kind": "changed"} in listed[0]["paths"]
    assert len(by_path.json()["items"]) == 2
    assert elsewhere.json()["items"] == [] and future.json()["items"] == []
    assert example["primary"]["body"] and example["candidate"]["body"]
    differing = {d["path"]: d for d in example["differences"]}
    assert differing["$.backend"]["primary"] == "legacy"
    assert differing["$.backend"]["candidate"] == "new"
    replayed = before.json()
    assert replayed["still_differs"] is True and replayed["status"] == {"legacy": 200, "new": 200}
    assert any(d["path"] == "$.backend" for d in replayed["differences"])
    sent = [r for r in stack.new.requests if r["path_qs"] == "/api/lessons/2?x=2"]
    # the original carried a credential; a replay never resends a stored one, only the one given
    tokens = [r["headers"].get("authorization") for r in sent]
    assert tokens == [AUTH["Authorization"], "Bearer user-token", None]
    assert after.json()["still_differs"] is False


async def test_bad_queries_and_access(make_stack: Any, tmp_path: Path) -> None:
    async with make_stack(features(), shadow=make_shadow(tmp_path)) as stack:
        async with httpx.AsyncClient(base_url=stack.url) as client:
            anonymous = await client.get("/_proxy/parity/series")
            no_write = await client.post("/_proxy/parity/examples/1/replay")
            client.headers.update(AUTH)
            bad_since = await client.get("/_proxy/parity/series?since=yesterday")
            bad_until = await client.get("/_proxy/parity/mismatches?until=soon")
            bad_limit = await client.get("/_proxy/parity/mismatches?limit=0")
            bad_id = await client.get("/_proxy/parity/examples/abc")
            unknown = await client.get("/_proxy/parity/examples/999")
            bad_json = await client.post(
                "/_proxy/parity/examples/999/replay",
                content=b"{",
                headers={"Content-Type": "application/json"},
            )
            await client.get("/api/lessons/1")
            await settle(stack, 1)
            first = (await client.get("/_proxy/parity/mismatches")).json()["items"][0]["id"]
            not_json = await client.post(
                f"/_proxy/parity/examples/{first}/replay",
                content=b"{",
                headers={"Content-Type": "application/json"},
            )
            bad_token = await client.post(
                f"/_proxy/parity/examples/{first}/replay", json={"token": 5}
            )
            export = await client.get("/_proxy/parity/export.html")
    assert anonymous.status_code == 401 and no_write.status_code == 401
    for answer in (bad_since, bad_until, bad_limit, bad_id, bad_token):
        assert answer.status_code == 400, answer.text
        assert answer.json()["error"]["code"] == "validation_error"
    assert "since" in bad_since.json()["error"]["message"]
    assert unknown.status_code == 404 and bad_json.status_code == 404  # no such example first
    assert not_json.status_code == 400 and not_json.json()["error"]["code"] == "invalid_json"
    assert export.headers["content-type"].startswith("text/html") and "$.backend" in export.text


async def test_without_parity_the_endpoints_say_so(make_stack: Any) -> None:
    async with make_stack() as stack, httpx.AsyncClient(base_url=stack.url, headers=AUTH) as c:
        answers = [
            await c.get("/_proxy/parity/series"),
            await c.get("/_proxy/parity/mismatches"),
            await c.get("/_proxy/parity/examples/1"),
            await c.post("/_proxy/parity/examples/1/replay"),
        ]
    for answer in answers:
        assert answer.status_code == 404 and answer.json()["error"]["code"] == "parity_disabled"
