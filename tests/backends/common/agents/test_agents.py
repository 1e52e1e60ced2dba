"""Tests for banyan/backends/common/agents: every agent against the real model server, through the
real
``openai`` client, including the faults the model server injects on request."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator

import jsonschema
import pytest

from banyan.backends.common.agents import catalog
from banyan.backends.common.agents.framework import (
    Agent,
    AgentContext,
    AgentOutputError,
    AgentRunner,
)
from banyan.backends.common.errors import UpstreamFailed, UpstreamTimeout, ValidationError
from banyan.backends.common.llm import LLM, LLMSettings
from banyan.backends.model.server import create_app
from banyan.ports import free_port
from banyan.serving import serve


@pytest.fixture
async def runner() -> AsyncIterator[AgentRunner]:
    async with serve(create_app()) as url:
        llm = LLM(
            LLMSettings(base_url=url + "/v1", api_key="k", model="banyan-tutor-1", max_retries=0)
        )
        yield AgentRunner(catalog.default_registry(), llm, backoff=0.01)
        await llm.aclose()


CTX = AgentContext(user_id="u1")
INPUTS = {
    "analyzer": {"text": "Photosynthesis turns light into chemical energy in chloroplasts."},
    "planner": {"goal": "Understand fractions", "level": "beginner"},
    "session-analyzer": {"title": "Fractions", "transcript": "user: what is 1/2?\nassistant: half"},
    "summarizer": {"text": "Cells are the basic unit of life. They divide by mitosis."},
    "quiz-writer": {"text": "Water boils at 100 degrees Celsius at sea level.", "count": 3},
}


@pytest.mark.parametrize("name", sorted(INPUTS))
async def test_each_agent_answers_to_its_schema_deterministically(
    runner: AgentRunner, name: str
) -> None:
    first = await runner.run(name, INPUTS[name], CTX)
    second = await runner.run(name, INPUTS[name], CTX)
    jsonschema.validate(first.output, runner.registry.get(name).output_schema)
    assert first.output == second.output and first.attempts == 1
    assert runner.metrics()[name]["calls"] == 2 and runner.metrics()[name]["completion_tokens"] > 0


async def test_orchestrated_run_chains_analyzer_into_planner(runner: AgentRunner) -> None:
    result = await catalog.run_chain(runner, {"text": INPUTS["analyzer"]["text"]}, CTX)
    assert result["goal"] == f"Understand {result['analysis']['topics'][0]}"
    assert [t["agent"] for t in result["trace"]] == ["analyzer", "planner"]
    assert len(result["plan"]["steps"]) >= 3
    given = await catalog.run_chain(runner, {"text": "x y z", "goal": "Pass the exam"}, CTX)
    assert given["goal"] == "Pass the exam"


async def test_input_is_validated_with_contract_messages(runner: AgentRunner) -> None:
    with pytest.raises(ValidationError, match="level: must be one of"):
        await runner.run("planner", {"goal": "g", "level": "expert"}, CTX)
    with pytest.raises(ValidationError, match="text: is required"):
        await catalog.run_chain(runner, {}, CTX)


async def test_malformed_output_is_retried_then_reported(runner: AgentRunner) -> None:
    ctx = AgentContext(user_id="u1", model_headers={"X-Banyan-Fault": "malformed"})
    with pytest.raises(AgentOutputError, match="after 3 attempts") as err:
        await runner.run("analyzer", INPUTS["analyzer"], ctx)
    assert err.value.status == 502 and err.value.code == "upstream_failed"
    assert runner.metrics()["analyzer"]["failures"] == 1
    assert runner.metrics()["analyzer"]["attempts"] == 3


async def test_output_that_breaks_the_schema_is_retried(runner: AgentRunner) -> None:
    strict = dataclasses.replace(
        catalog.ANALYZER,
        name="strict",
        output_schema={**catalog.ANALYZER.output_schema, "required": ["never-produced"]},
        max_attempts=2,
    )
    runner.registry.register(strict)
    with pytest.raises(AgentOutputError, match="never-produced"):
        await runner.run("strict", INPUTS["analyzer"], CTX)


async def test_rate_limits_are_retried_then_fail(runner: AgentRunner) -> None:
    ctx = AgentContext(user_id="u1", model_headers={"X-Banyan-Fault": "rate_limit"})
    with pytest.raises(UpstreamFailed):
        await runner.run("planner", INPUTS["planner"], ctx)
    assert runner.metrics()["planner"]["attempts"] == 3


async def test_slow_model_hits_the_agent_timeout(runner: AgentRunner) -> None:
    slow = dataclasses.replace(catalog.PLANNER, name="hurried", timeout=0.2)
    runner.registry.register(slow)
    ctx = AgentContext(user_id="u1", model_headers={"X-Banyan-Fault": "slow:2000"})
    with pytest.raises(UpstreamTimeout):
        await runner.run("hurried", INPUTS["planner"], ctx)


async def test_model_down_is_upstream_failed() -> None:
    llm = LLM(
        LLMSettings(
            base_url=f"http://127.0.0.1:{free_port()}/v1", api_key="k", model="m", max_retries=0
        )
    )
    runner = AgentRunner(catalog.default_registry(), llm, backoff=0.01)
    with pytest.raises(UpstreamFailed, match=r"reach the model|connection"):
        await runner.run("analyzer", INPUTS["analyzer"], CTX)
    await llm.aclose()


def test_registry_rejects_duplicates_and_bad_schemas() -> None:
    registry = catalog.default_registry()
    with pytest.raises(ValueError, match="twice"):
        registry.register(catalog.PLANNER)
    bad = Agent(
        "bad", "d", catalog.PLANNER.validate_input, {"type": 5}, catalog.PLANNER.build_messages
    )
    with pytest.raises(jsonschema.SchemaError):
        registry.register(bad)
    assert "analyzer" in registry.names()
    assert catalog.transcript([{"role": "user", "content": "hi"}]) == "user: hi"
    assert catalog.canonical({"b": 1, "a": 2}) == '{"a":2,"b":1}'
