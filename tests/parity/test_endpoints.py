"""Tests for banyan/parity/endpoints.py: ids collapse to {id}; a feature's endpoints are capped."""

from __future__ import annotations

import pytest

from banyan.parity.endpoints import CACHED, OTHER, EndpointCap, endpoint_of, looks_like_id


@pytest.mark.parametrize(
    "segment",
    [
        "7f9c2a1e-1111-4222-8333-944455556666",
        "7f9c2a1e111142228333944455556666",
        "12345",
        "-3.5",
        "deadbeefcafe",
        "SGVsbG8sIGJhbnlhbiE=",
        "aZbYcXdWeV",
        "Ab12",
        "bob@example.com",
        "a%20b",
        "x" * 33,
    ],
)
def test_values_are_ids(segment: str) -> None:
    assert looks_like_id(segment)


@pytest.mark.parametrize(
    "segment", ["api", "sessions", "read-all", "robots.txt", "_proxy", "readAll", "v1", "base64"]
)
def test_route_words_are_kept(segment: str) -> None:
    assert not looks_like_id(segment)


def test_endpoints_collapse_ids_and_drop_the_query() -> None:
    assert endpoint_of("get", "/api/sessions/12/messages?x=1") == "GET /api/sessions/{id}/messages"
    assert endpoint_of("POST", "/") == "POST /"


def test_a_feature_has_at_most_cap_endpoints_then_other() -> None:
    cap = EndpointCap(cap=3)
    cap.load([("a", "GET /x"), ("a", OTHER), ("b", "GET /y")])
    assert cap.key("a", "GET", "/x") == "GET /x"
    assert cap.key("a", "GET", "/quiet-otter") == "GET /quiet-otter"
    assert cap.key("a", "GET", "/brave-heron") == "GET /brave-heron"
    assert cap.key("a", "GET", "/sleepy-lynx") == OTHER  # the fourth distinct one
    assert cap.key("a", "GET", "/quiet-otter") == "GET /quiet-otter"  # known ones keep theirs
    assert cap.key("b", "GET", "/sleepy-lynx") == "GET /sleepy-lynx"  # per feature
    assert cap.known["a"] == {"GET /x", "GET /quiet-otter", "GET /brave-heron"}


def test_remembered_endpoints_still_count_against_each_features_cap() -> None:
    cap = EndpointCap(cap=1)
    assert cap.key("a", "GET", "/x/12") == "GET /x/{id}"
    assert cap.key("a", "GET", "/y") == OTHER
    assert cap.key("b", "GET", "/y") == "GET /y"  # the same path, remembered: b's own cap
    cap.clear("a")
    assert cap.key("a", "GET", "/y") == "GET /y"  # a cleared cap counts it again
    assert cap.key("a", "get", "/x/12") == OTHER  # method as sent: upper-cased all the same


def test_the_remembered_endpoints_are_bounded() -> None:
    cap = EndpointCap(cap=10)
    for n in range(CACHED + 5):
        assert cap.key("a", "GET", f"/s/{n}") == "GET /s/{id}"
    assert 0 < len(cap._endpoints) <= CACHED
