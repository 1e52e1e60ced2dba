"""The local OpenAI-compatible model server (aiohttp app factory).

Endpoints: ``POST /v1/chat/completions`` (JSON or SSE stream, plain text or structured JSON),
``POST /v1/embeddings``, ``GET /v1/models[/{id}]``, ``GET /v1/_stats`` and ``/healthz``. Answers are
pure functions of the request (see :mod:`banyan.backends.model.answer`); faults come from
:mod:`banyan.backends.model.faults`. With ``api_key`` set, ``/v1/*`` needs ``Authorization:
Bearer``.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from banyan.backends.model import embeddings, wire
from banyan.backends.model.answer import Answer, compose_answer
from banyan.backends.model.faults import (
    FAULT_HEADER,
    RATE_LIMIT_RETRY_AFTER_MS,
    FaultPlan,
    FaultSettings,
    RequestFaults,
)
from banyan.backends.model.generate import canonical_json, count_tokens
from banyan.logs import get_logger

log = get_logger("model")

MAX_BODY_BYTES = 16 * 1024 * 1024  # long transcripts and documents fit; aiohttp's default is 1 MiB

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class ModelState:
    faults: FaultPlan
    seed: int
    api_key: str | None
    requests: Counter[str] = field(default_factory=Counter)
    faults_injected: Counter[str] = field(default_factory=Counter)
    streams: int = 0
    streams_abandoned: int = 0

    def stats(self) -> dict[str, Any]:
        return {
            "requests": sum(self.requests.values()),
            "by_endpoint": dict(sorted(self.requests.items())),
            "streams": self.streams,
            "streams_abandoned": self.streams_abandoned,
            "faults": dict(sorted(self.faults_injected.items())),
        }


STATE = web.AppKey("model_state", ModelState)


def _endpoint_name(request: web.Request) -> str:
    resource = request.match_info.route.resource
    canonical = resource.canonical if resource is not None else "(unmatched)"
    return f"{request.method} {canonical}"


@web.middleware
async def _errors_and_auth(request: web.Request, handler: Handler) -> web.StreamResponse:
    state = request.app[STATE]
    if request.path != "/v1/_stats":
        state.requests[_endpoint_name(request)] += 1
    authorized = request.headers.get("Authorization", "") == f"Bearer {state.api_key}"
    if state.api_key and request.path.startswith("/v1/") and not authorized:
        return wire.openai_error(401, "Incorrect API key provided.", code="invalid_api_key")
    try:
        return await handler(request)
    except wire.BadRequest as exc:
        return wire.openai_error(400, exc.message, code=exc.code, param=exc.param)
    except web.HTTPNotFound:
        return wire.openai_error(404, f"Unknown path {request.path}", code="unknown_url")
    except web.HTTPMethodNotAllowed:
        return wire.openai_error(405, f"Method {request.method} not allowed", code="bad_method")
    except web.HTTPRequestEntityTooLarge:
        return wire.openai_error(413, "The request body is too large", code="request_too_large")


async def _json_body(request: web.Request) -> Any:
    try:
        return json.loads(await request.read())
    except ValueError:
        raise wire.BadRequest(
            "We could not parse the JSON body of your request.", None, "invalid_json"
        ) from None


async def _apply_faults(request: web.Request, faults: RequestFaults) -> web.Response | None:
    """Delay as configured, then answer for the fault (500/429) or return None to go on."""
    state = request.app[STATE]
    for name in faults.names:
        state.faults_injected[name] += 1
    if faults.names:
        log.info("model_fault", path=request.path, faults=list(faults.names))
    delay_ms = state.faults.settings.latency_ms + faults.slow_ms
    if delay_ms:
        await asyncio.sleep(delay_ms / 1000)
    if faults.fail:
        return wire.openai_error(
            500,
            "The local model failed to answer (injected fault).",
            type_="server_error",
            code="server_error",
        )
    if faults.rate_limit:
        return wire.openai_error(
            429,
            "Rate limit reached for requests (injected fault).",
            type_="requests",
            code="rate_limit_exceeded",
            headers={
                "retry-after": "1",
                "retry-after-ms": str(RATE_LIMIT_RETRY_AFTER_MS),
                "x-ratelimit-remaining-requests": "0",
            },
        )
    return None


def _drop_connection(request: web.Request) -> None:
    transport = request.transport
    if transport is not None:
        transport.abort()


def _decide(request: web.Request) -> RequestFaults:
    try:
        return request.app[STATE].faults.decide(request.headers.get(FAULT_HEADER))
    except ValueError as exc:
        raise wire.BadRequest(str(exc), FAULT_HEADER, "invalid_fault") from None


async def chat_completions(request: web.Request) -> web.StreamResponse:
    chat = wire.parse_chat(await _json_body(request))
    faults = _decide(request)
    refusal = await _apply_faults(request, faults)
    if refusal is not None:
        return refusal
    state = request.app[STATE]
    answer = compose_answer(chat, state.seed, malformed=faults.malformed)
    log.debug(
        "model_answer",
        id=answer.id,
        model=answer.model,
        tokens=len(answer.tokens),
        stream=chat.stream,
        format=(chat.response_format or {}).get("type", "text"),
    )
    if chat.stream:
        return await _stream(request, chat, answer, disconnect=faults.disconnect)
    if faults.disconnect:
        _drop_connection(request)
        return web.Response(status=500)  # never reaches the client: the connection is gone
    body = wire.completion_body(
        id_=answer.id,
        model=answer.model,
        content="".join(answer.tokens),
        finish_reason=answer.finish_reason,
        usage_=answer.usage,
    )
    return web.json_response(body)


async def _stream(
    request: web.Request, chat: wire.ChatRequest, answer: Answer, *, disconnect: bool
) -> web.StreamResponse:
    state = request.app[STATE]
    state.streams += 1
    delay = state.faults.settings.token_delay_ms / 1000
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
    )
    await response.prepare(request)

    def chunk(delta: dict[str, Any] | None, finish: str | None = None, **extra: Any) -> bytes:
        body = wire.chunk_body(
            id_=answer.id,
            model=answer.model,
            delta=delta,
            finish_reason=finish,
            include_usage=chat.include_usage,
            **extra,
        )
        return f"data: {canonical_json(body)}\n\n".encode()

    frames = [chunk({"role": "assistant", "content": "", "refusal": None})]
    frames += [chunk({"content": token}) for token in answer.tokens]
    frames.append(chunk({}, answer.finish_reason))
    if chat.include_usage:
        frames.append(chunk(None, usage_=answer.usage))
    frames.append(b"data: [DONE]\n\n")
    cut_at = max(2, len(frames) // 2) if disconnect else None
    try:
        for index, frame in enumerate(frames):
            if index == cut_at:
                _drop_connection(request)
                return response
            if index and delay:
                await asyncio.sleep(delay)
            await response.write(frame)
        await response.write_eof()
    except ConnectionError:
        state.streams_abandoned += 1
        log.info("model_stream_client_gone", id=answer.id)
    return response


async def create_embeddings(request: web.Request) -> web.StreamResponse:
    ask = wire.parse_embeddings(await _json_body(request))
    if ask.dimensions is not None and ask.dimensions > embeddings.MAX_DIMENSIONS:
        raise wire.BadRequest(
            f"'dimensions' must be at most {embeddings.MAX_DIMENSIONS}",
            "dimensions",
            "invalid_value",
        )
    faults = _decide(request)
    refusal = await _apply_faults(request, faults)
    if refusal is not None:
        return refusal
    if faults.disconnect:
        _drop_connection(request)
        return web.Response(status=500)
    state = request.app[STATE]
    size = ask.dimensions or embeddings.DEFAULT_DIMENSIONS
    data = []
    for index, text in enumerate(ask.inputs):
        vector = embeddings.embed(text, size, state.seed)
        encoded: Any = embeddings.to_base64(vector) if ask.encoding_format == "base64" else vector
        data.append({"object": "embedding", "index": index, "embedding": encoded})
    used = sum(count_tokens(text) for text in ask.inputs)
    return web.json_response(
        {
            "object": "list",
            "data": data,
            "model": ask.model,
            "usage": {"prompt_tokens": used, "total_tokens": used},
        }
    )


async def list_models(request: web.Request) -> web.StreamResponse:
    return web.json_response({"object": "list", "data": [wire.model_body(m) for m in wire.MODELS]})


async def get_model(request: web.Request) -> web.StreamResponse:
    model_id = request.match_info["model_id"]
    if model_id not in wire.MODELS:
        return wire.openai_error(
            404, f"The model '{model_id}' does not exist", code="model_not_found", param="model"
        )
    return web.json_response(wire.model_body(model_id))


async def stats(request: web.Request) -> web.StreamResponse:
    return web.json_response(request.app[STATE].stats())


async def healthz(request: web.Request) -> web.StreamResponse:
    return web.json_response({"status": "ok"})


def create_app(
    *,
    token_delay_ms: int = 0,
    fail_rate: float = 0.0,
    latency_ms: int = 0,
    malformed_rate: float = 0.0,
    seed: int = 0,
    api_key: str | None = None,
) -> web.Application:
    """The model server application; see the module docstring for what it serves."""
    settings = FaultSettings(
        fail_rate=fail_rate,
        malformed_rate=malformed_rate,
        latency_ms=latency_ms,
        token_delay_ms=token_delay_ms,
        seed=seed,
    )
    app = web.Application(middlewares=[_errors_and_auth], client_max_size=MAX_BODY_BYTES)
    app[STATE] = ModelState(faults=FaultPlan(settings), seed=seed, api_key=api_key or None)
    app.router.add_post("/v1/chat/completions", chat_completions)
    app.router.add_post("/v1/embeddings", create_embeddings)
    app.router.add_get("/v1/models", list_models)
    app.router.add_get("/v1/models/{model_id}", get_model)
    app.router.add_get("/v1/_stats", stats)
    app.router.add_get("/healthz", healthz)
    return app
