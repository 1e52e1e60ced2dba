"""The AI agents as functions: ``agents.analyze``, ``agents.plan``, ``agents.session_analysis``,
``agents.run`` (actions: they call the model, outside any transaction) and ``agents.list``.

One :class:`~banyan.backends.common.agents.framework.AgentRunner` per runtime (:func:`install`, over the
app's model client) runs the shared catalogue; the documents job uses it too, and its counters
feed ``/metrics``. ``agents.session_input`` reads a session's title and last messages.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from banyan.backends.common import validate as v
from banyan.backends.common.agents import catalog, endpoints
from banyan.backends.common.agents.framework import AgentContext, AgentRunner, JsonModel
from banyan.backends.new.functions.common import CALLER, KEY, OPTIONAL_KEY, anything
from banyan.backends.new.functions.sessions import owned_session
from banyan.backends.new.runtime.context import ActionCtx, QueryCtx
from banyan.backends.new.runtime.engine import Runtime
from banyan.backends.new.runtime.registry import action, query
from banyan.backends.new.runtime.schema import messages

RUNNER_SETTING = "agents"


def install(runtime: Runtime, model: JsonModel) -> AgentRunner:
    runner = AgentRunner(catalog.default_registry(), model)
    runtime.settings[RUNNER_SETTING] = runner
    return runner


def runner_of(runtime: Runtime) -> AgentRunner:
    found = runtime.settings.get(RUNNER_SETTING)
    if not isinstance(found, AgentRunner):
        raise RuntimeError("the agents are not installed")
    return found


def _ctx(args: dict[str, Any]) -> AgentContext:
    return AgentContext(user_id=args["caller"]["id"])


def _fields(args: dict[str, Any], *names: str) -> dict[str, Any]:
    return {name: args[name] for name in names if name in args}


@action("agents.analyze", {"text": anything(), **CALLER, **KEY}, optional=OPTIONAL_KEY)
async def analyze(ctx: ActionCtx, args: dict[str, Any]) -> dict[str, Any]:
    result = await runner_of(ctx.runtime).run("analyzer", _fields(args, "text"), _ctx(args))
    return result.output


@action(
    "agents.plan", {"goal": anything(), "level": anything(), **CALLER, **KEY}, optional=OPTIONAL_KEY
)
async def plan(ctx: ActionCtx, args: dict[str, Any]) -> dict[str, Any]:
    inputs = _fields(args, "goal", "level")
    result = await runner_of(ctx.runtime).run("planner", inputs, _ctx(args))
    return result.output


@query("agents.session_input", {"session_id": v.string(), **CALLER})
async def session_input(ctx: QueryCtx, args: dict[str, Any]) -> dict[str, Any]:
    session = await owned_session(ctx, args["caller"]["id"], args["session_id"])
    rows = (
        await ctx.read(
            select(messages.c.role, messages.c.content)
            .where(messages.c.session_id == session["id"])
            .order_by(messages.c.seq.desc())
            .limit(endpoints.TRANSCRIPT_MESSAGES)
        )
    ).all()
    recent = [{"role": r.role, "content": r.content} for r in reversed(rows)]
    return {"session_id": session["id"], "input": endpoints.session_input(session["title"], recent)}


@action(
    "agents.session_analysis",
    {"session_id": v.string(), **CALLER, **KEY},
    optional=OPTIONAL_KEY,
)
async def session_analysis(ctx: ActionCtx, args: dict[str, Any]) -> dict[str, Any]:
    found = await ctx.run_query("agents.session_input", _fields(args, "session_id", "caller"))
    result = await runner_of(ctx.runtime).run("session-analyzer", found["input"], _ctx(args))
    return {"session_id": found["session_id"], **result.output}


@action(
    "agents.run",
    {"text": anything(), "goal": anything(), **CALLER, **KEY},
    optional={"goal", *OPTIONAL_KEY},
)
async def run_chain(ctx: ActionCtx, args: dict[str, Any]) -> dict[str, Any]:
    inputs = _fields(args, "text", "goal")
    answer: dict[str, Any] = await catalog.run_chain(runner_of(ctx.runtime), inputs, _ctx(args))
    return answer


@query("agents.list", {**CALLER, **KEY}, optional=OPTIONAL_KEY)
async def list_agents(ctx: QueryCtx, args: dict[str, Any]) -> dict[str, Any]:
    return endpoints.listing(runner_of(ctx.runtime).registry)
