"""The backends' LLM client against the real model server: answers, streams, JSON, errors."""

from __future__ import annotations

import json
import math
from collections.abc import AsyncIterator
from typing import Any

import httpx
import jsonschema
import openai
import pytest

from banyan.backends.common.llm import (
    LLM,
    LLMError,
    LLMOutputError,
    LLMRateLimited,
    LLMSettings,
    LLMUnavailable,
    map_error,
    schema_name,
    settings_from_env,
)
from banyan.backends.model.server import create_app
from banyan.ports import free_port
from banyan.serving import serve

MESSAGES = [
    {"role": "system", "content": "You are a tutor."},
    {"role": "user", "content": "What makes a prime number prime?"},
]
SCHEMA = {
    "type": "object",
    "properties": {
        "topics": {"type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": 3},
        "difficulty": {"type": "string", "enum": ["beginner", "advanced"]},
    },
    "required": ["topics", "difficulty"],
}


def _settings(url: str, **extra: Any) -> LLMSettings:
    options: dict[str, Any] = {"timeout": 5.0, "max_retries": 0, **extra}
    return LLMSettings(base_url=url + "/v1", api_key="k", model="banyan-tutor-1", **options)


@pytest.fixture
async def model_url() -> AsyncIterator[str]:
    async with serve(create_app()) as url:
        yield url


@pytest.fixture
async def llm(model_url: str) -> AsyncIterator[LLM]:
    async with LLM(_settings(model_url)) as made:
        yield made


async def _stats(url: str) -> dict[str, object]:
    async with httpx.AsyncClient() as http:
        answer = await http.get(url + "/v1/_stats")
    result: dict[str, object] = answer.json()
    return result


def test_settings_from_env_defaults_and_overrides() -> None:
    defaults = settings_from_env(env={})
    assert defaults == LLMSettings(
        base_url="http://127.0.0.1:8003/v1", api_key="banyan-local", model="banyan-tutor-1"
    )
    assert settings_from_env("http://x/v1", env={}).base_url == "http://x/v1"
    custom = settings_from_env(
        env={
            "OPENAI_BASE_URL": "http://h:1/v1",
            "OPENAI_API_KEY": "sk",
            "BANYAN_MODEL": "gpt-x",
            "BANYAN_LLM_TIMEOUT": "2.5",
            "BANYAN_LLM_RETRIES": "4",
            "BANYAN_EMBED_MODEL": "emb",
        }
    )
    assert (custom.base_url, custom.api_key, custom.model) == ("http://h:1/v1", "sk", "gpt-x")
    assert (custom.timeout, custom.max_retries, custom.embedding_model) == (2.5, 4, "emb")


@pytest.mark.parametrize(
    "env",
    [{"BANYAN_LLM_TIMEOUT": "soon"}, {"BANYAN_LLM_RETRIES": "1.5"}, {"BANYAN_LLM_RETRIES": "-1"}],
)
def test_settings_from_env_rejects_bad_numbers(env: dict[str, str]) -> None:
    with pytest.raises(ValueError, match=next(iter(env))):
        settings_from_env(env=env)


def test_settings_from_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BANYAN_MODEL", "from-env")
    assert settings_from_env().model == "from-env"


async def test_complete_and_stream_agree(llm: LLM) -> None:
    whole = await llm.complete(MESSAGES)
    assert whole.model == "banyan-tutor-1" and whole.finish_reason == "stop"
    assert whole.prompt_tokens > 0 and 20 <= whole.completion_tokens <= 60
    assert "prime" in whole.text
    tokens = [token async for token in llm.stream(MESSAGES)]
    assert len(tokens) == whole.completion_tokens
    assert "".join(tokens) == whole.text
    assert whole == await llm.complete(MESSAGES)


async def test_max_tokens(llm: LLM) -> None:
    short = await llm.complete(MESSAGES, max_tokens=4)
    assert short.completion_tokens == 4 and short.finish_reason == "length"
    assert len([t async for t in llm.stream(MESSAGES, max_tokens=4)]) == 4


async def test_complete_json(llm: LLM) -> None:
    value, completion = await llm.complete_json(MESSAGES, SCHEMA, name="topic analysis!")
    jsonschema.validate(value, SCHEMA)
    assert json.loads(completion.text) == value and completion.completion_tokens > 0
    with pytest.raises(LLMOutputError) as caught:
        await llm.complete_json(
            MESSAGES, SCHEMA, name="a", extra_headers={"X-Banyan-Fault": "malformed"}
        )
    assert caught.value.code == "llm_malformed_output"
    with pytest.raises(LLMOutputError, match="not a JSON object"):
        await llm.complete_json(MESSAGES, {"type": "array", "items": {"type": "string"}}, name="a")


