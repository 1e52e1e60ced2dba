"""Tests for banyan/backends/common/tutor/turn.py against the real model server and openai client.

``load`` and ``store`` are the backend's seams; here they keep the session in a dict, the way a
backend's store would, so the test sees exactly what a turn persists.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from banyan.backends.common.errors import NotFound, UpstreamFailed
from banyan.backends.common.llm import LLM, LLMSettings
from banyan.backends.common.tutor.events import Done, Token
from banyan.backends.common.tutor.prompt import HistoryMessage
from banyan.backends.common.tutor.turn import SessionState, run_turn
from banyan.backends.model.server import create_app
from banyan.ports import free_port
from banyan.serving import serve


class Session:
    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []

    async def load(self) -> SessionState:
        history = [HistoryMessage(m["role"], m["content"]) for m in self.messages]
        return SessionState("Fractions", {"grade": 5}, history)

    async def store(self, question: str, answer: str) -> tuple[dict[str, Any], dict[str, Any]]:
        q = {"seq": len(self.messages) + 1, "role": "user", "content": question}
        a = {"seq": len(self.messages) + 2, "role": "assistant", "content": answer}
        self.messages += [q, a]
        return q, a


@pytest.fixture
async def llm() -> AsyncIterator[LLM]:
    async with serve(create_app()) as url:
        client = LLM(
            LLMSettings(base_url=url + "/v1", api_key="k", model="banyan-tutor-1", max_retries=0)
        )
        yield client
        await client.aclose()


async def collect(llm: Any, session: Session, question: str) -> list[Any]:
    return [e async for e in run_turn(llm, question, load=session.load, store=session.store)]


async def test_a_turn_streams_then_stores_both_messages(llm: LLM) -> None:
    session = Session()
    events = await collect(llm, session, "  What is a half?  ")
    tokens = [e.text for e in events if isinstance(e, Token)]
    done = events[-1]
    assert isinstance(done, Done) and len(tokens) > 3
    assert done.answer["content"] == "".join(tokens)
    assert done.question == {"seq": 1, "role": "user", "content": "What is a half?"}
    assert [m["role"] for m in session.messages] == ["user", "assistant"]


async def test_same_state_same_answer_and_history_matters(llm: LLM) -> None:
    first, second = Session(), Session()
    a = (await collect(llm, first, "Why?"))[-1]
    b = (await collect(llm, second, "Why?"))[-1]
    assert a.answer["content"] == b.answer["content"]
    c = (await collect(llm, first, "Why?"))[-1]  # now with history
    assert c.answer["content"] != a.answer["content"]


async def test_model_failure_stores_nothing() -> None:
    session = Session()
    down = LLM(
        LLMSettings(
            base_url=f"http://127.0.0.1:{free_port()}/v1", api_key="k", model="m", max_retries=0
        )
    )
    with pytest.raises(UpstreamFailed):
        await collect(down, session, "hello")
    await down.aclose()
    assert session.messages == []


async def test_unknown_session_fails_before_the_model(llm: LLM) -> None:
    async def missing() -> SessionState:
        raise NotFound("session not found")

    with pytest.raises(NotFound):
        [e async for e in run_turn(llm, "q", load=missing, store=Session().store)]
