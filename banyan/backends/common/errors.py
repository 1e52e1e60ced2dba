"""The contract's error model: ``ApiError`` and the body ``{"error": {"code", "message"}}``.

Both backends raise :class:`ApiError` (or a subclass) from handlers; :func:`error_middleware` turns
it, and any unexpected exception, into a JSON response with the right status. Codes are part of the
contract (docs/api.md, "Errors").
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from banyan.logs import get_logger

log = get_logger("backend.errors")


class ApiError(Exception):
    """An error the client sees: HTTP status, machine-readable code and a human message."""

    status = 400
    code = "bad_request"

    def __init__(self, message: str, *, code: str | None = None, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status

    def body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message}}


class ValidationError(ApiError):
    status, code = 400, "validation_error"


class InvalidJson(ApiError):
    status, code = 400, "invalid_json"


class Unauthorized(ApiError):
    status, code = 401, "unauthorized"


class NotFound(ApiError):
    status, code = 404, "not_found"


class Conflict(ApiError):
    status, code = 409, "conflict"


class PayloadTooLarge(ApiError):
    status, code = 413, "payload_too_large"


class UnsupportedMediaType(ApiError):
    status, code = 415, "unsupported_media_type"


class Unprocessable(ApiError):
    status, code = 422, "unprocessable"


class UpstreamFailed(ApiError):
    """The model (or another dependency) failed; the backend itself is fine."""

    status, code = 502, "upstream_failed"


class UpstreamTimeout(ApiError):
    status, code = 504, "upstream_timeout"


def error_response(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=status)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Render ApiError and aiohttp HTTP errors as contract JSON; never leak a traceback."""
    try:
        return await handler(request)
    except ApiError as exc:
        return web.json_response(exc.body(), status=exc.status)
    except web.HTTPRequestEntityTooLarge:
        return error_response(413, "payload_too_large", "request body is too large")
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status, "http_error")
        message = exc.reason if exc.status != 404 else "no such route"
        return error_response(exc.status, code, message)
    except Exception:
        log.exception("unhandled_error", method=request.method, path=request.path)
        return error_response(500, "internal_error", "internal server error")