def test_schema_name() -> None:
    assert schema_name("topic analysis!") == "topic_analysis_"
    assert schema_name("") == "answer"
    assert len(schema_name("x" * 100)) == 64


async def test_embed(llm: LLM, model_url: str) -> None:
    assert await llm.embed([]) == []
    assert (await _stats(model_url))["requests"] == 0  # nothing asked for nothing
    vectors = await llm.embed(["prime numbers", "composite numbers", "rivers"], dimensions=32)
    assert [len(v) for v in vectors] == [32, 32, 32]
    assert all(math.isclose(sum(x * x for x in v), 1.0, rel_tol=1e-5) for v in vectors)
    assert vectors == await llm.embed(
        ["prime numbers", "composite numbers", "rivers"], dimensions=32
    )
    assert len((await llm.embed(["one"]))[0]) == 64


@pytest.mark.parametrize(
    ("fault", "kind", "code"),
    [
        ("fail", LLMUnavailable, "llm_unavailable"),
        ("rate_limit", LLMRateLimited, "llm_rate_limited"),
        ("disconnect", LLMUnavailable, "llm_unavailable"),
    ],
)
async def test_faults_map_to_llm_errors(
    llm: LLM, fault: str, kind: type[LLMError], code: str
) -> None:
    headers = {"X-Banyan-Fault": fault}
    with pytest.raises(kind) as caught:
        await llm.complete(MESSAGES, extra_headers=headers)
    assert caught.value.code == code
    with pytest.raises(kind):
        async for _ in llm.stream(MESSAGES, extra_headers=headers):
            pass
    with pytest.raises(kind):
        await llm.complete_json(MESSAGES, SCHEMA, name="a", extra_headers=headers)


async def test_stream_dropped_midway_is_unavailable(llm: LLM) -> None:
    received: list[str] = []
    with pytest.raises(LLMUnavailable):
        async for token in llm.stream(MESSAGES, extra_headers={"X-Banyan-Fault": "disconnect"}):
            received.append(token)
    assert received


async def test_timeout_is_unavailable(model_url: str) -> None:
    async with LLM(_settings(model_url, timeout=0.1)) as llm:
        with pytest.raises(LLMUnavailable) as caught:
            await llm.complete(MESSAGES, extra_headers={"X-Banyan-Fault": "slow:600"})
    assert caught.value.code == "llm_timeout"


async def test_retries_then_rate_limited(model_url: str) -> None:
    async with LLM(_settings(model_url, max_retries=2)) as llm:
        with pytest.raises(LLMRateLimited) as caught:
            await llm.complete(MESSAGES, extra_headers={"X-Banyan-Fault": "rate_limit"})
    assert caught.value.status == 429
    assert (await _stats(model_url))["by_endpoint"] == {"POST /v1/chat/completions": 3}


async def test_unreachable_model_is_unavailable() -> None:
    async with LLM(_settings(f"http://127.0.0.1:{free_port()}")) as llm:
        with pytest.raises(LLMUnavailable):
            await llm.complete(MESSAGES)
        with pytest.raises(LLMUnavailable):
            await llm.embed(["x"])


async def test_refusals_are_plain_llm_errors() -> None:
    async with serve(create_app(api_key="right")) as url, LLM(_settings(url)) as llm:
        with pytest.raises(LLMError) as caught:
            await llm.complete(MESSAGES)
    assert type(caught.value) is LLMError
    assert caught.value.code == "llm_rejected" and caught.value.status == 401


def test_map_error_covers_the_rest() -> None:
    request = httpx.Request("POST", "http://model/v1/chat/completions")
    response: Any = httpx.Response(200, request=request)
    invalid = openai.APIResponseValidationError(response=response, body=None)
    assert isinstance(map_error(invalid), LLMOutputError)
    assert isinstance(map_error(httpx.ConnectError("refused")), LLMUnavailable)
    assert isinstance(map_error(ConnectionResetError()), LLMUnavailable)
    mine = LLMRateLimited(None, "slow down")
    assert map_error(mine) is mine and str(mine) == "slow down"
    other = map_error(RuntimeError("boom"))
    assert type(other) is LLMError and other.code == "llm_error" and "boom" in other.message
