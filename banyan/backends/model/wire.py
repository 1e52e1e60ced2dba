"""The OpenAI wire format spoken by the model server: request parsing and answer shapes.

Parsing turns a JSON body into :class:`ChatRequest` / :class:`EmbeddingsRequest` or raises
:class:`BadRequest` with the message, ``param`` and ``code`` OpenAI would use; the builders produce
``chat.completion``, ``chat.completion.chunk``, embeddings and model objects exactly as the
``openai`` package parses them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aiohttp import web

from banyan.backends.model.generate import CREATED_EPOCH

DEFAULT_MODEL = "banyan-tutor-1"
MODELS = ("banyan-tutor-1", "banyan-tutor-mini", "banyan-embed-1")
ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})
SYSTEM_FINGERPRINT = "fp_banyan_local"


class BadRequest(Exception):
    def __init__(self, message: str, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code


def openai_error(
    status: int,
    message: str,
    *,
    type_: str = "invalid_request_error",
    code: str | None = None,
    param: str | None = None,
    headers: dict[str, str] | None = None,
) -> web.Response:
    """An error answer in OpenAI's shape: ``{"error": {"message", "type", "param", "code"}}``."""
    body = {"error": {"message": message, "type": type_, "param": param, "code": code}}
    return web.json_response(body, status=status, headers=headers)


@dataclass(frozen=True)
class ChatRequest:
    model: str
    messages: list[dict[str, Any]]
    stream: bool
    include_usage: bool
    max_tokens: int | None
    response_format: dict[str, Any] | None
    seed: int | None


@dataclass(frozen=True)
class EmbeddingsRequest:
    model: str
    inputs: list[str]
    dimensions: int | None
    encoding_format: str


def _optional_int(body: dict[str, Any], name: str, minimum: int) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise BadRequest(f"'{name}' must be an integer >= {minimum}", name, "invalid_value")
    return value


def _model(body: dict[str, Any]) -> str:
    model = body.get("model", DEFAULT_MODEL)
    if not isinstance(model, str) or not model:
        raise BadRequest("'model' must be a non-empty string", "model", "invalid_value")
    return model


def _message(index: int, raw: Any) -> dict[str, Any]:
    where = f"messages[{index}]"
    if not isinstance(raw, dict):
        raise BadRequest(f"{where} must be an object", where, "invalid_type")
    role = raw.get("role")
    if role not in ROLES:
        allowed = ", ".join(sorted(ROLES))
        raise BadRequest(
            f"Invalid value for '{where}.role': {role!r}. Supported values are: {allowed}.",
            f"{where}.role",
            "invalid_value",
        )
    content = raw.get("content")
    if content is None and role not in ("assistant", "function"):
        raise BadRequest(f"'{where}.content' is required", f"{where}.content", "missing_required")
    if content is not None and not isinstance(content, str | list):
        raise BadRequest(
            f"'{where}.content' must be a string or a list of content parts",
            f"{where}.content",
            "invalid_type",
        )
    return {"role": role, "content": content}


def _response_format(raw: Any) -> dict[str, Any] | None:
    if raw is None:
        return None
    kind = raw.get("type") if isinstance(raw, dict) else None
    if kind not in ("text", "json_object", "json_schema"):
        raise BadRequest(
            "'response_format.type' must be one of text, json_object, json_schema",
            "response_format.type",
            "invalid_value",
        )
    assert isinstance(raw, dict)
    if kind == "text":
        return None
    if kind == "json_schema":
        spec = raw.get("json_schema")
        if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
            raise BadRequest(
                "'response_format.json_schema' needs a 'name'",
                "response_format.json_schema.name",
                "missing_required",
            )
        schema = spec.get("schema", {"type": "object"})
        if not isinstance(schema, dict):
            raise BadRequest(
                "'response_format.json_schema.schema' must be an object",
                "response_format.json_schema.schema",
                "invalid_type",
            )
        return {"type": "json_schema", "json_schema": {"name": spec["name"], "schema": schema}}
    return {"type": "json_object"}


