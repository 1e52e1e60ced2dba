"""The model server end to end, driven by the real openai client over loopback."""

from __future__ import annotations

import asyncio
import json
import math
from typing import Any

import httpx
import jsonschema
import openai
import pytest

from banyan.backends.common.agents.catalog import PLANNER, QUIZ_WRITER
from banyan.backends.model.server import create_app
from banyan.serving import serve
from tests.backends.model.conftest import client_for

ASK: Any = [
    {"role": "system", "content": "You are a tutor."},
    {"role": "user", "content": "How do vaccines train the immune system?"},
]


def _schema_format(name: str, schema: dict[str, Any]) -> Any:
    return {"type": "json_schema", "json_schema": {"name": name, "schema": schema}}


async def test_same_request_gives_byte_identical_answers(client: openai.AsyncOpenAI) -> None:
    first = await client.chat.completions.create(model="banyan-tutor-1", messages=ASK)
    second = await client.chat.completions.create(model="banyan-tutor-1", messages=ASK)
    assert first.model_dump_json() == second.model_dump_json()
    content = first.choices[0].message.content or ""
    assert first.object == "chat.completion" and first.choices[0].message.role == "assistant"
    assert first.choices[0].finish_reason == "stop"
    assert "vaccines" in content or "immune" in content
    assert first.usage is not None and 20 <= first.usage.completion_tokens <= 60
    assert first.usage.total_tokens == first.usage.prompt_tokens + first.usage.completion_tokens


async def test_different_requests_give_different_answers(client: openai.AsyncOpenAI) -> None:
    other = [ASK[0], {"role": "user", "content": "Why is the sky blue during the day?"}]
    answers = set()
    for messages, extra in ((ASK, {}), (other, {}), (ASK, {"seed": 3}), (ASK, {"model": "x"})):
        options: dict[str, Any] = {"model": "banyan-tutor-1", **extra}
        made = await client.chat.completions.create(messages=messages, **options)
        answers.add((made.id, made.choices[0].message.content))
    assert len(answers) == 4


async def test_server_seed_changes_answers() -> None:
    contents = []
    for seed in (0, 1):
        async with serve(create_app(seed=seed)) as url, client_for(url) as client:
            made = await client.chat.completions.create(model="m", messages=ASK)
            contents.append(made.choices[0].message.content)
    assert contents[0] != contents[1]


