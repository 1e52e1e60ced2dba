"""Tests for banyan/proxy/routes.py: the segment tree answers what a pairwise scan of the routes
would (first match in file order, first earlier route that makes a pattern dead), for any set of
routes, and its work does not grow with the number of routes."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from banyan.proxy import routes
from banyan.proxy.routes import NO_ROUTE, RouteTable, covers, parse_route

SEGMENT = st.sampled_from(["a", "b", "*"])
PATTERN = st.builds(
    lambda segs, tail: "/" + "/".join([*segs, *(["**"] if tail else [])]),
    st.lists(SEGMENT, max_size=3),
    st.booleans(),
)
PATH = st.builds(
    lambda segs, slash: "/" + "/".join(segs) + ("/" if slash else ""),
    st.lists(st.sampled_from(["a", "b", "c", ""]), max_size=4),
    st.booleans(),
)


def naive_match(pattern: str, path: str) -> bool:
    """The documented semantics, spelled out segment by segment (the regular expression the
    router compiled before the tree: one trailing '/' ignored, '*' a non-empty segment)."""
    want = parse_route(pattern)
    have = path[1:].split("/")
    if len(have) > 1 and have[-1] == "" and (not want or want[-1] != "**"):
        have = have[:-1]
    elif have == [""]:
        have = []
    for index, seg in enumerate(want):
        if seg == "**":
            return True
        if index >= len(have) or (seg == "*" and not have[index]):
            return False
        if seg != "*" and seg != have[index]:
            return False
    return len(want) == len(have)


def table_of(patterns: list[str]) -> RouteTable:
    table = RouteTable()
    for pattern in patterns:
        table.add(parse_route(pattern))
    return table


@settings(max_examples=400, deadline=None)
@given(st.lists(PATTERN, min_size=1, max_size=6), PATH)
def test_match_is_the_first_pattern_in_order_that_matches(patterns: list[str], path: str) -> None:
    expected = next((i for i, p in enumerate(patterns) if naive_match(p, path)), NO_ROUTE)
    assert table_of(patterns).match(path) == expected


@settings(max_examples=400, deadline=None)
@given(st.lists(PATTERN, min_size=1, max_size=6), PATTERN)
def test_covering_is_the_first_earlier_pattern_that_equals_or_covers(
    earlier: list[str], later: str
) -> None:
    segments = parse_route(later)
    expected = next(
        (
            i
            for i, p in enumerate(earlier)
            if parse_route(p) == segments or covers(parse_route(p), segments)
        ),
        NO_ROUTE,
    )
    assert table_of(earlier).covering(segments) == expected


def test_examples() -> None:
    table = table_of(["/api/sessions/*/ask", "/api/sessions/**", "/", "/ws/*", "/x/**"])
    assert table.match("/api/sessions/1/ask") == 0
    assert table.match("/api/sessions/1/ask/") == 0
    assert table.match("/api/sessions") == 1
    assert table.match("/") == 2 and table.match("//") == NO_ROUTE
    assert table.match("/ws/") == NO_ROUTE and table.match("/ws/a") == 3
    assert table.match("/x") == 4 and table.match("/x//y") == 4
    assert table.match("") == NO_ROUTE and table.match("api") == NO_ROUTE
    assert table.covering(("api", "sessions", "x")) == 1
    assert table.covering(("api", "sessions", "*", "ask")) == 0
    assert table.covering(("api", "*")) == NO_ROUTE


class CountingNode(routes._Node):
    """A tree node that counts how often a walk reads its literal children."""

    reads = 0

    def __getattribute__(self, name: str) -> object:
        if name == "children":
            CountingNode.reads += 1
        return object.__getattribute__(self, name)


def test_a_lookup_reads_as_few_nodes_with_ten_thousand_routes_as_with_ten(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(routes, "_Node", CountingNode)
    reads = {}
    for count in (10, 10_000):
        table = table_of([f"/api/f{i}/**" for i in range(count)])
        CountingNode.reads = 0
        assert table.match(f"/api/f{count - 1}/x") == count - 1
        assert table.covering(parse_route(f"/api/f{count - 1}/y")) == count - 1
        reads[count] = CountingNode.reads
    assert reads[10_000] == reads[10]
