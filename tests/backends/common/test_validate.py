"""Tests for banyan/backends/common/validate.py and errors.py: exact contract messages over real
HTTP."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from aiohttp import web

from banyan.backends.common import validate as v
from banyan.backends.common.errors import (
    ApiError,
    NotFound,
    PayloadTooLarge,
    ValidationError,
    error_middleware,
)
from banyan.serving import serve

FOLDER = v.obj(
    {"name": v.string(min_len=1, max_len=5), "parent": v.nullable(v.string())}, optional={"parent"}
)


def message_of(check: Any, value: Any) -> str:
    with pytest.raises(ValidationError) as err:
        check(value)
    return err.value.message


def test_object_rules_in_order() -> None:
    assert FOLDER({"name": " ab "}) == {"name": "ab"}
    assert FOLDER({"name": "a", "parent": None}) == {"name": "a", "parent": None}
    assert message_of(FOLDER, []) == "body: must be a JSON object"
    assert message_of(FOLDER, {"zzz": 1, "name": 5}) == "zzz: is not a known field"
    assert message_of(FOLDER, {}) == "name: is required"
    assert message_of(FOLDER, {"name": 5}) == "name: must be a string"
    assert message_of(FOLDER, {"name": "  "}) == "name: must not be empty"
    assert message_of(FOLDER, {"name": "abcdef"}) == "name: must be at most 5 characters"


def test_scalar_validators() -> None:
    assert v.email()(" Ann@X.io ", "email") == "ann@x.io"
    for bad in ["nope", "a@b", "a b@c.d", "@x.io"]:
        with pytest.raises(ValidationError, match="email: must be an email address"):
            v.email()(bad, "email")
    assert v.integer(minimum=1, maximum=3)(2, "n") == 2
    with pytest.raises(ValidationError, match="n: must be an integer"):
        v.integer()(True, "n")
    with pytest.raises(ValidationError, match="n: must be between 1 and 3"):
        v.integer(minimum=1, maximum=3)(4, "n")
    assert v.one_of("a", "b")("a", "k") == "a"
    with pytest.raises(ValidationError, match="k: must be one of a, b"):
        v.one_of("a", "b")("c", "k")
    with pytest.raises(ValidationError, match="s: must be at least 8 characters"):
        v.string(min_len=8, strip=False)("short", "s")
    assert v.json_object()({"a": 1}, "c") == {"a": 1}
    with pytest.raises(ValidationError, match="c: must be an object"):
        v.json_object()([1], "c")
    with pytest.raises(PayloadTooLarge):
        v.json_object(max_bytes=10)({"a": "x" * 20}, "c")


async def _echo(request: web.Request) -> web.Response:
    body = await v.read_json(request, max_bytes=64)
    if body == {"boom": True}:
        raise RuntimeError("bug")
    if body == {"missing": True}:
        raise NotFound("folder not found")
    if body == {"teapot": True}:
        raise ApiError("short and stout", code="teapot", status=418)
    return web.json_response(FOLDER(body))


@pytest.fixture
async def base_url() -> Any:
    app = web.Application(middlewares=[error_middleware], client_max_size=128)
    app.router.add_post("/echo", _echo)
    async with serve(app) as url:
        yield url


@pytest.mark.parametrize(
    ("content", "status", "code"),
    [
        (b'{"name": "ok"}', 200, None),
        (b"{nope", 400, "invalid_json"),
        (b"", 400, "validation_error"),
        (b'{"name": 1}', 400, "validation_error"),
        (b'{"boom": true}', 500, "internal_error"),
        (b'{"missing": true}', 404, "not_found"),
        (b'{"teapot": true}', 418, "teapot"),
        (b'{"name": "' + b"x" * 100 + b'"}', 413, "payload_too_large"),
    ],
)
async def test_errors_render_as_contract_json(
    base_url: str, content: bytes, status: int, code: str | None
) -> None:
    async with httpx.AsyncClient(base_url=base_url) as client:
        response = await client.post("/echo", content=content)
    assert response.status_code == status
    if code is not None:
        assert response.json()["error"]["code"] == code
        assert "Traceback" not in response.text


async def test_chunked_oversize_body_is_refused(base_url: str) -> None:
    async def chunks() -> Any:
        for _ in range(10):
            yield b"x" * 20

    async with httpx.AsyncClient(base_url=base_url) as client:
        response = await client.post("/echo", content=chunks())
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"


async def test_unknown_route_and_method(base_url: str) -> None:
    async with httpx.AsyncClient(base_url=base_url) as client:
        missing = await client.get("/nope")
        wrong = await client.get("/echo")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    assert wrong.status_code == 405 and wrong.json()["error"]["code"] == "method_not_allowed"
