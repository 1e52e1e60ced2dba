"""Contract: jobs — ``GET /api/jobs/{id}``, retries with backoff into the dead letters, the queue
depth on ``/metrics``, and a restart with jobs in flight: none lost, none run twice.

The jobs are the documents' processing jobs (the contract's way to make one). A target started
with ``job_backoff`` retries within milliseconds, so a job that keeps failing (a PDF that cannot be
read) reaches ``dead`` quickly.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest

from banyan.backends.contract.client import User, assert_error, authed, register
from banyan.backends.contract.shadow import SHADOW_PRIMARY
from banyan.backends.contract.targets import EXTERNAL, Target, open_target
from banyan.backends.contract.uploads import upload, wait_job, wait_settled

pytestmark = pytest.mark.asyncio(loop_scope="session")

JOB_FIELDS = {
    "id",
    "kind",
    "status",
    "attempts",
    "max_attempts",
    "priority",
    "result",
    "error",
    "created_at",
    "updated_at",
}


def local_only(target_name: str) -> None:
    if target_name == EXTERNAL:
        pytest.skip("needs a target this suite starts (its job settings and its restart)")


async def test_a_job_is_readable_by_its_owner_only(
    user: User, other: User, anon: httpx.AsyncClient
) -> None:
    document = (await upload(user.client, "a.txt", b"Atoms have a nucleus.")).json()
    job = await wait_job(user.client, document["job_id"], ("succeeded",))
    assert set(job) == JOB_FIELDS
    assert job["id"] == document["job_id"] and job["kind"] == "documents.process"
    assert job["status"] == "succeeded" and job["attempts"] == 1 and job["error"] is None
    assert job["max_attempts"] >= 1 and isinstance(job["priority"], int)
    path = f"/api/jobs/{job['id']}"
    assert_error(await other.client.get(path), 404, "not_found")
    assert_error(await anon.get(path), 401, "unauthorized")
    for bad in ("nope", "00000000-0000-4000-8000-000000000000"):
        assert_error(await user.client.get(f"/api/jobs/{bad}"), 404, "not_found")


async def test_the_queue_depth_is_on_metrics(target: Target, user: User) -> None:
    if target.via_proxy or target.name == EXTERNAL:
        pytest.skip("/metrics belongs to each backend, not to the proxy")
    document = (await upload(user.client, "m.txt", b"Counting jobs.")).json()
    await wait_job(user.client, document["job_id"], ("succeeded",))
    async with httpx.AsyncClient(base_url=target.base_url) as client:
        text = (await client.get("/metrics")).text
    for status in ("queued", "running", "succeeded", "failed", "dead"):
        assert f'banyan_jobs{{backend="{target.backend}",status="{status}"}}' in text
    assert "banyan_http_requests_total{" in text


async def test_a_job_that_keeps_failing_ends_dead(target_name: str, tmp_path: Path) -> None:
    local_only(target_name)
    async with open_target(target_name, tmp_path, job_backoff=0.01) as target:
        user = await register(target)
        async with user.client as client:
            document = (await upload(client, "broken.pdf", b"%PDF-1.4 not really")).json()
            job = await wait_job(client, document["job_id"], ("dead",))
            assert job["status"] == "dead", job
            assert job["attempts"] == job["max_attempts"] == 5
            assert job["error"].startswith("the PDF could not be read: ")
            failed = await wait_settled(client, document["id"])
            assert failed["status"] == "failed" and failed["error"] == job["error"]
            assert failed["summary"] is None and failed["text"] is None


async def _snapshot(client: httpx.AsyncClient, ids: list[str]) -> dict[str, dict[str, Any]]:
    jobs = {}
    for document_id in ids:
        document = (await client.get(f"/api/documents/{document_id}")).json()
        jobs[document_id] = (await client.get(f"/api/jobs/{document['job_id']}")).json()
    return jobs


async def test_a_restart_with_jobs_in_flight_loses_none_and_runs_none_twice(
    target_name: str, tmp_path: Path
) -> None:
    local_only(target_name)
    if target_name.endswith("-pg"):
        pytest.skip("a -pg target's database does not outlive the target")
    if target_name in SHADOW_PRIMARY:
        pytest.skip("kills both backends mid-job: proven on every other local target")
    options: dict[str, Any] = {"job_backoff": 0.05}
    slow = {"latency_ms": 250}  # each summary takes a while: jobs are in flight when we stop
    async with open_target(target_name, tmp_path, model=slow, **options) as target:
        user = await register(target)
        async with user.client as client:
            ids = []
            for n in range(10):
                sent = await upload(client, f"d{n}.txt", f"Document number {n}.".encode())
                ids.append(sent.json()["id"])
            for _ in range(200):
                before = await _snapshot(client, ids)
                statuses = [j["status"] for j in before.values()]
                if "succeeded" in statuses and "running" in statuses:
                    break
                await asyncio.sleep(0.02)
            else:
                pytest.fail(f"never saw jobs finished and in flight at once: {statuses}")
    async with open_target(target_name, tmp_path, **options) as target:
        async with authed(target, user.token) as client:
            for document_id in ids:
                assert (await wait_settled(client, document_id))["status"] == "ready"
            after = await _snapshot(client, ids)
    assert all(job["status"] == "succeeded" for job in after.values()), after
    assert all(job["attempts"] == 1 for job in after.values()), after  # nothing ran twice
    for document_id, job in before.items():
        if job["status"] == "succeeded":  # finished before the stop: untouched since
            assert after[document_id] == job


async def test_a_failed_attempt_waits_for_its_retry(target_name: str, tmp_path: Path) -> None:
    local_only(target_name)
    env = {"BANYAN_LLM_RETRIES": "0"}
    async with open_target(
        target_name, tmp_path, model={"down": True}, env=env, job_backoff=60
    ) as target:
        user = await register(target)
        async with user.client as client:
            document = (await upload(client, "w.txt", b"Waiting for the model.")).json()
            job = await wait_job(client, document["job_id"], ("failed",))
            assert job["status"] == "failed" and job["attempts"] == 1, job
            assert job["error"].startswith("cannot reach the model")
            waiting = (await client.get(f"/api/documents/{document['id']}")).json()
            assert waiting["status"] == "queued" and waiting["error"] == job["error"]
