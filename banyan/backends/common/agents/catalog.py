"""The AI Tutor's agents: what each takes, what it must answer, and its prompt.

Prompts are part of the contract (the same input gives the same prompt on both backends, so the
deterministic model gives the same answer). ``run_chain`` is the orchestrated run behind
``POST /api/agents/run``: analyze the text, then plan toward the goal (given, or the first topic
found) at the difficulty found.
"""

from __future__ import annotations

import json
from typing import Any

from banyan.backends.common import validate as v
from banyan.backends.common.agents.framework import Agent, AgentContext, AgentRegistry, AgentRunner

LEVELS = ("beginner", "intermediate", "advanced")

_STR_LIST = {"type": "array", "items": {"type": "string", "minLength": 1, "maxLength": 80}}

ANALYZER = Agent(
    name="analyzer",
    description="Topics, difficulty and likely misconceptions of a text",
    validate_input=v.obj({"text": v.string(min_len=1, max_len=20_000)}),
    output_schema={
        "type": "object",
        "properties": {
            "topics": {**_STR_LIST, "minItems": 1, "maxItems": 5},
            "difficulty": {"type": "string", "enum": list(LEVELS)},
            "misconceptions": {**_STR_LIST, "minItems": 0, "maxItems": 3},
        },
        "required": ["topics", "difficulty", "misconceptions"],
        "additionalProperties": False,
    },
    build_messages=lambda i: [
        {
            "role": "system",
            "content": "You analyse study material. Answer in JSON with the topics it covers, "
            "its difficulty (beginner, intermediate or advanced) and misconceptions a "
            "student is likely to have.",
        },
        {"role": "user", "content": i["text"]},
    ],
)

PLANNER = Agent(
    name="planner",
    description="A lesson plan of ordered steps toward a goal at a level",
    validate_input=v.obj({"goal": v.string(min_len=1, max_len=500), "level": v.one_of(*LEVELS)}),
    output_schema={
        "type": "object",
        "properties": {
            "steps": {
                "type": "array",
                "minItems": 3,
                "maxItems": 7,
                "items": {
                    "type": "object",
                    "properties": {
                        "title": {"type": "string", "minLength": 1, "maxLength": 120},
                        "detail": {"type": "string", "minLength": 1, "maxLength": 400},
                        "minutes": {"type": "integer", "minimum": 5, "maximum": 60},
                    },
                    "required": ["title", "detail", "minutes"],
                    "additionalProperties": False,
                },
            }
        },
        "required": ["steps"],
        "additionalProperties": False,
    },
    build_messages=lambda i: [
        {
            "role": "system",
            "content": "You plan lessons. Answer in JSON with ordered steps, each with a "
            "title, a detail and the minutes it takes.",
        },
        {"role": "user", "content": f"Goal: {i['goal']}\nLevel: {i['level']}"},
    ],
)

SESSION_ANALYZER = Agent(
    name="session-analyzer",
    description="Summary and progress of a study session",
    validate_input=v.obj(
        {
            "title": v.string(min_len=1, max_len=200),
            "transcript": v.string(min_len=0, max_len=200_000, strip=False),
        }
    ),
    output_schema={
        "type": "object",
        "properties": {
            "summary": {"type": "string", "minLength": 1, "maxLength": 2000},
            "progress": {"type": "string", "enum": ["not_started", "progressing", "mastered"]},
            "strengths": {**_STR_LIST, "maxItems": 5},
            "next_steps": {**_STR_LIST, "minItems": 1, "maxItems": 5},
        },
        "required": ["summary", "progress", "strengths", "next_steps"],
        "additionalProperties": False,
    },
    build_messages=lambda i: [
        {
            "role": "system",
            "content": "You review a tutoring session. Answer in JSON with a summary, the "
            "student's progress, strengths and next steps.",
        },
        {"role": "user", "content": f"Session: {i['title']}\n{i['transcript']}"},
    ],
)

SUMMARIZER = Agent(
    name="summarizer",
    description="A short summary and keywords of a document chunk set",
    validate_input=v.obj({"text": v.string(min_len=1, max_len=50_000)}),
    output_schema={
        "type": "object",
        "properties": {
            "summary": {"type": "string", "minLength": 1, "maxLength": 2000},
            "keywords": {**_STR_LIST, "minItems": 1, "maxItems": 10},
        },
        "required": ["summary", "keywords"],
        "additionalProperties": False,
    },
    build_messages=lambda i: [
        {
            "role": "system",
            "content": "You summarise documents for students. Answer in JSON with a summary "
            "and the document's keywords.",
        },
        {"role": "user", "content": i["text"]},
    ],
)

QUIZ_WRITER = Agent(
    name="quiz-writer",
    description="Multiple-choice questions about a text",
    validate_input=v.obj(
        {"text": v.string(min_len=1, max_len=50_000), "count": v.integer(minimum=1, maximum=20)}
    ),
    output_schema={
        "type": "object",
        "properties": {
            "questions": {
                "type": "array",
                "minItems": 1,
                "maxItems": 20,
                "items": {
                    "type": "object",
                    "properties": {
                        "question": {"type": "string", "minLength": 1, "maxLength": 300},
                        "choices": {**_STR_LIST, "minItems": 4, "maxItems": 4},
                        "answer": {"type": "integer", "minimum": 0, "maximum": 3},
                        "explanation": {"type": "string", "minLength": 1, "maxLength": 500},
                    },
                    "required": ["question", "choices", "answer", "explanation"],
                    "additionalProperties": False,
                },
            }
        },
        "required": ["questions"],
        "additionalProperties": False,
    },
    build_messages=lambda i: [
        {
            "role": "system",
            "content": f"You write quizzes. Answer in JSON with {i['count']} multiple-choice "
            "questions about the text, four choices each, the index of the right one and "
            "an explanation.",
        },
        {"role": "user", "content": i["text"]},
    ],
)


def default_registry() -> AgentRegistry:
    registry = AgentRegistry()
    for agent in (ANALYZER, PLANNER, SESSION_ANALYZER, SUMMARIZER, QUIZ_WRITER):
        registry.register(agent)
    return registry


RUN_INPUT = v.obj(
    {"text": v.string(min_len=1, max_len=20_000), "goal": v.string(min_len=1, max_len=500)},
    optional={"goal"},
)


async def run_chain(runner: AgentRunner, raw: Any, ctx: AgentContext) -> dict[str, Any]:
    """The orchestrated run: analyzer, then planner fed with what the analyzer found."""
    inputs = RUN_INPUT(raw)
    analysis = await runner.run("analyzer", {"text": inputs["text"]}, ctx)
    goal = inputs.get("goal") or f"Understand {analysis.output['topics'][0]}"
    plan = await runner.run("planner", {"goal": goal, "level": analysis.output["difficulty"]}, ctx)
    return {
        "goal": goal,
        "analysis": analysis.output,
        "plan": plan.output,
        "trace": [{"agent": r.agent, "attempts": r.attempts} for r in (analysis, plan)],
    }


def transcript(messages: list[dict[str, Any]]) -> str:
    """A session's messages as the session analyzer reads them (``role: content`` lines)."""
    return "\n".join(f"{m['role']}: {m['content']}" for m in messages)


def canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))
