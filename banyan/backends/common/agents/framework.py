"""A small agent framework: registry, typed inputs and outputs, timeouts, retries, metrics.

An :class:`Agent` declares an input validator (contract messages), the JSON schema of its output
and how to build its prompt. :meth:`AgentRunner.run` asks the model for JSON through
``banyan.backends.common.llm.LLM.complete_json`` (structured output), validates the answer against
the
schema, retries a malformed answer up to ``max_attempts`` times, retries rate limits and provider
errors with exponential backoff, cuts the whole run at the agent's timeout, and records per-agent
metrics. Failures surface as contract errors: ``502 upstream_failed`` (provider down or malformed
output after every attempt, the message says which) and ``504 upstream_timeout``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import jsonschema

from banyan.backends.common.errors import ApiError, UpstreamFailed, UpstreamTimeout
from banyan.backends.common.llm import LLMError, LLMOutputError, LLMRateLimited, LLMUnavailable
from banyan.backends.common.model_errors import api_error
from banyan.logs import get_logger

log = get_logger("agents")


class AgentOutputError(UpstreamFailed):
    """The model kept answering with output that does not fit the agent's schema."""


class CompletionLike(Protocol):
    prompt_tokens: int
    completion_tokens: int


class JsonModel(Protocol):
    async def complete_json(
        self,
        messages: list[dict[str, str]],
        schema: dict[str, Any],
        *,
        name: str,
        extra_headers: dict[str, str] | None = None,
    ) -> tuple[dict[str, Any], Any]: ...


@dataclass(frozen=True, slots=True)
class Agent:
    name: str
    description: str
    validate_input: Callable[[Any], dict[str, Any]]
    output_schema: dict[str, Any]
    build_messages: Callable[[dict[str, Any]], list[dict[str, str]]]
    timeout: float = 30.0
    max_attempts: int = 3


@dataclass(slots=True)
class AgentStats:
    calls: int = 0
    failures: int = 0
    attempts: int = 0
    latency_ms_total: float = 0.0
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "calls": self.calls,
            "failures": self.failures,
            "attempts": self.attempts,
            "latency_ms_total": round(self.latency_ms_total, 3),
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
        }


@dataclass(frozen=True, slots=True)
class AgentResult:
    agent: str
    output: dict[str, Any]
    attempts: int
    prompt_tokens: int
    completion_tokens: int


@dataclass(slots=True)
class AgentContext:
    """What one run may use: the model, who asked, and request-scoped headers for the model."""

    user_id: str
    request_id: str | None = None
    model_headers: dict[str, str] = field(default_factory=dict)


class AgentRegistry:
    def __init__(self) -> None:
        self._agents: dict[str, Agent] = {}

    def register(self, agent: Agent) -> Agent:
        if agent.name in self._agents:
            raise ValueError(f"agent {agent.name!r} is registered twice")
        jsonschema.Draft202012Validator.check_schema(agent.output_schema)
        self._agents[agent.name] = agent
        return agent

    def get(self, name: str) -> Agent:
        return self._agents[name]

    def names(self) -> list[str]:
        return sorted(self._agents)


class AgentRunner:
    def __init__(
        self,
        registry: AgentRegistry,
        model: JsonModel,
        *,
        backoff: float = 0.2,
    ) -> None:
        self.registry = registry
        self.model = model
        self.backoff = backoff
        self.stats: dict[str, AgentStats] = {name: AgentStats() for name in registry.names()}

    async def run(self, name: str, raw_input: Any, ctx: AgentContext) -> AgentResult:
        agent = self.registry.get(name)
        inputs = agent.validate_input(raw_input)
        stats = self.stats.setdefault(name, AgentStats())
        stats.calls += 1
        started = time.perf_counter()
        try:
            return await asyncio.wait_for(self._attempts(agent, inputs, ctx, stats), agent.timeout)
        except TimeoutError:
            stats.failures += 1
            raise UpstreamTimeout(f"agent {name} timed out after {agent.timeout:g}s") from None
        except ApiError:
            stats.failures += 1
            raise
        finally:
            stats.latency_ms_total += (time.perf_counter() - started) * 1000

    async def _attempts(
        self, agent: Agent, inputs: dict[str, Any], ctx: AgentContext, stats: AgentStats
    ) -> AgentResult:
        messages = agent.build_messages(inputs)
        validator = jsonschema.Draft202012Validator(agent.output_schema)
        last_problem = "no answer"
        for attempt in range(1, agent.max_attempts + 1):
            stats.attempts += 1
            try:
                output, completion = await self.model.complete_json(
                    messages, agent.output_schema, name=agent.name, extra_headers=ctx.model_headers
                )
            except LLMOutputError as exc:
                last_problem = exc.message
                continue
            except (LLMRateLimited, LLMUnavailable) as exc:
                if attempt == agent.max_attempts or exc.code == "llm_timeout":
                    raise api_error(exc) from exc
                await asyncio.sleep(self.backoff * 2 ** (attempt - 1))
                last_problem = exc.message
                continue
            except LLMError as exc:
                raise api_error(exc) from exc
            stats.prompt_tokens += int(getattr(completion, "prompt_tokens", 0) or 0)
            stats.completion_tokens += int(getattr(completion, "completion_tokens", 0) or 0)
            problems = sorted(validator.iter_errors(output), key=lambda e: list(e.path))
            if not problems:
                return AgentResult(
                    agent=agent.name,
                    output=output,
                    attempts=attempt,
                    prompt_tokens=int(getattr(completion, "prompt_tokens", 0) or 0),
                    completion_tokens=int(getattr(completion, "completion_tokens", 0) or 0),
                )
            first = problems[0]
            where = "$" + "".join(f"[{p!r}]" if isinstance(p, int) else f".{p}" for p in first.path)
            last_problem = f"output {where}: {first.message}"
            log.warning(
                "agent_output_invalid", agent=agent.name, attempt=attempt, problem=last_problem
            )
        raise AgentOutputError(
            f"agent {agent.name}: malformed model output after {agent.max_attempts} attempts "
            f"({last_problem})"
        )

    def metrics(self) -> dict[str, dict[str, Any]]:
        return {name: stats.as_dict() for name, stats in sorted(self.stats.items())}
