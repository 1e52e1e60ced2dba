"""One tutor turn, the same way on both backends: build the prompt from the session's state,
stream the model's answer token by token, then store the question and the answer together.

The backend supplies two functions: ``load`` (the session's title, context and history, raising
``NotFound`` for an unknown or foreign session) and ``store`` (persist the question and the answer
in one transaction and return both as contract message objects). Nothing is stored when the model
fails or the client goes away mid-stream. Model failures become contract errors
(``upstream_failed``, ``upstream_timeout``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from banyan.backends.common.llm import LLMError
from banyan.backends.common.model_errors import api_error
from banyan.backends.common.tutor.events import Done, Token, TurnEvent
from banyan.backends.common.tutor.prompt import HistoryMessage, build_messages


@dataclass(frozen=True, slots=True)
class SessionState:
    title: str
    context: Mapping[str, Any]
    history: Sequence[HistoryMessage]


class Streamer(Protocol):
    def stream(
        self, messages: list[dict[str, str]], *, max_tokens: int | None = None
    ) -> AsyncIterator[str]: ...


Load = Callable[[], Awaitable[SessionState]]
Store = Callable[[str, str], Awaitable[tuple[dict[str, Any], dict[str, Any]]]]


async def run_turn(
    llm: Streamer, question: str, *, load: Load, store: Store
) -> AsyncIterator[TurnEvent]:
    state = await load()
    messages = build_messages(state.title, state.context, state.history, question)
    parts: list[str] = []
    try:
        async for token in llm.stream(messages):
            parts.append(token)
            yield Token(token)
    except LLMError as exc:
        raise api_error(exc) from exc
    stored_question, stored_answer = await store(question.strip(), "".join(parts))
    yield Done(stored_question, stored_answer)
