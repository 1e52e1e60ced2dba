"""Tests of how ``banyan/backends/common/llm.py`` reads a chat completion's server-sent events."""

from __future__ import annotations

import json

import pytest

from banyan.backends.common.llm import LLMOutputError, LLMUnavailable, _stream_tokens


def data(value: object) -> str:
    return "data: " + json.dumps(value)


def test_content_pieces_of_every_choice() -> None:
    chunk = {"choices": [{"delta": {"content": "a"}}, {"delta": {"content": "b"}}]}
    assert _stream_tokens(data(chunk)) == ["a", "b"]


@pytest.mark.parametrize(
    "line",
    [
        "",
        ": keep-alive comment",
        "event: ping",
        "data: [DONE]",
        "data:",
        data({"choices": [{"delta": {"role": "assistant"}}]}),
        data({"choices": [{"delta": {"content": ""}}, "odd", {"delta": None}]}),
        data({"choices": None}),
    ],
)
def test_lines_without_content(line: str) -> None:
    assert _stream_tokens(line) == []


def test_an_error_event_is_a_failed_model() -> None:
    with pytest.raises(LLMUnavailable, match="overloaded"):
        _stream_tokens(data({"error": {"message": "overloaded"}}))
    with pytest.raises(LLMUnavailable, match="boom"):
        _stream_tokens(data({"error": "boom"}))


@pytest.mark.parametrize("line", ["data: {not json", "data: [1, 2]"])
def test_garbage_is_malformed_output(line: str) -> None:
    with pytest.raises(LLMOutputError):
        _stream_tokens(line)
