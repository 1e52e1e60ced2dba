"""The parity store on the AI Tutor (banyan/parity/store.py, endpoints.py and redact.py through the
real stack): thousands of reads of random ids of every shape leave its row count flat, and a
password in a query string and an API key in a differing field are stored nowhere, nor shown on
the report."""

from __future__ import annotations

import asyncio
import random
import string
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text

from banyan.backends.contract.targets import serve_backend, sqlite_url
from banyan.parity.store import ParityRecorder, ParityStore
from banyan.proxy.app import create_app
from banyan.proxy.shadow import Shadow
from banyan.serving import serve
from tests.proxy.fault_front import Fault, FaultFront

API_KEY = "sk-live-4f9a8b7c6d5e4f3a2b1c0d9e"
PASSWORD = "Query-Pass-9931"
FLAGS = """\
version: 1
backends:
  legacy: {legacy}
  new: {new}
features:
  auth:
    routes: ["/api/auth/**"]
    mode: shadow
    writes: mirror
    parity:
      sample: 100
      noise_sample: 0
      ignore: ["$..created_at", "$..updated_at", "$..expires_at", "$..token"]
  sessions:
    routes: ["/api/sessions/**"]
    mode: shadow
    parity: {{sample: 100, noise_sample: 0}}
default: legacy
"""
# the distinct-key shape of every table but latency (whose 5% buckets fill as latencies vary)
SHAPE = {
    "counters": "SELECT COUNT(*) FROM (SELECT DISTINCT feature, endpoint FROM parity_counters)",
    "fields": "SELECT COUNT(*) FROM (SELECT DISTINCT feature, endpoint, path, kind "
    "FROM parity_fields)",
    "examples": "SELECT COUNT(*) FROM parity_examples",
    "noise": "SELECT COUNT(*) FROM parity_noise_learned",
}


# Reads before the store's shape is taken: a fifth of them are random words, enough to fill the
# endpoint cap (200) on the way; then as many again, which must add no row. (Ten thousand reads
# took over 300 s inside the full suite under coverage.)
EARLY, LATE = 2_000, 2_000


def random_id(rng: random.Random) -> str:
    shape = rng.randrange(5)
    if shape == 0:
        return str(uuid.UUID(int=rng.getrandbits(128)))
    if shape == 1:
        return f"{rng.getrandbits(64):016x}"
    if shape == 2:
        return str(rng.randrange(10**9))
    if shape == 3:  # a random word: no heuristic can tell it from a route word
        return "".join(rng.choices(string.ascii_lowercase, k=rng.randrange(5, 12)))
    return "".join(rng.choices(string.ascii_letters + string.digits, k=12))


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[tuple[str, Shadow]]:
    async with (
        serve_backend("legacy", sqlite_url(tmp_path, "legacy")) as legacy,
        serve_backend("new", sqlite_url(tmp_path, "new")) as new,
    ):
        front = FaultFront(new, [Fault("GET", "/api/auth/me", fields={"$.user.api_key": API_KEY})])
        async with serve(front.app) as faulty_new:
            flags = tmp_path / "flags.yaml"
            flags.write_text(FLAGS.format(legacy=legacy, new=faulty_new))
            store = ParityStore(f"sqlite+aiosqlite:///{tmp_path / 'parity.db'}")
            shadow = Shadow(ParityRecorder(store, flush_interval=0.2))
            app = create_app(flags, access_log=False, health_interval=3600, shadow=shadow)
            async with serve(app) as url:
                yield url, shadow


async def settled(shadow: Shadow) -> dict[str, int]:
    for _ in range(600):
        if shadow.inflight == 0:
            break
        await asyncio.sleep(0.05)
    await shadow.recorder.flush()
    async with shadow.recorder.store.engine.connect() as conn:
        return {name: int((await conn.execute(text(q))).scalar_one()) for name, q in SHAPE.items()}


async def register(client: httpx.AsyncClient) -> dict[str, str]:
    body = {"email": "bounded@example.com", "password": "password-1", "name": "B"}
    registered = await client.post("/api/auth/register", json=body)
    assert registered.status_code == 201, registered.text
    return {"Authorization": f"Bearer {registered.json()['token']}"}


async def test_thousands_of_random_id_reads_leave_the_store_flat(
    stack: tuple[str, Shadow],
) -> None:
    url, shadow = stack
    rng = random.Random(14)
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        auth = await register(client)
        gate = asyncio.Semaphore(16)

        async def read() -> None:
            async with gate:
                answer = await client.get(f"/api/sessions/{random_id(rng)}", headers=auth)
                assert answer.status_code == 404

        await asyncio.gather(*(read() for _ in range(EARLY)))
        early = await settled(shadow)
        await asyncio.gather(*(read() for _ in range(LATE)))
        late = await settled(shadow)
        data = await shadow.recorder.store.summary(feature="sessions")
    assert late == early, (early, late)
    [sessions] = data["features"]
    assert sessions["compared"] + sessions["skipped"] == EARLY + LATE
    endpoints = {e["endpoint"]: e for e in sessions["endpoints"]}
    assert len(endpoints) == shadow.endpoints.cap + 1 and "other" in endpoints
    ids = endpoints["GET /api/sessions/{id}"]
    assert ids["compared"] + ids["skipped"] > 0.6 * (EARLY + LATE)  # four shapes collapse
    async with shadow.recorder.store.engine.connect() as conn:
        latency_rows = (await conn.execute(text("SELECT COUNT(*) FROM parity_latency"))).scalar()
    assert latency_rows is not None and latency_rows < 2 * 400  # buckets from 10 us to 10 s


async def test_secrets_are_stored_nowhere_nor_shown(
    stack: tuple[str, Shadow], tmp_path: Path
) -> None:
    url, shadow = stack
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        auth = await register(client)
        me = await client.get(f"/api/auth/me?password={PASSWORD}&lang=en", headers=auth)
        assert me.status_code == 200 and "api_key" not in me.json()["user"]  # legacy answered
        await settled(shadow)
        page = (await client.get("/_proxy/parity/export.html")).text
        report = (await client.get("/_proxy/parity.json")).text
        data = await shadow.recorder.store.summary(feature="auth")
    me_entry = next(
        e for e in data["features"][0]["endpoints"] if e["endpoint"] == "GET /api/auth/me"
    )
    [difference] = me_entry["top_fields"]
    assert (difference["path"], difference["kind"]) == ("$.user.api_key", "added")
    example = difference["examples"][0]
    assert example["url"] == "/api/auth/me?password=[REDACTED]&lang=en"
    assert example["differences"][0]["candidate"] == "[REDACTED]"
    stored = b"".join(p.read_bytes() for p in tmp_path.glob("parity.db*"))
    assert b"Query-Pass" not in stored and b"sk-live" not in stored
    for shown in (page, report):
        assert PASSWORD not in shown and API_KEY not in shown and "$.user.api_key" in shown
