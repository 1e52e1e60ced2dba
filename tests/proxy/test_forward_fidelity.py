"""The proxy forwards what it was given (banyan/proxy/forward.py, headers.py, relayed.py, front.py).

Each test reproduces a finding of issue 14 at the byte level: a raw client sends exactly the bytes
it means (no client library adding ``Accept`` or ``User-Agent``), a raw upstream records exactly
the bytes it got and answers with exactly the bytes a test chose.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from banyan.ports import free_port
from banyan.proxy.app import STATE, ProxyState, create_app
from banyan.proxy.limits import Limits
from banyan.serving import serve
from tests.proxy.raw_upstream import RawRequest, RawUpstream, raw_exchange, split_answer
from tests.proxy.test_shadow import make_shadow, settle
from tests.proxy.upstreams import flags_yaml

LEGACY = '  api:\n    routes: ["/api/**"]\n    mode: legacy\n'
SHADOWED = (
    '  api:\n    routes: ["/api/**"]\n    mode: shadow\n'
    "    writes: mirror\n    parity: {sample: 100, noise_sample: 0}\n"
)


@dataclass
class RawStack:
    url: str
    legacy: RawUpstream
    new: RawUpstream
    state: ProxyState
    port: int

    def seen(self, side: str = "legacy") -> list[RawRequest]:
        upstream = self.legacy if side == "legacy" else self.new
        return [r for r in upstream.requests if r.target != b"/healthz"]


@asynccontextmanager
async def raw_stack(
    tmp_path: Path, features: str = LEGACY, **kwargs: Any
) -> AsyncIterator[RawStack]:
    legacy, new = RawUpstream("legacy"), RawUpstream("new")
    async with legacy.serving() as legacy_url, new.serving() as new_url:
        flags = tmp_path / "flags.yaml"
        flags.write_text(flags_yaml(legacy_url, new_url, features))
        kwargs.setdefault("access_log", False)
        app = create_app(flags, health_interval=3600, **kwargs)
        async with serve(app) as url:
            yield RawStack(url, legacy, new, app[STATE], int(url.rsplit(":", 1)[1]))


def status_of(answer: bytes) -> int:
    """The status code of an answer (aiohttp answers a request it could not parse in HTTP/1.0)."""
    assert answer.startswith(b"HTTP/1."), answer[:200]
    return int(answer[9:12])


def request(line: str, *headers: str, body: bytes = b"") -> bytes:
    return (line + "\r\n" + "".join(h + "\r\n" for h in headers) + "\r\n").encode() + body


def proxied(stack: RawStack, client_headers: list[tuple[bytes, bytes]], rid: bytes) -> Any:
    """What the upstream should see: the client's lines, then the proxy's four."""
    host = dict(client_headers).get(b"Host", b"")
    return [
        *client_headers,
        (b"X-Forwarded-For", b"127.0.0.1"),
        (b"X-Forwarded-Proto", b"http"),
        (b"X-Forwarded-Host", host),
        (b"X-Request-Id", rid),
    ]


async def test_the_upstream_gets_the_clients_headers_in_order_and_nothing_more(
    tmp_path: Path,
) -> None:
    async with raw_stack(tmp_path) as stack:
        answer = await raw_exchange(
            stack.url,
            request(
                "GET /api/a?x=1&y=%2F HTTP/1.1",
                "Host: front.example",
                "Cookie: a=1",
                "X-Zeta: z",
                "Cookie: b=2",
                "X-Request-Id: rid-1",
                "Connection: close",
            ),
        )
        seen = stack.seen()
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n")
    assert seen[0].head.startswith(b"GET /api/a?x=1&y=%2F HTTP/1.1\r\n")
    assert seen[0].headers == [
        (b"Host", b"front.example"),
        (b"Cookie", b"a=1"),
        (b"X-Zeta", b"z"),
        (b"Cookie", b"b=2"),
        (b"X-Request-Id", b"rid-1"),
        (b"X-Forwarded-For", b"127.0.0.1"),
        (b"X-Forwarded-Proto", b"http"),
        (b"X-Forwarded-Host", b"front.example"),
    ]


async def test_a_bodiless_delete_gains_no_content_length(tmp_path: Path) -> None:
    async with raw_stack(tmp_path) as stack:
        await raw_exchange(
            stack.url, request("DELETE /api/a/1 HTTP/1.1", "Host: h", "Connection: close")
        )
        seen = stack.seen()
    assert seen[0].method == "DELETE"
    assert "content-length" not in seen[0].names() and "transfer-encoding" not in seen[0].names()


async def test_an_absolute_form_target_is_forwarded_as_sent(tmp_path: Path) -> None:
    async with raw_stack(tmp_path) as stack:
        target = f"http://front.example:{stack.port}/api/abs?q=1"
        answer = await raw_exchange(
            stack.url, request(f"GET {target} HTTP/1.1", "Host: front.example", "Connection: close")
        )
        seen = stack.seen()
    assert answer.startswith(b"HTTP/1.1 200 OK"), answer[:200]
    assert seen[0].target == target.encode()


async def test_an_answer_is_relayed_with_its_own_head_and_only_our_marks(tmp_path: Path) -> None:
    async with raw_stack(tmp_path) as stack:
        stack.legacy.answers["/api/plain"] = (
            b"HTTP/1.1 203 Quite Fine\r\nX-B: 1\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\n"
            b"Date: Mon, 01 Jan 2024 00:00:00 GMT\r\nContent-Length: 5\r\n\r\nhello"
        )
        answer = await raw_exchange(
            stack.url,
            request("GET /api/plain HTTP/1.1", "Host: h", "X-Request-Id: r", "Connection: close"),
        )
    assert answer == (
        b"HTTP/1.1 203 Quite Fine\r\nX-B: 1\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\n"
        b"Date: Mon, 01 Jan 2024 00:00:00 GMT\r\nContent-Length: 5\r\n"
        b"X-Banyan-Feature: api\r\nX-Banyan-Backend: legacy\r\nX-Request-Id: r\r\n"
        b"Connection: close\r\n\r\nhello"
    )


async def test_an_answer_without_content_type_gains_none(tmp_path: Path) -> None:
    async with raw_stack(tmp_path) as stack:
        stack.legacy.answers["/api/bare"] = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc"
        answer = await raw_exchange(
            stack.url, request("GET /api/bare HTTP/1.1", "Host: h", "Connection: close")
        )
    status, headers, body = split_answer(answer)
    names = [n.lower() for n, _ in headers]
    assert status == b"HTTP/1.1 200 OK" and body == b"abc"
    assert b"content-type" not in names and b"server" not in names
    assert names.count(b"date") == 1  # the upstream sent none: a proxy may add one


async def test_a_12_kb_answer_header_is_relayed(tmp_path: Path) -> None:
    big = b"v" * 12 * 1024
    async with raw_stack(tmp_path) as stack:
        stack.legacy.answers["/api/big"] = (
            b"HTTP/1.1 200 OK\r\nX-Big: " + big + b"\r\nContent-Length: 2\r\n\r\nok"
        )
        answer = await raw_exchange(
            stack.url, request("GET /api/big HTTP/1.1", "Host: h", "Connection: close")
        )
    status, headers, _ = split_answer(answer)
    assert status == b"HTTP/1.1 200 OK" and (b"X-Big", big) in headers


async def test_an_answer_head_over_the_limit_is_a_502_naming_the_limit(tmp_path: Path) -> None:
    limits = Limits(max_header_bytes=4096, max_field_bytes=4096)
    async with raw_stack(tmp_path, limits=limits) as stack:
        stack.legacy.answers["/api/big"] = (
            b"HTTP/1.1 200 OK\r\nX-Big: " + b"v" * 6000 + b"\r\nContent-Length: 2\r\n\r\nok"
        )
        answer = await raw_exchange(
            stack.url, request("GET /api/big HTTP/1.1", "Host: h", "Connection: close")
        )
    status, _, body = split_answer(answer)
    error = json.loads(body)["error"]
    assert status.startswith(b"HTTP/1.1 502")
    assert error["code"] == "upstream_head_too_large" and "--max-field-bytes" in error["message"]


async def test_a_gzip_request_body_is_forwarded_untouched(tmp_path: Path) -> None:
    packed = gzip.compress(b'{"title": "t"}', mtime=0)
    async with raw_stack(tmp_path) as stack:
        await raw_exchange(
            stack.url,
            request(
                "POST /api/sessions HTTP/1.1",
                "Host: h",
                "Content-Type: application/json",
                "Content-Encoding: gzip",
                f"Content-Length: {len(packed)}",
                "Connection: close",
                body=packed,
            ),
        )
        seen = stack.seen()
    assert seen[0].body == packed
    assert seen[0].header("Content-Encoding") == [b"gzip"]
    assert seen[0].header("Content-Length") == [str(len(packed)).encode()]


async def test_a_chunked_request_body_stays_chunked(tmp_path: Path) -> None:
    async with raw_stack(tmp_path) as stack:
        await raw_exchange(
            stack.url,
            request(
                "POST /api/up HTTP/1.1",
                "Host: h",
                "Transfer-Encoding: chunked",
                "Connection: close",
                body=b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
            ),
        )
        seen = stack.seen()
    assert seen[0].body == b"abcde" and seen[0].header("Transfer-Encoding") == [b"chunked"]
    assert "content-length" not in seen[0].names()


def _unstamped(head: bytes) -> bytes:
    return b"\r\n".join(
        line for line in head.split(b"\r\n") if not line.lower().startswith(b"x-banyan-stamp:")
    )


async def test_the_shadow_copy_is_the_primarys_request(tmp_path: Path) -> None:
    async with raw_stack(tmp_path, SHADOWED, shadow=make_shadow(tmp_path)) as stack:
        await raw_exchange(
            stack.url,
            request(
                "POST /api/sessions?x=1 HTTP/1.1",
                "Host: front.example",
                "Cookie: a=1",
                "Cookie: b=2",
                "Idempotency-Key: k-1",
                "Content-Length: 5",
                "Connection: close",
                body=b"hello",
            ),
        )
        await stack.new.wait_for(1)
        await settle(stack, 1)
        primary, copy = stack.seen("legacy")[0], stack.seen("new")[0]
    # the same request but for its stamp: the primary's, and the copy's at the very same time
    (primary_stamp,) = primary.header("X-Banyan-Stamp")
    (copy_stamp,) = copy.header("X-Banyan-Stamp")
    assert _unstamped(copy.head) == _unstamped(primary.head) and b"Stamp" not in _unstamped(
        copy.head
    )
    assert copy.body == primary.body == b"hello"
    _, ms, kind, _, _ = primary_stamp.decode().split(".")
    assert copy_stamp.decode().split(".")[1:3] == [ms, "mirror"] and kind == "primary"
    assert primary.header("Cookie") == [b"a=1", b"b=2"] and primary.header("Host") == [
        b"front.example"
    ]
    assert "accept" not in copy.names() and "user-agent" not in copy.names()


async def test_a_502_names_the_backend_never_its_address(tmp_path: Path) -> None:
    features = '  api:\n    routes: ["/api/**"]\n    mode: new\n    fallback: false\n'
    async with raw_stack(tmp_path, features) as stack:
        dead = f"http://127.0.0.1:{free_port()}"
        flags = stack.state.flags_path
        flags.write_text(flags.read_text().replace(stack.state.flags.backends["new"].url, dead))
        assert stack.state.store.reload_now()
        answer = await raw_exchange(
            stack.url, request("GET /api/x HTTP/1.1", "Host: h", "Connection: close")
        )
    status, _, body = split_answer(answer)
    assert status.startswith(b"HTTP/1.1 502")
    assert json.loads(body) == {
        "error": {"code": "bad_gateway", "message": "new backend unavailable"}
    }
    assert b"127.0.0.1" not in answer


async def test_request_header_limits_are_generous_and_answered_in_json(tmp_path: Path) -> None:
    async with raw_stack(tmp_path) as stack:
        cookie = "Cookie: jwt=" + "c" * 9000  # a 9 KB cookie is normal traffic
        fine = await raw_exchange(
            stack.url, request("GET /api/a HTTP/1.1", "Host: h", cookie, "Connection: close")
        )
        many = [f"X-Pad-{i}: " + "p" * 2000 for i in range(35)]  # 70 KB in all
        over = await raw_exchange(
            stack.url, request("GET /api/a HTTP/1.1", "Host: h", *many, "Connection: close")
        )
        long_target = "/api/" + "t" * 70_000
        too_long = await raw_exchange(
            stack.url, request(f"GET {long_target} HTTP/1.1", "Host: h", "Connection: close")
        )
    assert status_of(fine) == 200
    assert status_of(over) == 431
    assert "--max-header-bytes" in json.loads(split_answer(over)[2])["error"]["message"]
    assert status_of(too_long) == 414
    assert "--max-target-bytes" in json.loads(split_answer(too_long)[2])["error"]["message"]
    assert stack.state.metrics.upstream_errors.values == {}


async def test_a_header_line_over_a_configured_limit_is_a_431(tmp_path: Path) -> None:
    limits = Limits(max_field_bytes=1000, max_headers=10)
    async with raw_stack(tmp_path, limits=limits) as stack:
        long_line = await raw_exchange(
            stack.url, request("GET /api/a HTTP/1.1", "Host: h", "X-Long: " + "l" * 1500)
        )
        many = await raw_exchange(
            stack.url, request("GET /api/a HTTP/1.1", "Host: h", *(f"X-{i}: 1" for i in range(12)))
        )
    for answer, limit in ((long_line, "--max-field-bytes"), (many, "--max-headers")):
        _, headers, body = split_answer(answer)
        assert status_of(answer) == 431
        assert (b"Content-Type", b"application/json") in headers
        assert limit in json.loads(body)["error"]["message"]


async def test_a_malformed_request_is_a_400_in_json(tmp_path: Path) -> None:
    async with raw_stack(tmp_path) as stack:
        answer = await raw_exchange(
            stack.url,
            b"GET /api/a HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer s3cr3t\r\nBad\x01: x\r\n\r\n",
        )
    assert status_of(answer) == 400
    error = json.loads(split_answer(answer)[2])["error"]
    assert error["code"] == "bad_request" and "s3cr3t" not in error["message"]


@pytest.mark.parametrize(
    "broken",
    [
        # the client promises 100 bytes, sends 5 and leaves
        b"POST /api/a HTTP/1.1\r\nHost: h\r\nContent-Length: 100\r\n\r\nhello",
        # a chunk size that is not hexadecimal
        b"POST /api/a HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\nzz\r\n",
    ],
    ids=["cut-short", "bad-chunking"],
)
async def test_a_body_the_client_broke_counts_against_no_backend(
    tmp_path: Path, broken: bytes
) -> None:
    async with raw_stack(tmp_path) as stack:
        answer = await raw_exchange(stack.url, broken, half_close=True)
    metrics = stack.state.metrics
    assert metrics.upstream_errors.values == {}
    assert not any(labels[2].startswith("5") for labels in metrics.requests.values)
    if answer:  # the client may already be gone; if it reads, it reads a 400
        assert status_of(answer) == 400


GUARDED = """\
version: 1
backends:
  legacy: {legacy}
  new: {new}
