"""Tests of banyan/backends/common/uploads.py: the multipart rules a client of either backend meets,
on a real aiohttp server with raw multipart bodies."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from aiohttp import web

from banyan.backends.common.errors import error_middleware
from banyan.backends.common.uploads import DRAIN_LIMIT, read_upload
from banyan.serving import serve


async def echo(request: web.Request) -> web.Response:
    sent = await read_upload(request)
    return web.json_response(
        {"title": sent.title, "filename": sent.filename, "type": sent.media_type, "size": sent.size}
    )


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    app = web.Application(middlewares=[error_middleware])
    app.router.add_post("/up", echo)
    async with serve(app) as url, httpx.AsyncClient(base_url=url) as made:
        yield made


def raw(*parts: tuple[str, str | None, bytes]) -> tuple[bytes, dict[str, str]]:
    """A multipart body from (name, filename, data) parts."""
    out = b""
    for name, filename, data in parts:
        disposition = f'form-data; name="{name}"'
        if filename is not None:
            disposition += f'; filename="{filename}"'
        out += b"--B\r\nContent-Disposition: " + disposition.encode() + b"\r\n\r\n" + data + b"\r\n"
    return out + b"--B--\r\n", {"Content-Type": "multipart/form-data; boundary=B"}


async def message(client: httpx.AsyncClient, *parts: tuple[str, str | None, bytes]) -> str:
    body, headers = raw(*parts)
    answer = await client.post("/up", content=body, headers=headers)
    assert answer.status_code == 400, answer.text
    text: str = answer.json()["error"]["message"]
    return text


async def test_a_good_upload(client: httpx.AsyncClient) -> None:
    body, headers = raw(("file", "dir\\sub/notes.MD", b"# Hi"), ("title", None, b" Notes "))
    answer = await client.post("/up", content=body, headers=headers)
    assert answer.json() == {
        "title": "Notes",
        "filename": "notes.MD",
        "type": "text/markdown",
        "size": 4,
    }


async def test_refusals(client: httpx.AsyncClient) -> None:
    two = await message(client, ("file", "a.txt", b"x"), ("file", "b.txt", b"y"))
    assert two == "file: is invalid"
    assert await message(client, ("file", "", b"x")) == "file: is invalid"
    assert await message(client, ("file", None, b"x")) == "file: is invalid"
    assert await message(client, (" ", None, b"x")) == " : is not a known field"
    long_title = await message(client, ("file", "a.txt", b"x"), ("title", None, b"t" * 70_000))
    assert long_title == "title: must be at most 200 characters"
    nul_title = await message(client, ("file", "a.txt", b"x"), ("title", None, b"a\x00b"))
    assert nul_title == "title: must not contain U+0000"  # PostgreSQL text cannot hold it
    broken = await client.post(
        "/up", content=b"--B\r\nnot a header\r\n", headers={"Content-Type": "multipart/form-data"}
    )
    assert broken.status_code == 400


async def test_a_huge_body_is_refused_before_it_is_read(client: httpx.AsyncClient) -> None:
    body, headers = raw(("file", "big.txt", b"a" * (DRAIN_LIMIT + 1)))
    answer = await client.post("/up", content=body, headers=headers)
    assert answer.status_code == 413 and answer.json()["error"]["code"] == "payload_too_large"


async def test_a_huge_part_without_a_length_is_refused_while_reading(
    client: httpx.AsyncClient,
) -> None:
    body, headers = raw(("file", "big.txt", b"a" * (DRAIN_LIMIT + 1)))

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(body), 1 << 20):
            yield body[start : start + (1 << 20)]

    try:
        answer = await client.post("/up", content=chunks(), headers=headers)
    except httpx.TransportError:
        return  # the server may close the connection while the client still sends
    assert answer.status_code == 413


async def test_a_file_name_with_nul_is_invalid(client: httpx.AsyncClient) -> None:
    body = (
        b"--B\r\nContent-Disposition: form-data; name=\"file\"; filename*=UTF-8''a%00b.txt\r\n"
        b"\r\nx\r\n--B--\r\n"
    )
    headers = {"Content-Type": "multipart/form-data; boundary=B"}
    answer = await client.post("/up", content=body, headers=headers)
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"]["message"] == "file: is invalid"