async def test_stream_matches_the_whole_answer(client: openai.AsyncOpenAI) -> None:
    whole = await client.chat.completions.create(model="banyan-tutor-1", messages=ASK)
    stream = await client.chat.completions.create(
        model="banyan-tutor-1",
        messages=ASK,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [chunk async for chunk in stream]
    assert chunks[0].choices[0].delta.role == "assistant"
    pieces = [
        c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content
    ]
    assert "".join(pieces) == whole.choices[0].message.content
    assert len(pieces) >= 20 and pieces[1].startswith(" ")
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage == whole.usage
    assert {c.id for c in chunks} == {whole.id}
    assert all(c.object == "chat.completion.chunk" for c in chunks)


async def test_raw_stream_is_sse_ending_with_done(model_url: str) -> None:
    body = {"model": "m", "messages": ASK, "stream": True}
    async with (
        httpx.AsyncClient() as http,
        http.stream("POST", model_url + "/v1/chat/completions", json=body) as response,
    ):
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = [line async for line in response.aiter_lines() if line]
    assert lines[-1] == "data: [DONE]"
    events = [json.loads(line[6:]) for line in lines[:-1]]
    assert all("usage" not in e for e in events)  # only with stream_options.include_usage
    assert events[-1]["choices"][0]["finish_reason"] == "stop"


async def test_max_tokens_caps_the_answer(client: openai.AsyncOpenAI) -> None:
    whole = await client.chat.completions.create(model="m", messages=ASK)
    for option in ("max_tokens", "max_completion_tokens"):
        cap: dict[str, Any] = {option: 5}
        capped = await client.chat.completions.create(model="m", messages=ASK, **cap)
        text = capped.choices[0].message.content or ""
        assert capped.choices[0].finish_reason == "length"
        assert capped.usage is not None and capped.usage.completion_tokens == 5
        assert (whole.choices[0].message.content or "").startswith(text) and text


async def test_content_parts_are_read(client: openai.AsyncOpenAI) -> None:
    parts: Any = [{"type": "text", "text": "Describe glaciers and erosion"}]
    made = await client.chat.completions.create(
        model="m",
        messages=[{"role": "user", "content": parts}],
    )
    content = made.choices[0].message.content or ""
    assert "glaciers" in content or "erosion" in content


@pytest.mark.parametrize("agent", [PLANNER, QUIZ_WRITER], ids=lambda a: a.name)
async def test_json_schema_answers_validate(client: openai.AsyncOpenAI, agent: Any) -> None:
    inputs = {
        "goal": "Learn the water cycle",
        "level": "beginner",
        "text": "Rain forms",
        "count": 4,
    }
    messages = agent.build_messages(inputs)
    made = await client.chat.completions.create(
        model="m",
        messages=messages,
        response_format=_schema_format(agent.name, agent.output_schema),
    )
    value = json.loads(made.choices[0].message.content or "")
    jsonschema.validate(value, agent.output_schema)
    if agent is QUIZ_WRITER:
        assert len(value["questions"]) == 4
    stream = await client.chat.completions.create(
        model="m",
        messages=messages,
        response_format=_schema_format(agent.name, agent.output_schema),
        stream=True,
    )
    text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert json.loads(text) == value


async def test_json_object_mode(client: openai.AsyncOpenAI) -> None:
    messages: Any = [
        {"role": "system", "content": "Reply in JSON with keys: topic, hint"},
        {"role": "user", "content": "Photosynthesis in leaves"},
    ]
    made = await client.chat.completions.create(
        model="m",
        messages=messages,
        response_format={"type": "json_object"},
    )
    value = json.loads(made.choices[0].message.content or "")
    assert set(value) == {"topic", "hint"}
    plain = await client.chat.completions.create(
        model="m",
        messages=messages,
        response_format={"type": "text"},
    )
    with pytest.raises(ValueError):
        json.loads(plain.choices[0].message.content or "")


async def test_models(client: openai.AsyncOpenAI) -> None:
    listed = await client.models.list()
    ids = [m.id for m in listed.data]
    assert "banyan-tutor-1" in ids
    one = await client.models.retrieve("banyan-tutor-1")
    assert one.id == "banyan-tutor-1" and one.object == "model"
    with pytest.raises(openai.NotFoundError):
        await client.models.retrieve("gpt-nope")


async def test_embeddings(client: openai.AsyncOpenAI) -> None:
    default = await client.embeddings.create(model="banyan-embed-1", input=["cell energy", "rocks"])
    assert [d.index for d in default.data] == [0, 1]
    vector = default.data[0].embedding
    assert len(vector) == 64
    assert math.isclose(sum(v * v for v in vector), 1.0, rel_tol=1e-5)
    as_floats = await client.embeddings.create(
        model="banyan-embed-1", input="cell energy", encoding_format="float", dimensions=16
    )
    small = as_floats.data[0].embedding
    assert len(small) == 16 and math.isclose(sum(v * v for v in small), 1.0, rel_tol=1e-9)
    again = await client.embeddings.create(model="banyan-embed-1", input=["cell energy", "rocks"])
    assert again.data[0].embedding == vector and again.data[1].embedding != vector
    assert default.usage.prompt_tokens == 3 and default.model == "banyan-embed-1"
    tokens = await client.embeddings.create(model="e", input=[[1, 2], [3]], encoding_format="float")
    assert len(tokens.data) == 2
    flat = await client.embeddings.create(model="e", input=[1, 2], encoding_format="float")
    assert flat.data[0].embedding == tokens.data[0].embedding


@pytest.mark.parametrize(
    ("fault", "error"),
    [
        ("fail", openai.InternalServerError),
        ("rate_limit", openai.RateLimitError),
        ("disconnect", openai.APIConnectionError),
    ],
)
async def test_header_faults_reach_the_client(
    client: openai.AsyncOpenAI, fault: str, error: type[Exception]
) -> None:
    with pytest.raises(error) as caught:
        await client.chat.completions.create(
            model="m",
            messages=ASK,
            extra_headers={"X-Banyan-Fault": fault},
        )
    if fault == "rate_limit":
        assert isinstance(caught.value, openai.RateLimitError)
        assert caught.value.response.headers["retry-after"] == "1"
        assert caught.value.code == "rate_limit_exceeded"
    if fault == "fail":
        assert isinstance(caught.value, openai.InternalServerError)
        assert caught.value.type == "server_error"


async def test_embedding_faults(client: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.InternalServerError):
        await client.embeddings.create(
            model="e", input="x", extra_headers={"X-Banyan-Fault": "fail"}
        )
    with pytest.raises(openai.APIConnectionError):
        await client.embeddings.create(
            model="e", input="x", extra_headers={"X-Banyan-Fault": "disconnect"}
        )


async def test_rate_limit_is_retried_by_the_client(model_url: str) -> None:
    async with client_for(model_url, max_retries=1) as client:
        with pytest.raises(openai.RateLimitError):
            await client.chat.completions.create(
                model="m",
                messages=ASK,
                extra_headers={"X-Banyan-Fault": "rate_limit"},
            )
    async with httpx.AsyncClient() as http:
        stats = (await http.get(model_url + "/v1/_stats")).json()
    assert stats["by_endpoint"]["POST /v1/chat/completions"] == 2  # first try and one retry
    assert stats["faults"] == {"rate_limit": 2}


async def test_stream_disconnect_mid_answer(client: openai.AsyncOpenAI) -> None:
    stream = await client.chat.completions.create(
        model="m",
        messages=ASK,
        stream=True,
        extra_headers={"X-Banyan-Fault": "disconnect"},
    )
    received: list[str] = []
    with pytest.raises(openai.APIConnectionError):
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                received.append(chunk.choices[0].delta.content)
    assert received  # some tokens arrived before the drop


async def test_malformed_fault_breaks_json_only(client: openai.AsyncOpenAI) -> None:
    made = await client.chat.completions.create(
        model="m",
        messages=ASK,
        response_format={"type": "json_object"},
        extra_headers={"X-Banyan-Fault": "malformed"},
    )
    with pytest.raises(ValueError):
        json.loads(made.choices[0].message.content or "")


async def test_slow_fault_times_the_client_out(model_url: str) -> None:
    async with client_for(model_url, timeout=0.1) as client:
        with pytest.raises(openai.APITimeoutError):
            await client.chat.completions.create(
                model="m",
                messages=ASK,
                extra_headers={"X-Banyan-Fault": "slow:600"},
            )


async def test_server_wide_rates() -> None:
    async with serve(create_app(fail_rate=1.0)) as url, client_for(url) as client:
        with pytest.raises(openai.InternalServerError):
            await client.chat.completions.create(model="m", messages=ASK)
    async with (
        serve(create_app(malformed_rate=1.0, latency_ms=5)) as url,
        client_for(url) as client,
    ):
        broken = await client.chat.completions.create(
            model="m",
            messages=ASK,
            response_format={"type": "json_object"},
        )
        with pytest.raises(ValueError):
            json.loads(broken.choices[0].message.content or "")
        plain = await client.chat.completions.create(model="m", messages=ASK)
        assert plain.choices[0].message.content


async def test_seeded_fail_rate_is_reproducible() -> None:
    async def outcomes() -> list[bool]:
        async with serve(create_app(fail_rate=0.5, seed=4)) as url, client_for(url) as client:
            seen = []
            for _ in range(12):
                try:
                    await client.chat.completions.create(model="m", messages=ASK)
                    seen.append(True)
                except openai.InternalServerError:
                    seen.append(False)
            return seen

    first = await outcomes()
    assert first == await outcomes()
    assert True in first and False in first


async def test_token_delay_sends_chunks_one_by_one() -> None:
    async with serve(create_app(token_delay_ms=15)) as url, httpx.AsyncClient() as http:
        body = {"model": "m", "messages": ASK, "stream": True, "max_tokens": 8}
        async with http.stream("POST", url + "/v1/chat/completions", json=body) as response:
            reads = [piece async for piece in response.aiter_raw()]
    text = b"".join(reads).decode()
    assert text.count("data: ") == 1 + 8 + 1 + 1  # role, tokens, finish, [DONE]
    assert len(reads) >= 4  # paced chunks arrive as separate reads, not one burst


async def test_client_leaving_mid_stream_is_noticed() -> None:
    async with serve(create_app(token_delay_ms=20)) as url, httpx.AsyncClient() as http:
        body = {"model": "m", "messages": ASK, "stream": True}
        async with http.stream("POST", url + "/v1/chat/completions", json=body) as response:
            async for _ in response.aiter_raw():
                break  # leave after the first chunk
        for _ in range(200):  # the server notices at its next write
            stats = (await http.get(url + "/v1/_stats")).json()
            if stats["streams_abandoned"]:
                break
            await asyncio.sleep(0.02)
        assert stats["streams_abandoned"] == 1
        assert (await http.get(url + "/healthz")).status_code == 200


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": "m"}, "messages"),
        ({"model": "m", "messages": []}, "messages"),
        ({"model": "m", "messages": ["hi"]}, "messages[0]"),
        ({"model": "m", "messages": [{"role": "robot", "content": "x"}]}, "messages[0].role"),
        ({"model": "m", "messages": [{"role": "user"}]}, "messages[0].content"),
        ({"model": "m", "messages": [{"role": "user", "content": 5}]}, "messages[0].content"),
        ({"model": "", "messages": ASK}, "model"),
        ({"model": "m", "messages": ASK, "max_tokens": 0}, "max_tokens"),
        ({"model": "m", "messages": ASK, "n": 2}, "n"),
        ({"model": "m", "messages": ASK, "seed": "x"}, "seed"),
        ({"model": "m", "messages": ASK, "stream": "yes"}, "stream"),
        ({"model": "m", "messages": ASK, "stream_options": 3}, "stream_options"),
        (
            {"model": "m", "messages": ASK, "response_format": {"type": "xml"}},
            "response_format.type",
        ),
        (
            {"model": "m", "messages": ASK, "response_format": {"type": "json_schema"}},
            "response_format.json_schema.name",
        ),
        (
            {
                "model": "m",
                "messages": ASK,
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {"name": "a", "schema": 1},
                },
            },
            "response_format.json_schema.schema",
        ),
        ([1, 2], None),
    ],
)
async def test_bad_chat_requests_are_400(model_url: str, body: Any, param: str | None) -> None:
    async with httpx.AsyncClient() as http:
        answer = await http.post(model_url + "/v1/chat/completions", json=body)
    assert answer.status_code == 400
    error = answer.json()["error"]
    assert error["type"] == "invalid_request_error" and error["param"] == param
    assert error["message"]