features:
  sessions:
    routes: ["/api/sessions", "/api/sessions/**"]
    mode: new
    guards: {{max_error_rate: 0.01, window: 4}}
default: legacy
"""


async def test_anonymous_gzip_posts_get_the_backends_401_and_roll_nothing_back(
    tmp_path: Path,
) -> None:
    """Issue 14: four anonymous gzip POSTs were answered 502 (the body was decompressed and sent
    with its gzip header), counted as new's failures, and rolled the feature back."""
    from tests.proxy.conftest import real_backends_behind_proxy

    # compressed 30 times: decompressed, it overran its Content-Length on the upstream connection
    packed = gzip.compress(json.dumps({"title": "t" * 2000}).encode(), mtime=0)
    async with real_backends_behind_proxy(tmp_path, GUARDED) as urls:
        direct = await raw_exchange(urls["new"], gzip_post(packed))
        through = [await raw_exchange(urls["proxy"], gzip_post(packed)) for _ in range(4)]
    assert status_of(direct) == 401
    assert [status_of(answer) for answer in through] == [401] * 4
    assert "mode: new" in (tmp_path / "flags.yaml").read_text()  # no rollback


def gzip_post(packed: bytes) -> bytes:
    return request(
        "POST /api/sessions HTTP/1.1",
        "Host: tutor.example",
        "Content-Type: application/json",
        "Content-Encoding: gzip",
        f"Content-Length: {len(packed)}",
        "Connection: close",
        body=packed,
    )


async def test_host_backend_sends_the_backends_authority_and_preserve_the_clients(
    tmp_path: Path,
) -> None:
    async with raw_stack(tmp_path, SHADOWED, shadow=make_shadow(tmp_path)) as stack:
        flags = stack.state.flags_path
        legacy_url = stack.state.flags.backends["legacy"].url
        flags.write_text(
            flags.read_text().replace(
                f"legacy: {legacy_url}", f"legacy: {{url: {legacy_url}, host: backend}}"
            )
        )
        assert stack.state.store.reload_now()
        await raw_exchange(
            stack.url, request("GET /api/a HTTP/1.1", "Host: front.example", "Connection: close")
        )
        await stack.new.wait_for(1)
        await settle(stack, 1)
        primary, copy = stack.seen("legacy")[0], stack.seen("new")[0]
    assert primary.header("Host") == [legacy_url.removeprefix("http://").encode()]
    assert copy.header("Host") == [b"front.example"]  # new keeps the default: preserve
    assert (
        primary.header("X-Forwarded-Host") == copy.header("X-Forwarded-Host") == [b"front.example"]
    )
