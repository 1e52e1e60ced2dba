"""Deterministic text for the local model server: request digests, tokenisation and tutor prose.

Everything here is a pure function of its arguments. A request is reduced to a sha256 digest of
its canonical JSON (model, messages, response_format, seeds); :class:`Draw` turns that digest into
an endless, reproducible stream of choices. ``max_tokens`` is deliberately not part of the digest,
so a capped answer is a prefix of the uncapped one.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from typing import Any

DEFAULT_MIN_TOKENS = 20
DEFAULT_MAX_TOKENS = 60
CREATED_EPOCH = 1_735_689_600  # 2025-01-01T00:00:00Z, the `created` of every answer

_TOKEN = re.compile(r"\s*(?:\w+|[^\w\s])|\s+")
_WORD = re.compile(r"[A-Za-z][A-Za-z\-]{2,}")

_STOPWORDS_TEXT = """
about above after again against all also and any are because been before being below
between both but can cannot could did does doing down during each few for from further had
has have having her here hers herself him himself his how into its itself just let like
more most much must myself nor not now off once only other our ours ourselves out over own
same she should some such than that the their theirs them themselves then there these they
this those through too under until very was were what when where which while who whom why
will with would you your yours yourself yourselves please tell explain answer question
help want know need does make many really thing things something anyone someone give show
using used use way get got who whose with within without shall may might one two three
four five six seven eight nine ten json level goal student students session turn turns
work works find learn understand mean means happen happens solve write compute calculate
difference different example examples inside outside
"""
STOPWORDS = frozenset(_STOPWORDS_TEXT.split())

_OPENERS = (
    "Good question.",
    "Let us work through this together.",
    "Here is a clear way to see it.",
    "Think of it step by step.",
    "That is a great thing to ask about.",
)
_ABOUT = (
    "The key idea behind {a} is that it describes how the parts fit together.",
    "Start with a small example of {a}, then look for the general rule.",
    "{A} becomes easier once you name each step out loud.",
    "A common mistake with {a} is to memorise the result without checking why it holds.",
    "Notice how {a} connects to {b}; one explains the other.",
    "When you study {a}, compare it with {b} and list what changes.",
    "Try to explain {a} in your own words before reading further.",
    "In short, {a} is a tool: use it when the problem asks about {b}.",
    "Draw a quick sketch of {a} and mark where {b} appears.",
    "If {a} feels abstract, test it on a number you can check by hand.",
)
_GENERAL = (
    "Break the problem into smaller pieces and solve one at a time.",
    "Write down what you already know and what you are looking for.",
    "Check each step, because small slips add up.",
    "Patterns become clear once you try a few cases.",
    "Examples make abstract ideas concrete.",
)
_CHECKS = (
    "Can you say in one sentence why {a} works?",
    "What would change if {a} were different?",
    "How would you explain {a} to a friend?",
    "Which part of {a} still feels unclear?",
)
_FALLBACK_TOPICS = ("this idea", "the basics", "the main concept", "your example")


class Draw:
    """A reproducible stream of choices derived from a digest (sha256 in counter mode)."""

    def __init__(self, digest: str, label: str = "") -> None:
        self._seed = f"{digest}:{label}"
        self._counter = 0

    def integer(self, low: int, high: int) -> int:
        """An integer in ``[low, high]`` (inclusive)."""
        if high <= low:
            return low
        self._counter += 1
        block = hashlib.sha256(f"{self._seed}:{self._counter}".encode()).digest()
        return low + int.from_bytes(block[:8], "big") % (high - low + 1)

    def unit(self) -> float:
        """A float in ``[0, 1)``."""
        return self.integer(0, 2**53 - 1) / 2**53

    def choice(self, items: Sequence[Any]) -> Any:
        return items[self.integer(0, len(items) - 1)]

    def child(self, label: str) -> Draw:
        return Draw(self._seed, label)


def canonical_json(value: Any) -> str:
    """Sorted keys, no spaces, UTF-8 kept: the form hashed into digests."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def request_digest(
    *,
    model: str,
    messages: Sequence[dict[str, Any]],
    response_format: Any = None,
    seed: int = 0,
    request_seed: int | None = None,
) -> str:
    """The hex digest that determines an answer (never time, never randomness)."""
    body = {
        "model": model,
        "messages": [{"role": m.get("role"), "content": m.get("content")} for m in messages],
        "response_format": response_format,
        "seed": [seed, request_seed],
    }
    return hashlib.sha256(canonical_json(body).encode()).hexdigest()


