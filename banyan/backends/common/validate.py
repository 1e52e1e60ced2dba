"""Input validation with the contract's exact error messages.

A validator is a callable ``(value, path) -> parsed value`` that raises
:class:`~banyan.backends.common.errors.ValidationError` with the message ``"<path>: <reason>"``.
Reasons
are fixed by docs/api.md ("Validation messages") so both backends answer bad input identically. The
new backend's function registry uses these as its argument validators (``v.string(...)``); the
legacy handlers call them directly.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from aiohttp import web

from banyan.backends.common import jsonbody
from banyan.backends.common.errors import PayloadTooLarge, ValidationError

Validator = Callable[[Any, str], Any]
MAX_JSON_BYTES = 1_048_576
_MISSING = object()


def _fail(path: str, reason: str) -> ValidationError:
    return ValidationError(f"{path}: {reason}")


def string(*, min_len: int = 0, max_len: int = 10_000, strip: bool = True) -> Validator:
    def check(value: Any, path: str) -> str:
        if not isinstance(value, str):
            raise _fail(path, "must be a string")
        text = value.strip() if strip else value
        if min_len and len(text) < min_len:
            raise _fail(
                path,
                "must not be empty" if min_len == 1 else f"must be at least {min_len} characters",
            )
        if len(text) > max_len:
            raise _fail(path, f"must be at most {max_len} characters")
        return text

    return check


def email() -> Validator:
    base = string(min_len=3, max_len=254)

    def check(value: Any, path: str) -> str:
        text = base(value, path)
        local, at, domain = text.partition("@")
        if not at or not local or "." not in domain or " " in text:
            raise _fail(path, "must be an email address")
        return text.lower()

    return check


def integer(*, minimum: int | None = None, maximum: int | None = None) -> Validator:
    def check(value: Any, path: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _fail(path, "must be an integer")
        if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
            raise _fail(path, f"must be between {minimum} and {maximum}")
        return value

    return check


def one_of(*choices: str) -> Validator:
    def check(value: Any, path: str) -> str:
        if not isinstance(value, str) or value not in choices:
            raise _fail(path, "must be one of " + ", ".join(choices))
        return value

    return check


def nullable(inner: Validator) -> Validator:
    def check(value: Any, path: str) -> Any:
        return None if value is None else inner(value, path)

    return check


def json_object(*, max_bytes: int | None = None) -> Validator:
    """Any JSON object (used for a session's free-form context document)."""

    def check(value: Any, path: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise _fail(path, "must be an object")
        if max_bytes is not None and len(json.dumps(value, separators=(",", ":"))) > max_bytes:
            raise PayloadTooLarge(f"{path}: must be at most {max_bytes} bytes")
        return value

    return check


def obj(
    fields: Mapping[str, Validator], *, optional: frozenset[str] | set[str] = frozenset()
) -> Callable[[Any], dict[str, Any]]:
    """Validate a request object: known fields only, required ones present, in field order."""

    def check(value: Any) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise ValidationError("body: must be a JSON object")
        unknown = sorted(set(value) - set(fields))
        if unknown:
            raise _fail(unknown[0], "is not a known field")
        parsed: dict[str, Any] = {}
        for name, validator in fields.items():
            raw = value.get(name, _MISSING)
            if raw is _MISSING:
                if name in optional:
                    continue
                raise _fail(name, "is required")
            parsed[name] = validator(raw, name)
        return parsed

    return check


async def read_json(request: web.Request, *, max_bytes: int = MAX_JSON_BYTES) -> Any:
    """Read and parse the JSON body, refusing oversize (413) and hostile (400) bodies: the rules
    are :mod:`banyan.backends.common.jsonbody`'s."""
    if request.content_length is not None and request.content_length > max_bytes:
        raise PayloadTooLarge(f"request body must be at most {max_bytes} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.content.iter_chunked(65536):
        size += len(chunk)
        if size > max_bytes:
            raise PayloadTooLarge(f"request body must be at most {max_bytes} bytes")
        chunks.append(chunk)
    raw = b"".join(chunks)
    if not raw.strip():
        raise ValidationError("body: must be a JSON object")
    return jsonbody.loads(raw)
