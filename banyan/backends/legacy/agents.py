"""The AI agents on the legacy backend: ``POST /api/agents/{analyze,plan,session-analysis,run}``
and ``GET /api/agents``.

One :class:`~banyan.backends.common.agents.framework.AgentRunner` per app (over the app's model
client)
runs the shared catalogue; it also serves the documents job (summaries) and its per-agent counters
feed ``/metrics``.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from sqlalchemy import select

from banyan.backends.common.agents import catalog, endpoints
from banyan.backends.common.agents.framework import AgentContext, AgentRunner
from banyan.backends.common.metrics import add_collector
from banyan.backends.common.model_client import install_llm
from banyan.backends.common.validate import read_json
from banyan.backends.legacy.auth import authenticate
from banyan.backends.legacy.db import Message
from banyan.backends.legacy.sessions import owned_session
from banyan.backends.legacy.state import STATE, LegacyState, state

_RUNNER_KEY = "agents"


def runner_of(st: LegacyState) -> AgentRunner:
    found = st.extras.get(_RUNNER_KEY)
    if not isinstance(found, AgentRunner):
        raise RuntimeError("the agents are not installed")
    return found


def _context(request: web.Request, user_id: str) -> AgentContext:
    return AgentContext(user_id=user_id, request_id=request.headers.get("X-Request-Id"))


async def _run_one(request: web.Request, agent: str) -> web.Response:
    user, _ = await authenticate(request)
    body = await read_json(request)
    result = await runner_of(state(request)).run(agent, body, _context(request, user.id))
    return web.json_response(result.output)


async def analyze(request: web.Request) -> web.Response:
    return await _run_one(request, "analyzer")


async def plan(request: web.Request) -> web.Response:
    return await _run_one(request, "planner")


async def session_analysis(request: web.Request) -> web.Response:
    user, _ = await authenticate(request)
    fields = endpoints.SESSION_ANALYSIS(await read_json(request))
    st = state(request)
    async with st.db.session() as db:
        session = await owned_session(db, user.id, fields["session_id"])
        rows = (
            await db.execute(
                select(Message.role, Message.content)
                .where(Message.session_id == session.id)
                .order_by(Message.seq.desc())
                .limit(endpoints.TRANSCRIPT_MESSAGES)
            )
        ).all()
    messages = [{"role": r.role, "content": r.content} for r in reversed(rows)]
    inputs = endpoints.session_input(session.title, messages)
    result = await runner_of(st).run("session-analyzer", inputs, _context(request, user.id))
    return web.json_response({"session_id": session.id, **result.output})


async def run_chain(request: web.Request) -> web.Response:
    user, _ = await authenticate(request)
    body = await read_json(request)
    answer: dict[str, Any] = await catalog.run_chain(
        runner_of(state(request)), body, _context(request, user.id)
    )
    return web.json_response(answer)


async def list_agents(request: web.Request) -> web.Response:
    await authenticate(request)
    return web.json_response(endpoints.listing(runner_of(state(request)).registry))


def add_routes(app: web.Application) -> None:
    st = app[STATE]
    runner = AgentRunner(catalog.default_registry(), install_llm(app))
    st.extras[_RUNNER_KEY] = runner
    add_collector(app, lambda: endpoints.metric_lines("legacy", runner.metrics()))
    app.router.add_get("/api/agents", list_agents)
    app.router.add_post("/api/agents/analyze", analyze)
    app.router.add_post("/api/agents/plan", plan)
    app.router.add_post("/api/agents/session-analysis", session_analysis)
    app.router.add_post("/api/agents/run", run_chain)
