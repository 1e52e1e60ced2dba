"""The error tree (banyan/errors.py): its shape as documented, and each class raised where a
failure of its kind happens, so callers can decide by class."""

from __future__ import annotations

import builtins
import inspect
import re
from collections.abc import AsyncIterator

import pytest

from banyan import errors
from banyan.errors import (
    BadRequestBody,
    BanyanError,
    ConnectError,
    ConnectionClosed,
    ProtocolError,
    RequestFault,
    ResponseTooLarge,
    UpstreamError,
    UpstreamTimeout,
)
from banyan.ports import free_port
from banyan.proxy.forward import UPSTREAM_FAILURES, gateway_error
from banyan.proxy.limits import Limits
from banyan.proxy.upstream import Pool, PoolSettings, finish, origin_of, send
from tests.proxy.raw_upstream import RawUpstream

UPSTREAM = (ConnectError, UpstreamTimeout, ConnectionClosed, ProtocolError, ResponseTooLarge)


def defined() -> dict[str, type[BaseException]]:
    return {
        name: value
        for name, value in vars(errors).items()
        if inspect.isclass(value) and issubclass(value, BaseException)
    }


def drawn() -> dict[str, tuple[str | None, str | None]]:
    """Each class in the module docstring's tree: its parent in the tree, and the built-in base
    the text names in parentheses (e.g. ``ValueError``), if any."""
    found: dict[str, tuple[str | None, str | None]] = {}
    line_of: list[str] = []  # the class drawn at each depth so far
    for line in (errors.__doc__ or "").splitlines():
        match = re.match(r"^ {4}([│ ]*)([├└]── )?([A-Z]\w+)(?: \((\w+)\))?(?:\s|$)", line)
        if match is None or match.group(3) not in defined():
            continue
        depth = len(match.group(1)) // 4 + (1 if match.group(2) else 0)
        del line_of[depth:]
        found[match.group(3)] = (line_of[-1] if line_of else None, match.group(4))
        line_of.append(match.group(3))
    return found


def test_the_docstring_draws_every_class_once() -> None:
    assert set(drawn()) == set(defined())


def test_every_class_sits_where_the_tree_draws_it() -> None:
    classes = defined()
    for name, (parent, builtin) in drawn().items():
        ours = [base for base in classes[name].__bases__ if base.__module__ == errors.__name__]
        assert [base.__name__ for base in ours] == ([parent] if parent else []), name
        if name != "BanyanError":
            assert issubclass(classes[name], BanyanError)
        if builtin is not None:
            assert issubclass(classes[name], getattr(builtins, builtin)), name


def test_upstream_failures_carry_distinct_kinds_and_statuses() -> None:
    kinds = [cls.kind for cls in UPSTREAM]
    assert len(set(kinds)) == len(kinds) and set(kinds) == UPSTREAM_FAILURES
    assert {cls: cls.status for cls in UPSTREAM} == {
        ConnectError: 502,
        UpstreamTimeout: 504,
        ConnectionClosed: 502,
        ProtocolError: 502,
        ResponseTooLarge: 502,
    }
    failure = UpstreamTimeout("no answer in time")
    assert str(failure) == "timeout: no answer in time" and failure.detail == "no answer in time"


def test_each_upstream_failure_has_its_own_client_answer() -> None:
    codes = {cls: gateway_error(cls("x"), "new") for cls in UPSTREAM}
    assert {cls: answer.status for cls, answer in codes.items()} == {
        cls: cls.status for cls in UPSTREAM
    }
    assert b"gateway_timeout" in codes[UpstreamTimeout].body  # type: ignore[operator]
    assert b"upstream_head_too_large" in codes[ResponseTooLarge].body  # type: ignore[operator]
    assert b"malformed" in codes[ProtocolError].body  # type: ignore[operator]
    assert b"unavailable" in codes[ConnectError].body  # type: ignore[operator]


def test_request_faults_make_the_clients_error() -> None:
    broken = BadRequestBody()
    assert isinstance(broken, RequestFault) and not isinstance(broken, UpstreamError)
    assert (broken.status, broken.code) == (400, "bad_request_body")


@pytest.fixture
async def upstream() -> AsyncIterator[tuple[RawUpstream, str]]:
    raw = RawUpstream("legacy")
    async with raw.serving() as url:
        yield raw, url


async def failure_of(url: str, target: str, **limits: int) -> UpstreamError:
    pool = Pool(origin_of(url), Limits(**limits), PoolSettings())
    try:
        head = f"GET {target} HTTP/1.1\r\nHost: h\r\n\r\n".encode()
        with pytest.raises(UpstreamError) as caught:
            conn = await send(pool, "GET", head, None, connect_timeout=1, read_timeout=0.2)
            finish(pool, conn)
        return caught.value
    finally:
        pool.close()


async def test_a_refused_connection_raises_connect_error() -> None:
    assert type(await failure_of(f"http://127.0.0.1:{free_port()}", "/a")) is ConnectError


async def test_each_broken_answer_raises_its_class(upstream: tuple[RawUpstream, str]) -> None:
    raw, url = upstream
    raw.answers["/hang"] = b""
    raw.answers["/garbage"] = b"NOT HTTP AT ALL\r\n\r\n"
    raw.answers["/huge"] = b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * 4096 + b"\r\n\r\n"
    assert type(await failure_of(url, "/hang")) is UpstreamTimeout
    assert type(await failure_of(url, "/garbage")) is ProtocolError
    assert type(await failure_of(url, "/huge", max_field_bytes=1024)) is ResponseTooLarge
    raw.close_after_answer = True
    assert type(await failure_of(url, "/hang")) is ConnectionClosed
