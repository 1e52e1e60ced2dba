"""Contract: the AI agents — ``GET /api/agents``, ``POST /api/agents/{analyze,plan,
session-analysis,run}`` — and what a client sees when the model misbehaves (down, slow, malformed
output), plus the agents' counters on ``/metrics``.

Prompts and output schemas are part of the contract: an answer must equal what the model gives
for the catalogue's prompt (asked here directly with the ``openai`` client), and behind the proxy
the other backend must give the very same answer.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio

from banyan.backends.common.agents import catalog
from banyan.backends.common.llm import DEFAULT_MODEL, LLM, LLMSettings
from banyan.backends.contract.client import User, anonymous, assert_error, authed, register
from banyan.backends.contract.targets import EXTERNAL, Target, open_target

pytestmark = pytest.mark.asyncio(loop_scope="session")

TEXT = "Photosynthesis turns light into chemical energy inside the chloroplasts of plant cells."
ROUTES = ("analyze", "plan", "session-analysis", "run")


async def direct(target: Target, agent: catalog.Agent, inputs: dict[str, Any]) -> dict[str, Any]:
    """What the model answers for ``agent``'s contract prompt, asked without any backend."""
    assert target.model_url is not None
    settings = LLMSettings(base_url=target.model_url, api_key="contract", model=DEFAULT_MODEL)
    async with LLM(settings) as llm:
        output, _ = await llm.complete_json(
            agent.build_messages(agent.validate_input(inputs)),
            agent.output_schema,
            name=agent.name,
        )
    return output


async def on_peer(target: Target, user: User) -> httpx.AsyncClient:
    """A client of the backend that is not serving, signed in as the same user."""
    assert target.peer_url is not None
    peer = Target("peer", target.peer_url, None)
    async with anonymous(peer) as client:
        sent = {"email": user.email, "password": user.password, "name": "Ada"}
        answer = await client.post("/api/auth/register", json=sent)
        if answer.status_code == 409:
            answer = await client.post(
                "/api/auth/login", json={"email": user.email, "password": user.password}
            )
    assert answer.status_code in (200, 201), answer.text
    return authed(peer, answer.json()["token"])


async def test_the_agents_are_listed(user: User) -> None:
    answer = await user.client.get("/api/agents")
    assert answer.status_code == 200, answer.text
    agents = answer.json()["agents"]
    names = [a["name"] for a in agents]
    assert names == sorted(names)
    assert {"analyzer", "planner", "session-analyzer", "summarizer"} <= set(names)
    assert all(isinstance(a["description"], str) and a["description"] for a in agents)


async def test_analyze_answers_what_the_model_says(target: Target, user: User) -> None:
    answer = await user.client.post("/api/agents/analyze", json={"text": TEXT})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert set(body) == {"topics", "difficulty", "misconceptions"}
    assert body["difficulty"] in catalog.LEVELS and body["topics"]
    if target.model_url is not None:
        assert body == await direct(target, catalog.ANALYZER, {"text": TEXT})
    again = await user.client.post("/api/agents/analyze", json={"text": f"  {TEXT}  "})
    assert again.json() == body  # the text is trimmed before it reaches the prompt


async def test_plan_is_ordered_steps(target: Target, user: User) -> None:
    sent = {"goal": "Add fractions with unlike denominators", "level": "beginner"}
    answer = await user.client.post("/api/agents/plan", json=sent)
    assert answer.status_code == 200, answer.text
    steps = answer.json()["steps"]
    assert len(steps) >= 3
    assert all(set(s) == {"title", "detail", "minutes"} for s in steps)
    assert all(isinstance(s["minutes"], int) and s["minutes"] > 0 for s in steps)
    if target.model_url is not None:
        assert answer.json() == await direct(target, catalog.PLANNER, sent)


async def test_run_chains_the_analyzer_into_the_planner(target: Target, user: User) -> None:
    answer = await user.client.post("/api/agents/run", json={"text": TEXT})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert set(body) == {"goal", "analysis", "plan", "trace"}
    assert body["goal"] == f"Understand {body['analysis']['topics'][0]}"
    assert body["trace"] == [
        {"agent": "analyzer", "attempts": 1},
        {"agent": "planner", "attempts": 1},
    ]
    analysis = await user.client.post("/api/agents/analyze", json={"text": TEXT})
    assert body["analysis"] == analysis.json()
    plan = await user.client.post(
        "/api/agents/plan", json={"goal": body["goal"], "level": body["analysis"]["difficulty"]}
    )
    assert body["plan"] == plan.json()
    given = await user.client.post("/api/agents/run", json={"text": TEXT, "goal": "Pass the exam"})
    assert given.status_code == 200 and given.json()["goal"] == "Pass the exam"


