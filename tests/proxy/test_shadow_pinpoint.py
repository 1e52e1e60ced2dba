"""Shadow mode pinpoints injected differences: each at its exact JSON path and endpoint, no more.

The real stack of the contract suite's ``proxy-shadow`` target — the repository's ``flags.yaml``
with every feature shadowed (legacy answers), both backends on SQLite, the model server — except
that the candidate is reached through a fault front (:mod:`tests.proxy.fault_front`) that alters
chosen answers of the new backend: a changed field, a field of another type, an added field, a
removed field, another status, another header, and a tutor turn's answer over the WebSocket.
Everything else passes through untouched and must match.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import pytest

from banyan.backends.contract.client import PASSWORD, unique_email
from banyan.backends.contract.shadow import parity_problems, shadow_flags, verdict
from banyan.backends.contract.targets import model_server, serve_backend, sqlite_url
from banyan.parity.store import ParityRecorder, ParityStore
from banyan.proxy.app import create_app
from banyan.proxy.shadow import Shadow
from banyan.serving import serve
from tests.proxy.fault_front import REMOVE, Fault, FaultFront

ID = r"[0-9a-f-]{36}"
FAULTS = [
    Fault("GET", "/api/auth/me", fields={"$.user.nickname": "Eve"}),
    Fault("POST", "/api/folders", status=200),
    Fault("GET", "/api/folders", headers={"Content-Type": "text/plain; charset=utf-8"}),
    Fault("GET", f"/api/sessions/{ID}", fields={"$.title": "Tampered"}),
    Fault("GET", f"/api/sessions/{ID}/context", fields={"$.context.level": REMOVE}),
    Fault("GET", f"/api/sessions/{ID}/messages", fields={"$.items[0].role": 1}),
    Fault("WS", f"/ws/tutor/{ID}", frame_type="done", fields={"$.answer.content": "Tampered"}),
]
# (feature, endpoint, field pattern, kind, one concrete path): all that may be reported
EXPECTED = {
    ("auth", "GET /api/auth/me", "$.user.nickname", "added", "$.user.nickname"),
    ("folders", "POST /api/folders", "status", "changed", "status"),
    ("folders", "GET /api/folders", "header:content-type", "changed", "header:content-type"),
    ("sessions", "GET /api/sessions/{id}", "$.title", "changed", "$.title"),
    ("sessions", "GET /api/sessions/{id}/context", "$.context.level", "removed", "$.context.level"),
    ("sessions", "GET /api/sessions/{id}/messages", "$.items[*].role", "type", "$.items[0].role"),
    ("tutor", "GET /ws/tutor/{id}", "$.answer.content", "changed", "$.answer.content"),
}


@dataclass
class Stack:
    url: str
    shadow: Shadow
    front: FaultFront


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[Stack]:
    async with (
        model_server(),
        serve_backend("legacy", sqlite_url(tmp_path, "legacy")) as legacy,
        serve_backend("new", sqlite_url(tmp_path, "new")) as new,
    ):
        front = FaultFront(new, FAULTS)
        async with serve(front.app) as faulty_new:
            flags = tmp_path / "flags.yaml"
            flags.write_text(shadow_flags(legacy, faulty_new, "legacy"))
            store = ParityStore(sqlite_url(tmp_path, "parity"))
            shadow = Shadow(ParityRecorder(store, flush_interval=0.05))
            app = create_app(flags, access_log=False, health_interval=0.5, shadow=shadow)
            async with serve(app) as url:
                yield Stack(url, shadow, front)


def reported(report: dict[str, Any]) -> set[tuple[str, str, str, str, str]]:
    found = set()
    for feature in report["features"]:
        for endpoint in feature["endpoints"]:
            for top in endpoint["top_fields"]:
                example = top["examples"][0]
                concrete = next(
                    d["path"]
                    for d in example["differences"]
                    if d["kind"] == top["kind"]
                    and (d["path"] == top["path"] or d["path"].replace("[0]", "[*]") == top["path"])
                )
                found.add(
                    (feature["feature"], endpoint["endpoint"], top["path"], top["kind"], concrete)
                )
    return found


async def test_every_injected_difference_is_found_at_its_place_and_nothing_else(
    stack: Stack,
) -> None:
    async with httpx.AsyncClient(base_url=stack.url, timeout=15) as client:
        sent = {"email": unique_email("pin"), "password": PASSWORD, "name": "Pin"}
        registered = await client.post("/api/auth/register", json=sent)
        assert registered.status_code == 201, registered.text
        client.headers["Authorization"] = f"Bearer {registered.json()['token']}"
        answers = [
            await client.get("/api/auth/me"),
            await client.post("/api/folders", json={"name": "Biology"}),
            await client.get("/api/folders"),
            session := await client.post("/api/sessions", json={"title": "Cells"}),
        ]
        path = f"/api/sessions/{session.json()['id']}"
        context = {"context": {"level": "easy", "n": 1}}
        message = {"role": "user", "content": "What is a cell?"}
        answers += [
            await client.get(path),
            await client.put(f"{path}/context", json=context),
            await client.get(f"{path}/context"),
            await client.post(f"{path}/messages", json=message),
            await client.get(f"{path}/messages"),
            await client.get("/api/sessions"),
        ]
        token = registered.json()["token"]
        socket_url = stack.url.replace("http", "ws") + f"/ws/tutor/{session.json()['id']}"
        async with aiohttp.ClientSession() as http:
            async with http.ws_connect(f"{socket_url}?token={token}") as ws:
                await ws.send_json({"type": "ask", "text": "Why are cells small?"})
                while (frame := await ws.receive_json(timeout=10))["type"] != "done":
                    assert frame["type"] == "token", frame
        assert frame["answer"]["content"] != "Tampered"  # the user saw the primary's turn
        # the user's answers are the primary's, untouched by the candidate's faults
        assert all(a.headers["X-Banyan-Backend"] == "legacy" for a in answers)
        assert answers[1].status_code == 201 and answers[4].json()["title"] == "Cells"
        problems = await verdict(stack.url, stack.shadow)
        report = (await client.get("/_proxy/parity.json")).json()
        status = (await client.get("/_proxy/status")).json()

    assert len(stack.front.applied) == len(FAULTS)
    assert reported(report) == EXPECTED
    by_endpoint = {
        (f["feature"], e["endpoint"]): e for f in report["features"] for e in f["endpoints"]
    }
    faulty = {(feature, endpoint) for feature, endpoint, *_ in EXPECTED}
    for key, endpoint in by_endpoint.items():
        assert endpoint["errors"] == 0, endpoint
        assert endpoint["mismatched"] == (1 if key in faulty else 0), (key, endpoint)
    assert ("sessions", "GET /api/sessions") in by_endpoint  # compared, and it matched
    # the verdict lists each faulty endpoint, with the differing field and both values
    text = "\n".join(problems)
    assert len(problems) == len(EXPECTED)
    assert "sessions GET /api/sessions/{id}: 1 mismatched" in text
    assert "changed at $.title x1" in text and "primary 'Cells', candidate 'Tampered'" in text
    assert problems == parity_problems(report, status)
