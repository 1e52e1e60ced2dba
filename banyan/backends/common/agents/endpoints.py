"""What the ``/api/agents`` endpoints of both backends share besides the agents themselves: the
session-analysis request rule, how a session becomes the session analyzer's input, the agent
list, and the agents' metric families.

The session analyzer reads the session's title and its last :data:`TRANSCRIPT_MESSAGES` messages
(by ``seq``) as ``role: content`` lines, so both backends send the same prompt.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from banyan.backends.common import validate as v
from banyan.backends.common.agents.catalog import transcript
from banyan.backends.common.agents.framework import AgentRegistry
from banyan.backends.common.errors import Unprocessable
from banyan.backends.common.metrics import family

TRANSCRIPT_MESSAGES = 200
TRANSCRIPT_MAX_CHARS = 200_000
SESSION_ANALYSIS = v.obj({"session_id": v.string(min_len=1, max_len=36)})


def session_input(title: str, messages: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The session analyzer's input from a session's messages (oldest first); 422 when empty."""
    if not messages:
        raise Unprocessable("the session has no messages to analyse")
    text = transcript([dict(m) for m in messages[-TRANSCRIPT_MESSAGES:]])
    return {"title": title, "transcript": text[-TRANSCRIPT_MAX_CHARS:]}


def listing(registry: AgentRegistry) -> dict[str, Any]:
    return {
        "agents": [
            {"name": name, "description": registry.get(name).description}
            for name in registry.names()
        ]
    }


def metric_lines(service: str, stats: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Per-agent calls, failures, attempts, latency and tokens as Prometheus families."""

    def rows(key: str, scale: float = 1.0) -> list[tuple[dict[str, Any], float]]:
        return [({"backend": service, "agent": name}, s[key] * scale) for name, s in stats.items()]

    tokens = [
        ({"backend": service, "agent": name, "kind": kind}, s[f"{kind}_tokens"])
        for name, s in stats.items()
        for kind in ("prompt", "completion")
    ]
    return [
        *family("banyan_agent_calls_total", "counter", "Agent runs started.", rows("calls")),
        *family(
            "banyan_agent_failures_total", "counter", "Agent runs that failed.", rows("failures")
        ),
        *family(
            "banyan_agent_attempts_total",
            "counter",
            "Model calls made by agents (retries included).",
            rows("attempts"),
        ),
        *family(
            "banyan_agent_latency_seconds_total",
            "counter",
            "Time spent in agent runs.",
            rows("latency_ms_total", 0.001),
        ),
        *family("banyan_agent_tokens_total", "counter", "Tokens used by agents.", tokens),
    ]
