"""Events of one tutor turn and how a turn answers over HTTP (JSON or Server-Sent Events).

A turn runner is an async iterator of :class:`Token` events followed by one :class:`Done` event. It
may raise :class:`~banyan.backends.common.errors.ApiError` (e.g. ``upstream_failed``) before or
during the
stream. Over HTTP the JSON answer is ``{"question": message, "answer": message}``; with
``Accept: text/event-stream`` the answer is ``event: token`` frames with ``{"text"}``, then one
``event: done`` with the same JSON as the plain answer, or one ``event: error`` with the error body.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from banyan.backends.common.errors import ApiError


@dataclass(frozen=True, slots=True)
class Token:
    text: str


@dataclass(frozen=True, slots=True)
class Done:
    question: dict[str, Any]
    answer: dict[str, Any]


TurnEvent = Token | Done
TurnRunner = Callable[[str, str, str], AsyncIterator[TurnEvent]]  # (user_id, session_id, text)


async def _next_or_none(events: AsyncIterator[TurnEvent]) -> TurnEvent | None:
    try:
        return await anext(events)
    except StopAsyncIteration:
        return None


def wants_sse(request: web.Request) -> bool:
    return "text/event-stream" in request.headers.get("Accept", "")


def _sse(event: str, data: Any) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


async def answer_http(
    request: web.Request,
    events: AsyncIterator[TurnEvent],
    headers: dict[str, str] | None = None,
) -> web.StreamResponse:
    """Drive one turn and answer as JSON, or as SSE when the client asked for it."""
    if not wants_sse(request):
        async for item in events:
            if isinstance(item, Done):
                return web.json_response(
                    {"question": item.question, "answer": item.answer}, headers=headers
                )
        raise ApiError("the turn ended without an answer", code="internal_error", status=500)
    first = await anext(events)  # errors before the first token still get a JSON status
    sse = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
    response = web.StreamResponse(headers={**sse, **(headers or {})})
    await response.prepare(request)
    try:
        event: TurnEvent | None = first
        while event is not None:
            if isinstance(event, Token):
                await response.write(_sse("token", {"text": event.text}))
            else:
                await response.write(
                    _sse("done", {"question": event.question, "answer": event.answer})
                )
            event = await _next_or_none(events)
    except ApiError as exc:
        await response.write(_sse("error", exc.body()))
    await response.write_eof()
    return response
