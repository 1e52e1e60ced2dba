"""Contract through the proxy in shadow mode: agents, documents and jobs answer alike on both
backends — 100% parity.

The real stack: one deterministic model server, both backends on SQLite, the proxy with every
feature on ``shadow`` (legacy primary) and ``writes: mirror``, so the candidate receives the same
writes with the same ``Idempotency-Key`` and derives the same ids (documents, their jobs,
sessions, messages). Only per-store timestamps, and the list cursor that carries one, are
ignored. Every compared answer of the ``agents``, ``documents`` and ``jobs`` features must match.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio

from banyan.backends.contract.client import PASSWORD, unique_email
from banyan.backends.contract.targets import model_server, serve_backend, sqlite_url
from banyan.backends.contract.uploads import tiny_pdf, upload, wait_settled
from banyan.serving import serve

pytestmark = pytest.mark.asyncio(loop_scope="session")

IGNORE = '["$..created_at", "$..updated_at", "$..expires_at", "$.next_cursor"]'
FEATURES = {
    "auth": "/api/auth/**",
    "agents": "/api/agents/**",
    "documents": "/api/documents/**",
    "jobs": "/api/jobs/**",
    "sessions": "/api/sessions/**",
}
COMPARED = ("agents", "documents", "jobs")


def shadow_flags(legacy: str, new: str) -> str:
    lines = ["version: 1", f"backends:\n  legacy: {legacy}\n  new: {new}", "features:"]
    for name, route in FEATURES.items():
        lines += [
            f"  {name}:",
            f'    routes: ["{route}"]',
            "    mode: shadow",
            "    writes: mirror",
            f"    parity: {{ignore: {IGNORE}, sample: 100, shadow_timeout: 10}}",
        ]
    lines.append("default: legacy")
    return "\n".join(lines) + "\n"


@dataclass
class Stack:
    proxy: str
    legacy: str
    new: str
    shadow: Any


@pytest_asyncio.fixture(loop_scope="session")
async def stack(tmp_path: Path) -> AsyncIterator[Stack]:
    proxy_app = pytest.importorskip("banyan.proxy.app")
    shadow_module = pytest.importorskip("banyan.proxy.shadow")
    parity_store = pytest.importorskip("banyan.parity.store")
    async with (
        model_server(),
        serve_backend("legacy", sqlite_url(tmp_path, "legacy")) as legacy,
        serve_backend("new", sqlite_url(tmp_path, "new")) as new,
    ):
        flags = tmp_path / "flags.yaml"
        flags.write_text(shadow_flags(legacy, new))
        store = parity_store.ParityStore(f"sqlite+aiosqlite:///{tmp_path / 'parity.db'}")
        shadow = shadow_module.Shadow(parity_store.ParityRecorder(store, flush_interval=0.05))
        app = proxy_app.create_app(flags, access_log=False, health_interval=0.5, shadow=shadow)
        async with serve(app) as url:
            yield Stack(url, legacy, new, shadow)


async def both_settled(stack: Stack, token: str, document_id: str) -> None:
    """Wait until each backend has processed its copy of the document and its job has recorded
    the outcome (a store marks the document ready just before its job succeeded: a read of the
    job in between would compare two moments, not two behaviours)."""
    headers = {"Authorization": f"Bearer {token}"}
    for base in (stack.legacy, stack.new):
        async with httpx.AsyncClient(base_url=base, headers=headers, timeout=10) as direct:
            for _ in range(200):
                if (await direct.get(f"/api/documents/{document_id}")).status_code == 200:
                    break
                await asyncio.sleep(0.02)
            settled = await wait_settled(direct, document_id)
            assert settled["status"] == "ready"
            job: dict[str, Any] = {}
            for _ in range(500):
                job = (await direct.get(f"/api/jobs/{settled['job_id']}")).json()
                if job.get("status") == "succeeded":
                    break
                await asyncio.sleep(0.02)
            assert job.get("status") == "succeeded", (base, job)


async def on_both(stack: Stack, token: str, path: str, *, items: bool = False) -> None:
    """Wait until ``path`` answers 200 (with items) on the candidate: mirrored writes are sent
    after the primary answered, so a read right after a write could race them."""
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=stack.new, headers=headers) as peer:
        for _ in range(250):
            answer = await peer.get(path)
            if answer.status_code == 200 and (not items or answer.json()["items"]):
                return
            await asyncio.sleep(0.02)
    raise AssertionError(f"{path} never reached the candidate")


async def settled_report(stack: Stack, expected: dict[str, int]) -> dict[str, dict[str, Any]]:
    """The parity report once at least ``expected`` comparisons per feature are recorded (shadow
    copies run after the client already has its answer)."""
    shadow = stack.shadow
    report: dict[str, dict[str, Any]] = {}
    for _ in range(300):
        await shadow.recorder.flush()
        summary = await shadow.recorder.store.summary()
        report = {f["feature"]: f for f in summary["features"]}
        done = all(report.get(k, {}).get("compared", 0) >= n for k, n in expected.items())
        if done and shadow.inflight == 0:
            return report
        await asyncio.sleep(0.02)
    raise AssertionError(f"comparisons missing: {report}")


async def test_agents_documents_and_jobs_have_full_parity_in_shadow_mode(stack: Stack) -> None:
    async with httpx.AsyncClient(base_url=stack.proxy, timeout=15) as client:
        sent = {"email": unique_email("shadow"), "password": PASSWORD, "name": "Sha"}
        registered = await client.post("/api/auth/register", json=sent)
        assert registered.status_code == 201, registered.text
        token = registered.json()["token"]
        client.headers["Authorization"] = f"Bearer {token}"
        await on_both(stack, token, "/api/auth/me")  # the mirrored registration reached new

        text = "Enzymes speed up reactions by lowering the activation energy."
        assert (await client.post("/api/agents/analyze", json={"text": text})).status_code == 200
        plan = {"goal": "Understand enzymes", "level": "intermediate"}
        assert (await client.post("/api/agents/plan", json=plan)).status_code == 200
        assert (await client.post("/api/agents/run", json={"text": text})).status_code == 200
        assert (await client.get("/api/agents")).status_code == 200

        session = (await client.post("/api/sessions", json={"title": "Enzymes"})).json()
        message = {"role": "user", "content": "Why do enzymes need a shape?"}
        await client.post(f"/api/sessions/{session['id']}/messages", json=message)
        await on_both(stack, token, f"/api/sessions/{session['id']}/messages", items=True)
        analysis = await client.post(
            "/api/agents/session-analysis", json={"session_id": session["id"]}
        )
        assert analysis.status_code == 200, analysis.text

        made = []
        for name, data in (
            ("enzymes.md", b"# Enzymes\n\nEnzymes are **proteins**. They lower energy barriers."),
            ("cells.pdf", tiny_pdf("Cells contain enzymes.")),
        ):
            answer = await upload(client, name, data)
            assert answer.status_code == 202, answer.text
            made.append(answer.json())
        for document in made:
            await both_settled(stack, token, document["id"])
            assert (await client.get(f"/api/documents/{document['id']}")).status_code == 200
            assert (await client.get(f"/api/jobs/{document['job_id']}")).status_code == 200
        assert (await client.get("/api/documents")).status_code == 200
        assert (await client.get("/api/documents?limit=1")).status_code == 200

    report = await settled_report(stack, {"agents": 5, "documents": 6, "jobs": 2})
    for feature in COMPARED:
        entry = report[feature]
        assert entry["compared"] > 0, entry
        bad = [
            (
                e["endpoint"],
                [
                    (t["path"], t["kind"], [x["candidate"] for x in t["examples"][:1]])
                    for t in e["top_fields"]
                ],
            )
            for e in entry["endpoints"]
            if e.get("mismatched") or e.get("errors")
        ]
        assert entry["mismatched"] == 0 and entry["errors"] == 0, bad
        assert entry["matched"] == entry["compared"], entry
