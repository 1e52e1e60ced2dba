"""The tutor prompt: part of the contract, so the same question in the same session state gives
the same answer from both backends (the model server is deterministic).

Messages sent to the model, in order:

1. ``system``: :data:`SYSTEM_PROMPT`, then ``Session: <title>`` and, when the session's context
   document is not empty, ``Context: <context as canonical JSON>`` (sorted keys, no spaces).
2. The last :data:`HISTORY_TURNS` messages of the session by ``seq`` (roles kept, ``system``
   messages included as ``system``).
3. ``user``: the question, stripped.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

SYSTEM_PROMPT = (
    "You are Banyan Tutor, a patient teacher. Answer the student's question clearly and briefly, "
    "check for misconceptions, and end with one question that checks understanding."
)
HISTORY_TURNS = 20
MAX_QUESTION_CHARS = 4000


@dataclass(frozen=True, slots=True)
class HistoryMessage:
    role: str
    content: str


def build_messages(
    title: str,
    context: Mapping[str, Any] | None,
    history: Sequence[HistoryMessage],
    question: str,
) -> list[dict[str, str]]:
    system = f"{SYSTEM_PROMPT}\nSession: {title}"
    if context:
        system += "\nContext: " + json.dumps(context, sort_keys=True, separators=(",", ":"))
    messages = [{"role": "system", "content": system}]
    for item in list(history)[-HISTORY_TURNS:]:
        messages.append({"role": item.role, "content": item.content})
    messages.append({"role": "user", "content": question.strip()})
    return messages
