"""The one way both backends talk to a language model: the real ``openai`` client, wrapped.

:class:`LLM` builds ``openai.AsyncOpenAI`` from :class:`LLMSettings` (see :func:`settings_from_env`)
and offers plain completions, token streams, structured JSON answers and embeddings. Every failure
of the client is mapped to :class:`LLMError` or one of its subclasses, so handlers deal with four
kinds of trouble and never with the client's own exception tree:

- :class:`LLMUnavailable`: cannot connect, timed out, dropped mid-answer or 5xx after retries;
- :class:`LLMRateLimited`: 429 after retries;
- :class:`LLMOutputError`: the answer is not what was asked for (e.g. not valid JSON);
- :class:`LLMError` itself: any other refusal (400, 401, 404 ...).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import openai

from banyan.logs import get_logger

log = get_logger("llm")

DEFAULT_BASE_URL = "http://127.0.0.1:8003/v1"
DEFAULT_API_KEY = "banyan-local"
DEFAULT_MODEL = "banyan-tutor-1"
DEFAULT_EMBEDDING_MODEL = "banyan-embed-1"


def _transport_errors() -> tuple[type[BaseException], ...]:
    """Errors a stream can raise while reading, whichever HTTP library the client uses."""
    found: list[type[BaseException]] = [OSError, TimeoutError]
    for name in ("httpx", "httpx2"):
        try:
            module = __import__(name)
        except ImportError:  # pragma: no cover - depends on the openai release installed
            continue
        found.append(module.TransportError)
    return tuple(found)


_TRANSPORT_ERRORS = _transport_errors()
_STREAM_ERRORS: tuple[type[BaseException], ...] = (openai.OpenAIError, *_TRANSPORT_ERRORS)


class LLMError(Exception):
    """The model did not give a usable answer. ``code`` is stable and safe to show to clients."""

    default_code = "llm_error"

    def __init__(self, code: str | None, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.code = code or self.default_code
        self.message = message
        self.status = status


class LLMUnavailable(LLMError):
    default_code = "llm_unavailable"


class LLMRateLimited(LLMError):
    default_code = "llm_rate_limited"


class LLMOutputError(LLMError):
    default_code = "llm_malformed_output"


@dataclass(frozen=True)
class LLMSettings:
    base_url: str
    api_key: str
    model: str
    timeout: float = 30.0
    max_retries: int = 2
    embedding_model: str = DEFAULT_EMBEDDING_MODEL


@dataclass(frozen=True)
class Completion:
    text: str
    prompt_tokens: int
    completion_tokens: int
    model: str
    finish_reason: str = "stop"


def _env_number(env: Mapping[str, str], name: str, default: float, kind: type) -> Any:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return kind(default)
    try:
        value = kind(raw)
    except ValueError:
        raise ValueError(f"{name} must be a {kind.__name__}, got {raw!r}") from None
    if value < 0:
        raise ValueError(f"{name} must not be negative, got {raw!r}")
    return value


def settings_from_env(
    default_base_url: str = DEFAULT_BASE_URL, env: Mapping[str, str] | None = None
) -> LLMSettings:
    """Settings from ``OPENAI_BASE_URL``, ``OPENAI_API_KEY``, ``BANYAN_MODEL``,
    ``BANYAN_LLM_TIMEOUT``, ``BANYAN_LLM_RETRIES`` and ``BANYAN_EMBED_MODEL``."""
    source = os.environ if env is None else env
    return LLMSettings(
        base_url=source.get("OPENAI_BASE_URL") or default_base_url,
        api_key=source.get("OPENAI_API_KEY") or DEFAULT_API_KEY,
        model=source.get("BANYAN_MODEL") or DEFAULT_MODEL,
        timeout=_env_number(source, "BANYAN_LLM_TIMEOUT", 30.0, float),
        max_retries=_env_number(source, "BANYAN_LLM_RETRIES", 2, int),
        embedding_model=source.get("BANYAN_EMBED_MODEL") or DEFAULT_EMBEDDING_MODEL,
    )


def map_error(exc: BaseException) -> LLMError:
    """The :class:`LLMError` for an exception raised by the ``openai`` client or its transport."""
    if isinstance(exc, LLMError):
        return exc
    if isinstance(exc, openai.APITimeoutError):
        return LLMUnavailable("llm_timeout", "the model did not answer in time")
    if isinstance(exc, openai.APIConnectionError):
        return LLMUnavailable(None, f"cannot reach the model: {exc}")
    if isinstance(exc, openai.RateLimitError):
        return LLMRateLimited(None, "the model is rate limiting requests", exc.status_code)
    if isinstance(exc, openai.InternalServerError):
        return LLMUnavailable(None, f"the model failed ({exc.status_code})", exc.status_code)
    if isinstance(exc, openai.APIStatusError):
        return LLMError("llm_rejected", f"the model refused the request: {exc}", exc.status_code)
    if isinstance(exc, openai.APIResponseValidationError):
        return LLMOutputError(None, "the model's answer does not have the expected shape")
    if isinstance(exc, _TRANSPORT_ERRORS):
        return LLMUnavailable(None, f"the connection to the model failed: {exc!r}")
    return LLMError(None, f"unexpected model client failure: {exc!r}")


_SCHEMA_NAME = re.compile(r"[^A-Za-z0-9_-]")


def schema_name(name: str) -> str:
    """A ``json_schema.name`` OpenAI accepts (letters, digits, ``_`` and ``-``, at most 64)."""
    return (_SCHEMA_NAME.sub("_", name) or "answer")[:64]


_DONE = "[DONE]"


def _stream_tokens(line: str) -> list[str]:
    """The content pieces of one server-sent-events line of a chat completion stream."""
    if not line.startswith("data:"):
        return []
    data = line[5:].strip()
    if data == _DONE or not data:
        return []
    try:
        chunk = json.loads(data)
    except ValueError:
        raise LLMOutputError(None, "the model's stream carried an event that is not JSON") from None
    if not isinstance(chunk, dict):
        raise LLMOutputError(None, "the model's stream carried an event that is not an object")
    if chunk.get("error") is not None:
        error = chunk["error"]
        message = error.get("message") if isinstance(error, dict) else str(error)
        raise LLMUnavailable(None, f"the model failed mid-stream: {message}")
    pieces = []
    for choice in chunk.get("choices") or ():
        delta = choice.get("delta") if isinstance(choice, dict) else None
        content = delta.get("content") if isinstance(delta, dict) else None
        if isinstance(content, str) and content:
            pieces.append(content)
    return pieces


class LLM:
    """Async model client. One instance per process is enough; call :meth:`aclose` at shutdown."""

    def __init__(self, settings: LLMSettings) -> None:
        self.settings = settings
        self._client = openai.AsyncOpenAI(
            base_url=settings.base_url,
            api_key=settings.api_key,
            timeout=settings.timeout,
            max_retries=settings.max_retries,
        )

    async def __aenter__(self) -> LLM:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def _fail(self, exc: BaseException, operation: str) -> LLMError:
        mapped = map_error(exc)
        log.warning(
            "llm_call_failed",
            operation=operation,
            code=mapped.code,
            status=mapped.status,
            error=type(exc).__name__,
        )
        return mapped

    async def _chat(
        self,
        messages: list[dict[str, str]],
        *,
        max_tokens: int | None,
        extra_headers: dict[str, str] | None,
        response_format: dict[str, Any] | None = None,
    ) -> Completion:
        options: dict[str, Any] = {}
        if max_tokens is not None:
            options["max_tokens"] = max_tokens
        if response_format is not None:
            options["response_format"] = response_format
        try:
            answer = await self._client.chat.completions.create(
                model=self.settings.model,
                messages=messages,  # type: ignore[arg-type]
                extra_headers=extra_headers,
                **options,
            )
        except Exception as exc:
            raise self._fail(exc, "complete") from exc
        if not answer.choices:
            raise LLMOutputError(None, "the model answered without a choice")
        choice = answer.choices[0]
        usage = answer.usage
        return Completion(
            text=choice.message.content or "",
            prompt_tokens=usage.prompt_tokens if usage else 0,
            completion_tokens=usage.completion_tokens if usage else 0,
            model=answer.model,
            finish_reason=choice.finish_reason or "stop",
        )

    async def complete(
        self,
        messages: list[dict[str, str]],
        *,
        max_tokens: int | None = None,
        extra_headers: dict[str, str] | None = None,
    ) -> Completion:
        """The whole answer to ``messages`` at once."""
        return await self._chat(messages, max_tokens=max_tokens, extra_headers=extra_headers)

    async def stream(
        self,
        messages: list[dict[str, str]],
        *,
        max_tokens: int | None = None,
        extra_headers: dict[str, str] | None = None,
    ) -> AsyncIterator[str]:
        """The answer token by token, as the model produces them.

        The request (auth, retries before the first byte, status errors) goes through the
        ``openai`` client; the stream's events are read as plain JSON rather than built into the
        client's typed chunk objects, which cost ~0.1 ms each and dominated the tutor's
        first-token latency under load (see docs/decisions.md).
        """
        options: dict[str, Any] = {}
        if max_tokens is not None:
            options["max_tokens"] = max_tokens
        try:
            opened = self._client.chat.completions.with_streaming_response.create(
                model=self.settings.model,
                messages=messages,  # type: ignore[arg-type]
                stream=True,
                extra_headers=extra_headers,
                **options,
            )
            response = await opened.__aenter__()
        except Exception as exc:
            raise self._fail(exc, "stream") from exc
        try:
            async for line in response.iter_lines():
                for token in _stream_tokens(line):
                    yield token
        except LLMError:
            raise
        except _STREAM_ERRORS as exc:
            raise self._fail(exc, "stream") from exc
        finally:
            await opened.__aexit__(None, None, None)

    async def complete_json(
        self,
        messages: list[dict[str, str]],
        schema: dict[str, Any],
        *,
        name: str,
        extra_headers: dict[str, str] | None = None,
    ) -> tuple[dict[str, Any], Completion]:
        """A structured answer (``response_format: json_schema``) parsed into a dict.

        Raises :class:`LLMOutputError` when the answer is not a JSON object; checking it against
        ``schema`` is the caller's business (the agents framework does it and retries).
        """
        response_format = {
            "type": "json_schema",
            "json_schema": {"name": schema_name(name), "schema": schema},
        }
        completion = await self._chat(
            messages,
            max_tokens=None,
            extra_headers=extra_headers,
            response_format=response_format,
        )
        try:
            value = json.loads(completion.text)
        except ValueError:
            log.warning("llm_output_not_json", name=name, size=len(completion.text))
            raise LLMOutputError(None, "the model's answer is not valid JSON") from None
        if not isinstance(value, dict):
            raise LLMOutputError(None, "the model's answer is not a JSON object")
        return value, completion

    async def embed(self, texts: list[str], *, dimensions: int | None = None) -> list[list[float]]:
        """One vector per text, in the order given."""
        if not texts:
            return []
        options: dict[str, Any] = {}
        if dimensions is not None:
            options["dimensions"] = dimensions
        try:
            answer = await self._client.embeddings.create(
                model=self.settings.embedding_model, input=texts, **options
            )
        except Exception as exc:
            raise self._fail(exc, "embed") from exc
        ordered = sorted(answer.data, key=lambda item: item.index)
        if len(ordered) != len(texts):
            raise LLMOutputError(None, f"asked for {len(texts)} embeddings, got {len(ordered)}")
        return [list(item.embedding) for item in ordered]

    async def aclose(self) -> None:
        await self._client.close()