def parse_chat(body: Any) -> ChatRequest:
    if not isinstance(body, dict):
        raise BadRequest("The request body must be a JSON object", None, "invalid_json")
    messages = body.get("messages")
    if messages is None:
        raise BadRequest("Missing required parameter: 'messages'.", "messages", "missing_required")
    if not isinstance(messages, list) or not messages:
        raise BadRequest("'messages' must be a non-empty array", "messages", "invalid_value")
    parsed = [_message(i, m) for i, m in enumerate(messages)]
    max_tokens = _optional_int(body, "max_completion_tokens", 1)
    if max_tokens is None:
        max_tokens = _optional_int(body, "max_tokens", 1)
    n = _optional_int(body, "n", 1)
    if n not in (None, 1):
        raise BadRequest("Only n=1 is supported by the local model", "n", "invalid_value")
    seed = body.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise BadRequest("'seed' must be an integer", "seed", "invalid_type")
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise BadRequest("'stream' must be a boolean", "stream", "invalid_type")
    options = body.get("stream_options") or {}
    if not isinstance(options, dict):
        raise BadRequest("'stream_options' must be an object", "stream_options", "invalid_type")
    return ChatRequest(
        model=_model(body),
        messages=parsed,
        stream=stream,
        include_usage=bool(options.get("include_usage")),
        max_tokens=max_tokens,
        response_format=_response_format(body.get("response_format")),
        seed=seed,
    )


def parse_embeddings(body: Any) -> EmbeddingsRequest:
    if not isinstance(body, dict):
        raise BadRequest("The request body must be a JSON object", None, "invalid_json")
    raw = body.get("input")
    if isinstance(raw, str):
        inputs = [raw]
    elif isinstance(raw, list) and raw and all(isinstance(x, str) for x in raw):
        inputs = list(raw)
    elif isinstance(raw, list) and raw and all(isinstance(x, int) for x in raw):
        inputs = [" ".join(str(x) for x in raw)]  # one input given as token ids
    elif (
        isinstance(raw, list)
        and raw
        and all(isinstance(x, list) and all(isinstance(t, int) for t in x) for x in raw)
    ):
        inputs = [" ".join(str(t) for t in x) for x in raw]
    else:
        raise BadRequest(
            "'input' must be a string, a non-empty array of strings or of token arrays",
            "input",
            "invalid_value",
        )
    encoding = body.get("encoding_format") or "float"
    if encoding not in ("float", "base64"):
        raise BadRequest(
            "'encoding_format' must be float or base64", "encoding_format", "invalid_value"
        )
    return EmbeddingsRequest(
        model=_model(body),
        inputs=inputs,
        dimensions=_optional_int(body, "dimensions", 1),
        encoding_format=str(encoding),
    )


def usage(prompt: int, completion: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


def completion_body(
    *, id_: str, model: str, content: str, finish_reason: str, usage_: dict[str, int]
) -> dict[str, Any]:
    return {
        "id": id_,
        "object": "chat.completion",
        "created": CREATED_EPOCH,
        "model": model,
        "system_fingerprint": SYSTEM_FINGERPRINT,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content, "refusal": None},
                "logprobs": None,
                "finish_reason": finish_reason,
            }
        ],
        "usage": usage_,
    }


def chunk_body(
    *,
    id_: str,
    model: str,
    delta: dict[str, Any] | None,
    finish_reason: str | None = None,
    usage_: dict[str, int] | None = None,
    include_usage: bool = False,
) -> dict[str, Any]:
    """One ``chat.completion.chunk``; ``delta=None`` makes the final usage-only chunk."""
    body: dict[str, Any] = {
        "id": id_,
        "object": "chat.completion.chunk",
        "created": CREATED_EPOCH,
        "model": model,
        "system_fingerprint": SYSTEM_FINGERPRINT,
        "choices": []
        if delta is None
        else [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
    }
    if include_usage:
        body["usage"] = usage_
    return body


def model_body(model_id: str) -> dict[str, Any]:
    return {"id": model_id, "object": "model", "created": CREATED_EPOCH, "owned_by": "banyan"}
