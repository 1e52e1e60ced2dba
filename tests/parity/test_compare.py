"""Tests for banyan/parity/compare.py and banyan/parity/paths.py: injected differences found at
exact paths."""

from __future__ import annotations

import gzip
import json
import zlib
from typing import Any

import brotli
import pytest
from multidict import MultiDict

from banyan.parity import paths
from banyan.parity.compare import Response, Rules, compare

JSON = {"content-type": "application/json"}


def answer(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return Response(status, headers or JSON, raw)


def diffs(a: Any, b: Any, rules: Rules | None = None) -> list[tuple[str, str, Any, Any]]:
    result = compare(answer(a), answer(b), rules or Rules())
    assert result.match == (not result.differences)
    return [(d.path, d.kind, d.primary, d.candidate) for d in result.differences]


def test_identical_answers_match() -> None:
    body = {"items": [{"id": 1, "tags": ["a"]}], "next": None}
    assert compare(answer(body), answer(body)).match


def test_typed_differences_at_exact_paths() -> None:
    primary = {
        "user": {"name": "Ann", "age": 30, "admin": False},
        "items": [{"t": "a"}, {"t": "b"}],
    }
    candidate = {"user": {"name": "Anne", "age": "30", "admin": 0, "new": 1}, "items": [{"t": "a"}]}
    assert diffs(primary, candidate) == [
        ("$.user.name", "changed", "Ann", "Anne"),
        ("$.user.age", "type", 30, "30"),
        ("$.user.admin", "type", False, 0),
        ("$.user.new", "added", None, 1),
        ("$.items[1]", "removed", {"t": "b"}, None),
    ]
    assert diffs({"odd key": 1}, {"odd key": 2}) == [("$['odd key']", "changed", 1, 2)]


def test_ignores_masks_unordered_and_tolerance() -> None:
    rules = Rules(
        ignore=("$..created_at", "$.meta"),
        mask=("$.id",),
        unordered=("$.items",),
        tolerance=0.01,
    )
    primary = {
        "id": "a1",
        "meta": {"x": 1},
        "score": 100.0,
        "items": [{"n": 1, "created_at": 1}, {"n": 2}],
    }
    candidate = {
        "id": "b2",
        "meta": {"x": 2},
        "score": 100.5,
        "items": [{"n": 2}, {"n": 1, "created_at": 9}],
    }
    assert diffs(primary, candidate, rules) == []
    assert diffs({"id": "a"}, {"id": 5}, rules) == [("$.id", "type", "a", 5)]
    assert diffs({"score": 100}, {"score": 102}, rules) == [("$.score", "changed", 100, 102)]
    assert diffs({"items": [1, 1, 2]}, {"items": [1, 2, 3]}, rules) == [
        ("$.items[1]", "removed", 1, None),
        ("$.items[2]", "added", None, 3),
    ]
    assert diffs({"created_at": 1, "x": 1}, {"x": 1, "meta": 3}, rules) == []


def test_status_headers_and_errors() -> None:
    a = Response(200, {"Content-Type": "application/json", "X-A": "1"}, b"{}")
    b = Response(201, {"content-type": "text/plain"}, b"{}")
    result = compare(a, b, Rules(headers=("content-type", "x-a")))
    assert not result.status_match
    assert [(d.path, d.kind) for d in result.differences] == [
        ("status", "changed"),
        ("header:content-type", "changed"),
        ("header:x-a", "removed"),
    ]
    failed = compare(a, Response(0, {}, b"", error="timeout"))
    assert not failed.match and failed.error == "timeout" and failed.differences[0].kind == "error"


def test_repeated_headers_are_compared_as_ordered_lists() -> None:
    cookies = [("set-cookie", "a=1; Path=/"), ("set-cookie", "b=2; Path=/"), ("set-cookie", "c=3")]
    three = Response(302, MultiDict([("Content-Type", "text/html"), *cookies]), b"")
    rules = Rules(headers=("content-type", "set-cookie"))

    def found(other: list[tuple[str, str]]) -> list[tuple[str, str, Any, Any, str]]:
        result = compare(three, Response(302, MultiDict(other), b""), rules)
        return [(d.path, d.kind, d.primary, d.candidate, d.pattern) for d in result.differences]

    assert found([("content-type", "text/html"), *cookies]) == []
    dropped = [("content-type", "text/html"), cookies[0], cookies[2]]
    assert found(dropped) == [
        ("header:set-cookie[1]", "removed", "b=2; Path=/", None, "header:set-cookie")
    ]
    moved = [("content-type", "text/html"), cookies[1], cookies[0], cookies[2]]
    assert [d[:2] for d in found(moved)] == [
        ("header:set-cookie[0]", "added"),
        ("header:set-cookie[1]", "removed"),
    ]
    extra = [("content-type", "text/html"), *cookies, ("set-cookie", "d=4")]
    assert found(extra) == [("header:set-cookie[3]", "added", None, "d=4", "header:set-cookie")]
    # a listed header is compared on every answer, whatever the status or the body
    other = Response(500, {"content-type": "text/html", "set-cookie": "a=1; Path=/"}, b"x")
    result = compare(three, other, rules)
    assert [d.path for d in result.differences][:3] == [
        "status",
        "header:set-cookie[1]",
        "header:set-cookie[2]",
    ]


@pytest.mark.parametrize(
    ("encoding", "encode"),
    [
        ("gzip", lambda b: gzip.compress(b)),
        ("deflate", lambda b: zlib.compress(b)),
        ("deflate", lambda b: zlib.compress(b)[2:-4]),  # raw deflate
        ("br", lambda b: brotli.compress(b)),
    ],
)
def test_compressed_bodies_are_decoded_first(encoding: str, encode: Any) -> None:
    plain = json.dumps({"a": 1, "b": [1, 2]}).encode()
    other = json.dumps({"a": 2, "b": [1, 2]}).encode()
    headers = {**JSON, "content-encoding": encoding}
    assert compare(Response(200, headers, encode(plain)), answer(json.loads(plain))).match
    result = compare(Response(200, headers, encode(plain)), Response(200, headers, encode(other)))
    assert [d.path for d in result.differences] == ["$.a"]
    broken = compare(Response(200, headers, b"not compressed"), answer({}))
    assert broken.differences[0].path == "body"


def test_text_by_lines_and_binary_by_digest() -> None:
    text = {"content-type": "text/plain"}
    result = compare(Response(200, text, b"a\nb\nc\n"), Response(200, text, b"a\nB\nc\nd\n"))
    assert [(d.path, d.kind, d.primary, d.candidate) for d in result.differences] == [
        ("line:2", "changed", "b", "B"),
        ("line:4", "added", None, "d"),
    ]
    gone = compare(Response(200, text, b"a\nb\n"), Response(200, text, b"a\n"))
    assert [(d.path, d.kind) for d in gone.differences] == [("line:2", "removed")]
    binary = {"content-type": "application/octet-stream"}
    blob = compare(Response(200, binary, b"\xff\x00"), Response(200, binary, b"\xfe\x00"))
    assert blob.differences[0].path == "body" and len(blob.differences[0].primary) == 64


def test_noise_is_reported_apart() -> None:
    result = compare(
        answer({"at": 1, "v": 1, "rows": [{"at": 1}]}),
        answer({"at": 2, "v": 2, "rows": [{"at": 3}]}),
        noise=lambda pattern: pattern in ("$.at", "$.rows[*].at"),
    )
    assert [d.path for d in result.noise] == ["$.at", "$.rows[0].at"]
    assert [d.path for d in result.differences] == ["$.v"] and not result.match


def test_paths() -> None:
    assert paths.covers("$.a", ("a", "b", 1)) and not paths.matches("$.a", ("a", "b"))
    assert paths.matches("$..id", ("items", 3, "id")) and paths.matches("$..id", ("id",))
    assert paths.matches("$.items[*].id", ("items", 7, "id"))
    assert not paths.matches("$.items[2]", ("items", 3)) and paths.matches(
        "$.items[3]", ("items", 3)
    )
    assert paths.matches("$['a b'].c", ("a b", "c"))
    assert paths.render(("items", 3, "odd key", "it's")) == "$.items[3]['odd key']['it\\'s']"
    assert paths.generalise(("items", 3, "id")) == "$.items[*].id"
    for bad in ("items", "$.", "$[x]"):
        with pytest.raises(paths.PathError):
            paths.parse(bad)


def test_event_streams_are_compared_event_by_event_with_the_rules() -> None:
    from banyan.parity.bodies import parse_events
    from banyan.parity.compare import Response, Rules, compare

    sse = {"content-type": "text/event-stream"}
    first = (
        b'event: token\ndata: {"text": "Hi"}\n\n'
        b": keep-alive\n\n"
        b'event: done\nid: 7\ndata: {"answer": {"content": "Hi", "created_at": "1"}}\n\n'
    )
    second = first.replace(b'"1"', b'"2"').replace(b'"content": "Hi"', b'"content": "Ho"')
    result = compare(Response(200, sse, first), Response(200, sse, second), Rules())
    assert {(d.path, d.kind) for d in result.differences} == {
        ("$[1].data.answer.content", "changed"),
        ("$[1].data.answer.created_at", "changed"),
    }
    ignored = Rules(ignore=("$..created_at",))
    only = compare(Response(200, sse, first), Response(200, sse, second), ignored)
    assert [d.path for d in only.differences] == ["$[1].data.answer.content"]
    assert parse_events(b"data: plain\ndata: two\r\n\r\n") == [
        {"event": "message", "data": "plain\ntwo"}
    ]


def test_learned_noise_hides_only_a_changed_scalar() -> None:
    noisy = {"$.at", "header:set-cookie", "$.meta"}
    three = MultiDict([("set-cookie", "s=1"), ("set-cookie", "t=2"), ("set-cookie", "u=3")])
    primary = Response(200, MultiDict([*three.items(), *JSON.items()]), b'{"at": 1, "meta": 1}')
    two = MultiDict([("set-cookie", "s=9"), ("set-cookie", "u=3"), *JSON.items()])
    candidate = Response(200, two, b'{"meta": {"a": 1}}')
    rules = Rules(headers=("set-cookie",))
    result = compare(primary, candidate, rules, noise=lambda pattern: pattern in noisy)
    assert [(d.path, d.kind) for d in result.noise] == [("header:set-cookie[0]", "changed")]
    assert [(d.path, d.kind) for d in result.differences] == [
        ("header:set-cookie[1]", "removed"),  # a dropped cookie is never noise
        ("$.at", "removed"),  # nor a field gone
        ("$.meta", "type"),  # nor a scalar turned into an object
    ]
