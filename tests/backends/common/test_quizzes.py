"""Tests of banyan/backends/common/quizzes.py: request rules, source texts, rendering; generation
against
the real model server."""

from __future__ import annotations

import pytest

from banyan.backends.common import quizzes
from banyan.backends.common.agents import catalog
from banyan.backends.common.agents.framework import AgentContext, AgentRunner
from banyan.backends.common.errors import ValidationError
from banyan.backends.common.llm import LLM, LLMSettings
from banyan.backends.model.server import create_app
from banyan.serving import serve

QUESTIONS = [
    {"question": "q0", "choices": ["a", "b", "c", "d"], "answer": 2, "explanation": "e0"},
    {"question": "q1", "choices": ["a", "b", "c", "d"], "answer": 0, "explanation": "e1"},
]


def test_create_rule_wants_exactly_one_source() -> None:
    assert quizzes.check_create({"session_id": "s", "count": 3}) == {"session_id": "s", "count": 3}
    assert quizzes.check_create({"document_id": "d", "count": 1})["document_id"] == "d"
    for bad, message in (
        ({"count": 1}, "body: must contain exactly one of session_id, document_id"),
        ({"session_id": "s", "document_id": "d", "count": 1}, "body: must contain exactly one"),
        ({"session_id": "s"}, "count: is required"),
        ({"session_id": "s", "count": 21}, "count: must be between 1 and 20"),
    ):
        with pytest.raises(ValidationError, match=message):
            quizzes.check_create(bad)


def test_attempt_rule_checks_the_shape_first() -> None:
    assert quizzes.check_attempt({"answers": [1, 2]}) == [1, 2]
    with pytest.raises(ValidationError, match="answers: must be a list"):
        quizzes.check_attempt({"answers": 1})
    with pytest.raises(ValidationError, match="answers: is required"):
        quizzes.check_attempt({})


def test_sources_are_cut_to_what_the_agent_takes() -> None:
    short = quizzes.session_text("T", [{"role": "user", "content": "hi"}])
    assert short == "Session: T\nuser: hi"
    long_messages = [{"role": "user", "content": "x" * 1000 + str(i)} for i in range(60)]
    text = quizzes.session_text("T", long_messages)
    assert len(text) == quizzes.MAX_SOURCE_CHARS and text.endswith("59")  # the recent part
    doc = quizzes.document_text("D", "y" * 60_000)
    assert len(doc) == quizzes.MAX_SOURCE_CHARS and doc.startswith("Document: D\n")


def test_rendering_hides_answers_until_an_attempt() -> None:
    quiz = quizzes.quiz_json("q", "session", "s", QUESTIONS, 0)
    assert quiz["count"] == 2 and "answer" not in quiz["questions"][0]
    assert quiz["created_at"] == "1970-01-01T00:00:00.000Z"
    attempt = quizzes.attempt_json("a", "q", QUESTIONS, [2, 1], 0)
    assert (attempt["score"], attempt["total"], attempt["percent"]) == (1, 2, 50.0)
    assert list(attempt) == ["id", "quiz_id", "score", "total", "percent", "results", "created_at"]


async def test_generation_asks_the_quiz_writer_for_count_questions() -> None:
    async with serve(create_app()) as url:
        llm = LLM(LLMSettings(base_url=url + "/v1", api_key="k", model="banyan-tutor-1"))
        runner = AgentRunner(catalog.default_registry(), llm)
        ctx = AgentContext(user_id="u")
        first = await quizzes.generate(runner, "Session: Cells\nuser: mitochondria", 3, ctx)
        again = await quizzes.generate(runner, "Session: Cells\nuser: mitochondria", 3, ctx)
        await llm.aclose()
    assert first == again and len(first) == 3
    assert all(set(q) == {"question", "choices", "answer", "explanation"} for q in first)
