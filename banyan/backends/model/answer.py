"""What the model answers to a chat request, before any wire format: tokens, finish reason, usage.

:func:`compose_answer` is a pure function of the parsed request, the server seed and whether the
answer is to be malformed on purpose; the server only frames it as JSON or as a stream.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from banyan.backends.model import wire
from banyan.backends.model.faults import malform
from banyan.backends.model.generate import (
    Draw,
    cap_tokens,
    completion_id,
    last_user_text,
    message_text,
    prompt_tokens,
    request_digest,
    tokenize,
    tutor_text,
)
from banyan.backends.model.structured import instance, json_mode_object


@dataclass(frozen=True)
class Answer:
    id: str
    model: str
    tokens: list[str]
    finish_reason: str
    prompt_tokens: int

    @property
    def usage(self) -> dict[str, int]:
        return wire.usage(self.prompt_tokens, len(self.tokens))


def compose_answer(chat: wire.ChatRequest, seed: int, malformed: bool = False) -> Answer:
    """The answer to a chat request: a pure function of the request, the seed and ``malformed``."""
    digest = request_digest(
        model=chat.model,
        messages=chat.messages,
        response_format=chat.response_format,
        seed=seed,
        request_seed=chat.seed,
    )
    user_text = last_user_text(chat.messages)
    prompt_text = "\n".join(message_text(m["content"]) for m in chat.messages)
    draw = Draw(digest, "json")
    fmt = chat.response_format
    if fmt is None:
        tokens, finish = cap_tokens(tokenize(tutor_text(digest, user_text)), chat.max_tokens)
    else:
        if fmt["type"] == "json_schema":
            value: Any = instance(fmt["json_schema"]["schema"], draw, user_text, prompt_text)
        else:
            system = "\n".join(
                message_text(m["content"])
                for m in chat.messages
                if m["role"] in ("system", "developer")
            )
            value = json_mode_object(draw, user_text, system)
        text = json.dumps(value, ensure_ascii=False)
        tokens, finish = tokenize(malform(text) if malformed else text), "stop"
    return Answer(
        id=completion_id(digest),
        model=chat.model,
        tokens=tokens,
        finish_reason=finish,
        prompt_tokens=prompt_tokens(chat.messages),
    )