async def test_non_json_body_and_unknown_fault(model_url: str) -> None:
    async with httpx.AsyncClient() as http:
        garbage = await http.post(model_url + "/v1/chat/completions", content=b"{not json")
        fault = await http.post(
            model_url + "/v1/chat/completions",
            json={"model": "m", "messages": ASK},
            headers={"X-Banyan-Fault": "explode"},
        )
        missing = await http.get(model_url + "/v1/nothing")
        wrong_method = await http.get(model_url + "/v1/chat/completions")
    assert garbage.status_code == 400 and garbage.json()["error"]["code"] == "invalid_json"
    assert fault.status_code == 400 and "explode" in fault.json()["error"]["message"]
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "unknown_url"
    assert wrong_method.status_code == 405


async def test_large_prompts_fit_and_huge_ones_are_413(client: openai.AsyncOpenAI) -> None:
    long_text = "Tell me about photosynthesis. " + "leaf " * 400_000  # about 2 MB
    made = await client.chat.completions.create(
        model="m", messages=[{"role": "user", "content": long_text}]
    )
    assert "photosynthesis" in (made.choices[0].message.content or "")
    with pytest.raises(openai.APIStatusError) as caught:
        await client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "x" * (17 * 1024 * 1024)}]
        )
    assert caught.value.status_code == 413


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": "e"}, "input"),
        ({"model": "e", "input": []}, "input"),
        ({"model": "e", "input": [1, "a"]}, "input"),
        ({"model": "e", "input": "x", "encoding_format": "hex"}, "encoding_format"),
        ({"model": "e", "input": "x", "dimensions": 0}, "dimensions"),
        ({"model": "e", "input": "x", "dimensions": 10_000}, "dimensions"),
        ("text", None),
    ],
)
async def test_bad_embedding_requests_are_400(model_url: str, body: Any, param: str | None) -> None:
    async with httpx.AsyncClient() as http:
        answer = await http.post(model_url + "/v1/embeddings", json=body)
    assert answer.status_code == 400 and answer.json()["error"]["param"] == param


async def test_api_key_is_required_when_configured() -> None:
    async with serve(create_app(api_key="sekret")) as url:
        async with client_for(url, api_key="wrong") as client:
            with pytest.raises(openai.AuthenticationError):
                await client.models.list()
        async with client_for(url, api_key="sekret") as client:
            assert (await client.models.list()).data
        async with httpx.AsyncClient() as http:
            assert (await http.get(url + "/healthz")).status_code == 200


async def test_stats_count_requests(model_url: str, client: openai.AsyncOpenAI) -> None:
    await client.chat.completions.create(model="m", messages=ASK)
    stream = await client.chat.completions.create(model="m", messages=ASK, stream=True)
    async for _ in stream:
        pass
    await client.embeddings.create(model="e", input="x")
    async with httpx.AsyncClient() as http:
        assert (await http.get(model_url + "/healthz")).json() == {"status": "ok"}
        stats = (await http.get(model_url + "/v1/_stats")).json()
    assert stats["requests"] == 4 and stats["streams"] == 1
    assert stats["by_endpoint"] == {
        "GET /healthz": 1,
        "POST /v1/chat/completions": 2,
        "POST /v1/embeddings": 1,
    }
