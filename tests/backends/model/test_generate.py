"""Tests of banyan.backends.model.generate: digests, tokens and tutor prose."""

from __future__ import annotations

import pytest

from banyan.backends.model.generate import (
    DEFAULT_MAX_TOKENS,
    DEFAULT_MIN_TOKENS,
    Draw,
    cap_tokens,
    completion_id,
    count_tokens,
    keywords,
    last_user_text,
    message_text,
    prompt_tokens,
    request_digest,
    tokenize,
    tutor_text,
)

MESSAGES = [
    {"role": "system", "content": "Be kind."},
    {"role": "user", "content": "Why do plants need sunlight for photosynthesis?"},
]


def test_tokens_carry_leading_spaces_and_join_back() -> None:
    text = "The answer, in short: 42 apples."
    tokens = tokenize(text)
    assert tokens[:3] == ["The", " answer", ","]
    assert "".join(tokens) == text
    assert count_tokens(text) == len(tokens)


def test_digest_is_stable_and_sensitive_to_each_input() -> None:
    base = request_digest(model="m", messages=MESSAGES)
    assert base == request_digest(model="m", messages=[dict(m) for m in MESSAGES])
    others = {
        request_digest(model="other", messages=MESSAGES),
        request_digest(model="m", messages=MESSAGES[:1]),
        request_digest(model="m", messages=MESSAGES, response_format={"type": "json_object"}),
        request_digest(model="m", messages=MESSAGES, seed=1),
        request_digest(model="m", messages=MESSAGES, request_seed=7),
    }
    assert base not in others and len(others) == 5
    assert completion_id(base).startswith("chatcmpl-")


def test_draw_is_reproducible_and_in_range() -> None:
    first = [Draw("d").integer(3, 9) for _ in range(3)]
    again = Draw("d")
    values = [again.integer(3, 9) for _ in range(200)]
    assert first == [values[0]] * 3
    assert set(values) == set(range(3, 10))
    assert Draw("d").integer(5, 5) == 5
    assert 0.0 <= Draw("d").unit() < 1.0
    assert Draw("d").child("x").integer(0, 10**9) != Draw("d").child("y").integer(0, 10**9)


def test_keywords_skip_stopwords_and_repeats() -> None:
    assert keywords("What is the role of Mitochondria in the cell? The cell needs energy.") == [
        "role",
        "mitochondria",
        "cell",
        "needs",
        "energy",
    ]
    assert keywords("What is DNA?") == ["DNA"]
    assert keywords("is it?") == []


def test_tutor_text_length_and_relevance() -> None:
    for n in range(40):
        digest = request_digest(model="m", messages=MESSAGES, seed=n)
        text = tutor_text(digest, "Why do plants need sunlight for photosynthesis?")
        assert DEFAULT_MIN_TOKENS <= count_tokens(text) <= DEFAULT_MAX_TOKENS, text
        assert any(word in text for word in ("plants", "sunlight", "photosynthesis"))
        assert text == tutor_text(digest, "Why do plants need sunlight for photosynthesis?")


def test_tutor_text_without_key_words_still_reads_well() -> None:
    text = tutor_text("abc", "why?")
    assert text.endswith("?") and count_tokens(text) >= DEFAULT_MIN_TOKENS


def test_cap_tokens() -> None:
    tokens = tokenize("one two three four")
    assert cap_tokens(tokens, None) == (tokens, "stop")
    assert cap_tokens(tokens, 10) == (tokens, "stop")
    assert cap_tokens(tokens, 2) == (["one", " two"], "length")


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("plain", "plain"),
        (
            [{"type": "text", "text": "a"}, {"type": "image_url"}, {"type": "text", "text": "b"}],
            "a b",
        ),
        (None, ""),
    ],
)
def test_message_text(content: object, expected: str) -> None:
    assert message_text(content) == expected


def test_prompt_tokens_and_last_user_text() -> None:
    assert (
        prompt_tokens(MESSAGES)
        == count_tokens("Be kind.") + count_tokens(MESSAGES[1]["content"]) + 3 * 2 + 3
    )
    assert last_user_text(MESSAGES) == MESSAGES[1]["content"]
    assert last_user_text([{"role": "system", "content": "x"}]) == ""
