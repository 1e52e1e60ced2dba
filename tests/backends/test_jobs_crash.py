"""A backend process killed (SIGKILL) with jobs in flight: after a restart on the same store every
job finishes, the interrupted ones once more (their lease expired), the finished ones never again.

Both backends run as real ``banyan legacy|new`` processes with a 1-second job lease, against a
slow in-process model server, so jobs are mid-flight when the process dies without any chance to
hand them back.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest

from banyan.backends.model.server import create_app as model_app
from banyan.processes import PYTHON_CLI, Child, start, stop
from banyan.serving import serve

DOCUMENTS = 6


async def launch(kind: str, db: str, model_url: str) -> Child:
    env = {
        "OPENAI_BASE_URL": model_url + "/v1",
        "BANYAN_JOB_LEASE": "1",
        "BANYAN_JOB_CONCURRENCY": "2",
    }
    return await start(kind, [*PYTHON_CLI, kind, "--port", "0", "--db", db], env=env)


async def jobs_of(client: httpx.AsyncClient, ids: list[str]) -> dict[str, dict[str, Any]]:
    found = {}
    for document_id in ids:
        document = (await client.get(f"/api/documents/{document_id}")).json()
        found[document_id] = (await client.get(f"/api/jobs/{document['job_id']}")).json()
    return found


@pytest.mark.parametrize("kind", ["legacy", "new"])
async def test_jobs_survive_a_killed_worker(kind: str, tmp_path: Path) -> None:
    db = f"sqlite+aiosqlite:///{tmp_path / 'store.db'}"
    async with serve(model_app(latency_ms=300)) as model_url:
        child = await launch(kind, db, model_url)
        try:
            async with httpx.AsyncClient(base_url=child.url, timeout=10) as client:
                sent = {"email": "crash@example.com", "password": "password-1", "name": "C"}
                token = (await client.post("/api/auth/register", json=sent)).json()["token"]
                client.headers["Authorization"] = f"Bearer {token}"
                ids = []
                for n in range(DOCUMENTS):
                    files = {"file": (f"d{n}.txt", f"Document {n} on osmosis.".encode())}
                    ids.append((await client.post("/api/documents", files=files)).json()["id"])
                for _ in range(300):
                    before = await jobs_of(client, ids)
                    statuses = [j["status"] for j in before.values()]
                    if "succeeded" in statuses and "running" in statuses:
                        break
                    await asyncio.sleep(0.02)
                else:
                    pytest.fail(f"never saw finished and running jobs at once: {statuses}")
        finally:
            child.process.kill()  # no clean stop: the running jobs keep their leases
            await child.process.wait()
        child = await launch(kind, db, model_url)
        try:
            async with httpx.AsyncClient(
                base_url=child.url, timeout=10, headers={"Authorization": f"Bearer {token}"}
            ) as client:
                for _ in range(400):
                    after = await jobs_of(client, ids)
                    if all(j["status"] == "succeeded" for j in after.values()):
                        break
                    await asyncio.sleep(0.05)
                documents = [(await client.get(f"/api/documents/{i}")).json() for i in ids]
        finally:
            await stop(child.process)
    assert all(j["status"] == "succeeded" for j in after.values()), after
    assert all(d["status"] == "ready" for d in documents), documents
    for document_id, job in before.items():
        if job["status"] == "succeeded":
            assert after[document_id] == job  # finished before the kill: never run again
    attempts = sorted(j["attempts"] for j in after.values())
    assert attempts[-1] == 2 and set(attempts) <= {1, 2}, after  # killed mid-flight: once more