def completion_id(digest: str) -> str:
    return f"chatcmpl-{digest[:29]}"


def tokenize(text: str) -> list[str]:
    """Split into word and punctuation tokens that carry their leading spaces (`" The"`, `"."`).

    ``"".join(tokenize(text)) == text`` always holds.
    """
    return _TOKEN.findall(text)


def count_tokens(text: str) -> int:
    return len(tokenize(text))


def message_text(content: Any) -> str:
    """Text of a message's content: a string, or the text parts of a content-part list."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [p.get("text", "") for p in content if isinstance(p, dict)]
        return " ".join(p for p in parts if isinstance(p, str) and p)
    return ""


def prompt_tokens(messages: Sequence[dict[str, Any]]) -> int:
    """Prompt size as a real tokenizer would roughly report it: tokens plus 3 per message."""
    return sum(count_tokens(message_text(m.get("content"))) + 3 for m in messages) + 3


def last_user_text(messages: Sequence[dict[str, Any]]) -> str:
    for message in reversed(messages):
        if message.get("role") == "user":
            return message_text(message.get("content"))
    return ""


def keywords(text: str, limit: int = 8) -> list[str]:
    """Key words of ``text`` in order of first appearance: no stopwords, no repeats."""
    seen: list[str] = []
    for match in _WORD.finditer(text):
        word = match.group(0).strip("-")
        lower = word.lower()
        if lower in STOPWORDS or len(lower) < 3 or lower in (w.lower() for w in seen):
            continue
        seen.append(word if word.isupper() else lower)
        if len(seen) >= limit:
            break
    return seen


def _fill(template: str, a: str, b: str) -> str:
    return template.format(a=a, b=b, A=a[:1].upper() + a[1:])


def tutor_text(digest: str, user_text: str) -> str:
    """A tutor-like answer of 20-60 tokens that echoes the key words of the question."""
    draw = Draw(digest, "text")
    topics = keywords(user_text) or list(_FALLBACK_TOPICS)
    target = draw.integer(DEFAULT_MIN_TOKENS, DEFAULT_MAX_TOKENS)
    opener = draw.choice(_OPENERS)
    check = _fill(draw.choice(_CHECKS), topics[0], topics[0])
    body: list[str] = []
    used = count_tokens(opener) + count_tokens(" " + check)
    while used < target:
        a = draw.choice(topics)
        b = draw.choice([t for t in topics if t != a] or list(_FALLBACK_TOPICS))
        pool = _ABOUT if draw.unit() < 0.75 else _GENERAL
        sentence = _fill(draw.choice(pool), a, b)
        if sentence in body:
            continue
        size = count_tokens(" " + sentence)
        if used + size > DEFAULT_MAX_TOKENS:
            break
        body.append(sentence)
        used += size
    if used < DEFAULT_MIN_TOKENS:
        body.append(draw.choice(_GENERAL))
    return " ".join([opener, *body, check])


def cap_tokens(tokens: list[str], max_tokens: int | None) -> tuple[list[str], str]:
    """Cut ``tokens`` to ``max_tokens``; return them and the finish reason (`stop` or `length`)."""
    if max_tokens is not None and len(tokens) > max_tokens:
        return tokens[:max_tokens], "length"
    return tokens, "stop"