async def test_session_analysis(target: Target, user: User, other: User) -> None:
    session = (await user.client.post("/api/sessions", json={"title": "Fractions"})).json()
    empty = await user.client.post(
        "/api/agents/session-analysis", json={"session_id": session["id"]}
    )
    assert_error(empty, 422, "unprocessable")
    for role, content in (("user", "What is 1/2 + 1/3?"), ("assistant", "It is 5/6.")):
        posted = await user.client.post(
            f"/api/sessions/{session['id']}/messages", json={"role": role, "content": content}
        )
        assert posted.status_code == 201
    answer = await user.client.post(
        "/api/agents/session-analysis", json={"session_id": session["id"]}
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert set(body) == {"session_id", "summary", "progress", "strengths", "next_steps"}
    assert body["session_id"] == session["id"] and body["summary"] and body["next_steps"]
    if target.model_url is not None:
        transcript = "user: What is 1/2 + 1/3?\nassistant: It is 5/6."
        expected = await direct(
            target, catalog.SESSION_ANALYZER, {"title": "Fractions", "transcript": transcript}
        )
        assert {k: v for k, v in body.items() if k != "session_id"} == expected
    foreign = await other.client.post(
        "/api/agents/session-analysis", json={"session_id": session["id"]}
    )
    assert_error(foreign, 404, "not_found")
    for bad in ("not-a-uuid", "00000000-0000-4000-8000-000000000000"):
        missing = await user.client.post("/api/agents/session-analysis", json={"session_id": bad})
        assert_error(missing, 404, "not_found")


@pytest.mark.parametrize(
    ("route", "body", "message"),
    [
        ("analyze", {}, "text: is required"),
        ("analyze", {"text": "   "}, "text: must not be empty"),
        ("analyze", {"text": "x" * 20_001}, "text: must be at most 20000 characters"),
        ("analyze", {"text": "x", "extra": 1}, "extra: is not a known field"),
        ("analyze", {"text": 5}, "text: must be a string"),
        ("plan", {"goal": "g"}, "level: is required"),
        (
            "plan",
            {"goal": "g", "level": "expert"},
            "level: must be one of beginner, intermediate, advanced",
        ),
        ("plan", {"goal": "x" * 501, "level": "beginner"}, "goal: must be at most 500 characters"),
        ("session-analysis", {}, "session_id: is required"),
        ("session-analysis", {"session_id": 7}, "session_id: must be a string"),
        ("run", {"goal": "g"}, "text: is required"),
        ("run", {"text": "t", "goal": ""}, "goal: must not be empty"),
        ("run", [], "body: must be a JSON object"),
    ],
)
async def test_bad_input_is_refused_with_the_contract_message(
    user: User, route: str, body: Any, message: str
) -> None:
    answer = await user.client.post(f"/api/agents/{route}", json=body)
    assert_error(answer, 400, "validation_error", message)


async def test_malformed_json_and_auth(anon: httpx.AsyncClient, user: User) -> None:
    for route in ROUTES:
        broken = await user.client.post(f"/api/agents/{route}", content=b"{nope")
        assert_error(broken, 400, "invalid_json")
        assert_error(await anon.post(f"/api/agents/{route}", json={}), 401, "unauthorized")
    assert_error(await anon.get("/api/agents"), 401, "unauthorized")


async def test_the_other_backend_gives_the_same_answers(target: Target, user: User) -> None:
    if not target.via_proxy:
        pytest.skip("needs both backends (a proxy target)")
    if target.shadowed:
        pytest.skip("shadow mode compares every agent answer of both backends itself")
    async with await on_peer(target, user) as peer:
        for route, body in (
            ("analyze", {"text": TEXT}),
            ("plan", {"goal": "Understand cells", "level": "advanced"}),
            ("run", {"text": TEXT}),
        ):
            here = await user.client.post(f"/api/agents/{route}", json=body)
            there = await peer.post(f"/api/agents/{route}", json=body)
            assert here.status_code == there.status_code == 200
            assert here.json() == there.json()


async def test_agent_counters_are_on_metrics(target: Target, user: User) -> None:
    if target.via_proxy or target.name == EXTERNAL:
        pytest.skip("/metrics belongs to each backend, not to the proxy")
    await user.client.post("/api/agents/analyze", json={"text": TEXT})
    async with anonymous(target) as client:
        text = (await client.get("/metrics")).text
    backend = target.backend
    assert f'banyan_agent_calls_total{{backend="{backend}",agent="analyzer"}}' in text
    for family in ("failures", "attempts", "tokens", "latency_seconds"):
        assert f"banyan_agent_{family}_total" in text


# -- a misbehaving model -------------------------------------------------------------------------


@pytest_asyncio.fixture(loop_scope="session")
async def faulty(
    target_name: str, tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[tuple[Target, User]]:
    """A fresh target whose model server misbehaves as the test's parameter says."""
    if target_name == EXTERNAL:
        pytest.skip("an external server's model is not ours to break")
    env = {"BANYAN_LLM_RETRIES": "0", "BANYAN_LLM_TIMEOUT": "0.4"}
    async with open_target(target_name, tmp_path, model=request.param, env=env) as running:
        registered = await register(running)
        async with registered.client:
            yield running, registered


@pytest.mark.parametrize("faulty", [{"malformed_rate": 1.0}], indirect=True)
async def test_malformed_output_is_retried_then_reported(faulty: tuple[Target, User]) -> None:
    _, user = faulty
    answer = await user.client.post("/api/agents/analyze", json={"text": TEXT})
    assert_error(answer, 502, "upstream_failed")
    assert "malformed model output after 3 attempts" in answer.json()["error"]["message"]
    run = await user.client.post("/api/agents/run", json={"text": TEXT})
    assert_error(run, 502, "upstream_failed")


@pytest.mark.parametrize("faulty", [{"down": True}], indirect=True)
async def test_a_model_that_is_down_is_upstream_failed(faulty: tuple[Target, User]) -> None:
    target, user = faulty
    answer = await user.client.post("/api/agents/plan", json={"goal": "g", "level": "beginner"})
    assert_error(answer, 502, "upstream_failed")
    if not target.via_proxy:
        async with anonymous(target) as client:
            text = (await client.get("/metrics")).text
        assert f'banyan_agent_failures_total{{backend="{target.backend}",agent="planner"}} 1' in (
            text
        )


@pytest.mark.parametrize("faulty", [{"latency_ms": 1000}], indirect=True)
async def test_a_slow_model_is_upstream_timeout(faulty: tuple[Target, User]) -> None:
    _, user = faulty
    answer = await user.client.post("/api/agents/analyze", json={"text": TEXT})
    assert_error(answer, 504, "upstream_timeout")
