"""Tests for banyan/proxy/routing.py: the route table, canary stickiness, cohorts, JWT subjects
and the backends' operator-only paths (404 through the proxy unless a feature names them)."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import httpx
import jwt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from banyan.proxy.flags import parse_flags
from banyan.proxy.routing import (
    BUCKETS,
    NOT_ROUTED,
    Decision,
    RouteError,
    Router,
    bucket_of,
    covers,
    parse_route,
    user_from_authorization,
)
from tests.proxy.conftest import real_backends_behind_proxy

HEAD = """\
version: 1
backends: {legacy: http://127.0.0.1:8001, new: http://127.0.0.1:8002}
features:
"""


def router(features: str, default: str = "legacy") -> Router:
    return Router(parse_flags(f"{HEAD}{features}default: {default}\n", "flags.yaml"))


TABLE = router(
    """\
  tutor:
    routes: ["/api/sessions/*/ask", "/ws/tutor/*"]
    mode: new
  sessions:
    routes: ["/api/sessions/**"]
    mode: shadow
  shadow_new:
    routes: ["/api/reports/**"]
    mode: shadow
    primary: new
  root:
    routes: ["/"]
  exact:
    routes: ["/api/x.json"]
"""
)


@pytest.mark.parametrize(
    ("path", "feature"),
    [
        ("/api/sessions/s1/ask", "tutor"),
        ("/api/sessions/s1/ask/", "tutor"),
        ("/api/sessions/s1/ask?stream=1", "tutor"),
        ("/ws/tutor/abc", "tutor"),
        ("/ws/tutor/abc/def", None),
        ("/ws/tutor/", None),
        ("/ws/tutor", None),
        ("/api/sessions", "sessions"),
        ("/api/sessions/", "sessions"),
        ("/api/sessions/s1", "sessions"),
        ("/api/sessions/s1/messages", "sessions"),
        ("/api/sessions/s1/ask/more", "sessions"),
        ("/api/sessionsX", None),
        ("/api/reports/1", "shadow_new"),
        ("/", "root"),
        ("/api/x.json", "exact"),
        ("/api/xajson", None),
        ("/healthz", None),
        ("", None),
    ],
)
def test_route_table(path: str, feature: str | None) -> None:
    found = TABLE.match(path)
    assert (found.name if found else None) == feature


def test_first_match_wins_in_file_order() -> None:
    r = router("  wide:\n    routes: ['/api/**']\n  late:\n    routes: ['/other/**']\n")
    assert r.match("/api/sessions/1/ask").name == "wide"  # type: ignore[union-attr]
    r = router("  narrow:\n    routes: ['/api/a/*']\n  wide:\n    routes: ['/api/**']\n")
    assert r.match("/api/a/1").name == "narrow"  # type: ignore[union-attr]
    assert r.match("/api/a/1/2").name == "wide"  # type: ignore[union-attr]


def test_fixed_modes_and_default() -> None:
    assert TABLE.decide("/ws/tutor/x") == Decision("tutor", "new", "new", "mode new", None)
    shadow = TABLE.decide("/api/sessions/1")
    assert (shadow.backend, shadow.mode, shadow.shadow) == ("legacy", "shadow", "new")
    assert shadow.reason == "shadow: legacy answers, new is compared"
    flipped = TABLE.decide("/api/reports/1")
    assert (flipped.backend, flipped.shadow) == ("new", "legacy")
    unmatched = TABLE.decide("/healthz")
    assert (unmatched.feature, unmatched.backend, unmatched.shadow) == ("-", "legacy", None)
    assert "no feature matches" in unmatched.reason
    assert router("", default="new").decide("/x").backend == "new"
    assert TABLE.decide("/").mode == "legacy"


def test_parse_route_and_covers() -> None:
    assert parse_route("/") == ()
    assert parse_route("/api/*/x/**") == ("api", "*", "x", "**")
    for bad in ("api", "/a//b", "/a/**/b", "/a/b*", "/a b", "/a#b"):
        with pytest.raises(RouteError):
            parse_route(bad)
    assert covers(("api", "**"), ("api",))
    assert covers(("api", "*"), ("api", "x"))
    assert not covers(("api", "*"), ("api", "**"))
    assert not covers(("api", "x"), ("api",))
    assert not covers(("api",), ("api", "x"))
    assert not covers(("api", "x"), ("api", "*"))


CANARY = """\
  exp:
    routes: ["/exp/**"]
    mode: canary
    percent: {percent}
    stick_by: {stick_by}
"""


def canary(percent: float, stick_by: str = "user", cohorts: str = "") -> Router:
    return router(CANARY.format(percent=percent, stick_by=stick_by) + cohorts)


def test_bucket_is_the_documented_hash() -> None:
    import hashlib

    expected = int.from_bytes(hashlib.sha256(b"exp:alice").digest()[:8], "big") % BUCKETS
    assert bucket_of("exp", "alice") == expected
    assert 0 <= expected < BUCKETS


def test_canary_is_sticky_and_monotonic_over_1000_users() -> None:
    users = [f"user{i}" for i in range(1000)]
    previous: set[str] = set()
    shares = {}
    for percent in (0, 1, 10, 25, 50, 90, 100):
        r = canary(percent)
        on_new = {u for u in users if r.decide("/exp/1", user=u).backend == "new"}
        again = {u for u in users if r.decide("/exp/2", user=u).backend == "new"}
        assert on_new == again  # sticky: the same user gets the same answer every time
        assert previous <= on_new  # raising percent only ever adds users
        previous = on_new
        shares[percent] = len(on_new)
    assert shares[0] == 0 and shares[100] == 1000
    assert 50 <= shares[10] <= 150 and 400 <= shares[50] <= 600


def test_canary_reason_shows_the_bucket() -> None:
    r = canary(10)
    decision = r.decide("/exp", user="alice")
    bucket = bucket_of("exp", "alice")
    arrow = "< 1000 -> new" if bucket < 1000 else ">= 1000 -> legacy"
    assert decision.reason == f"canary 10%: bucket {bucket:04d} {arrow}"
    assert decision.mode == "canary" and decision.shadow is None


def test_canary_without_a_key_stays_on_legacy() -> None:
    decision = canary(100).decide("/exp", user=None)
    assert decision.backend == "legacy" and decision.reason == "canary: no stickiness key"
    assert canary(100, "ip").decide("/exp", client_ip="").backend == "legacy"


@pytest.mark.parametrize(
    ("stick_by", "kwargs"),
    [
        ("header:X-Tenant", {"headers": {"X-Tenant": "t1"}}),
        ("header:X-Tenant", {"headers": {"x-tenant": "t1"}}),
        ("header:x-tenant", {"headers": {"X-TENANT": "t1"}}),
        ("cookie:tenant", {"cookies": {"tenant": "t1"}}),
        ("ip", {"client_ip": "t1"}),
    ],
)
def test_stick_by_uses_the_named_key(stick_by: str, kwargs: dict[str, object]) -> None:
    r = canary(37.5, stick_by)
    decision = r.decide("/exp", user="someone-else", **kwargs)  # type: ignore[arg-type]
    bucket = bucket_of("exp", "t1")
    assert f"bucket {bucket:04d}" in decision.reason
    assert decision.backend == ("new" if bucket < 3750 else "legacy")
    # the user is not the key here: without the header/cookie/ip there is no key
    assert r.decide("/exp", user="someone-else").reason == "canary: no stickiness key"


def test_stick_by_ip_is_sticky_per_address() -> None:
    r = canary(50, "ip")
    backends = {r.decide("/exp", client_ip=f"10.0.0.{i}").backend for i in range(60)}
    assert backends == {"legacy", "new"}
    for i in range(60):
        ip = f"10.0.0.{i}"
        assert r.decide("/exp", client_ip=ip) == r.decide("/exp/x", client_ip=ip)


def test_cohorts_pin_users_before_the_percentage() -> None:
    cohorts = '    cohorts: {new: ["user:alice", "ip:10.1.1.1", "raw-key"], legacy: ["user:bob"]}\n'
    r = canary(0, cohorts=cohorts)
    alice = r.decide("/exp", user="alice")
    assert alice.backend == "new" and alice.reason == "canary: user:alice is in cohort new"
    assert r.decide("/exp", user="carol", client_ip="10.1.1.1").backend == "new"
    assert r.decide("/exp", user="raw-key").backend == "new"
    assert r.decide("/exp", user="carol").backend == "legacy"
    r = canary(100, cohorts=cohorts)
    bob = r.decide("/exp", user="bob")
    assert bob.backend == "legacy" and "cohort legacy" in bob.reason
    # a legacy pin wins over a new pin that matches the same caller by another identifier
    assert r.decide("/exp", user="bob", client_ip="10.1.1.1").backend == "legacy"


def test_cohorts_match_header_values_with_their_kind() -> None:
    r = canary(0, "header:X-Tenant", '    cohorts: {new: ["header:acme"]}\n')
    assert r.decide("/exp", headers={"X-Tenant": "acme"}).backend == "new"
    assert r.decide("/exp", headers={"X-Tenant": "other"}).backend == "legacy"


def token(claims: dict[str, object]) -> str:
    return jwt.encode(claims, "an-unknown-secret-of-thirty-two-bytes!", algorithm="HS256")


def test_user_from_authorization_reads_sub_without_verifying() -> None:
    good = token({"sub": "alice", "exp": 1})  # expired and signed with an unknown key: still read
    assert user_from_authorization(f"Bearer {good}", None) == "alice"
    assert user_from_authorization(f"bearer   {good} ", None) == "alice"
    assert user_from_authorization(None, good) == "alice"
    assert user_from_authorization("Basic dXNlcjpwYXNz", good) == "alice"
    assert user_from_authorization(f"Bearer {token({'sub': 42})}", None) == "42"


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "Bearer",
        "Bearer not-a-jwt",
        "Bearer a.b.c",
        "Bearer a..c",
        "Bearer a.!!!!.c",
        "Bearer " + "x." + base64.urlsafe_b64encode(b"[1, 2]").decode() + ".y",
        "Bearer "
        + "x."
        + base64.urlsafe_b64encode(json.dumps({"sub": True}).encode()).decode()
        + ".y",
        "Bearer "
        + "x."
        + base64.urlsafe_b64encode(json.dumps({"sub": ""}).encode()).decode()
        + ".y",
        "Bearer " + "x." + base64.urlsafe_b64encode(b"\xff\xfe").decode() + ".y",
        "Bearer " + "x" * 9000,
        # claims nested 5,000 deep (json.loads raises RecursionError), and claims far too large
        "Bearer x." + base64.urlsafe_b64encode(b"[" * 5000).decode() + ".y",
        "Bearer x." + base64.urlsafe_b64encode(b'{"sub": "' + b"a" * 9000 + b'"}').decode() + ".y",
    ],
)
def test_user_from_authorization_never_raises(header: str | None) -> None:
    assert user_from_authorization(header, None) is None


SEGMENT = st.sampled_from(["a", "b", "*"])
PATTERN = st.builds(
    lambda segs, tail: "/" + "/".join([*segs, *(["**"] if tail else [])]),
    st.lists(SEGMENT, max_size=3),
    st.booleans(),
)
PATH = st.builds(
    lambda segs, slash: "/" + "/".join(segs) + ("/" if slash and segs else ""),
    st.lists(st.sampled_from(["a", "b", "c"]), max_size=4),
    st.booleans(),
)


def naive_match(pattern: str, path: str) -> bool:
    """The documented semantics, spelled out segment by segment."""
    want = parse_route(pattern)
    if path.endswith("/") and path != "/":
        path = path[:-1]
    have = [s for s in path.split("/")[1:]] if path != "/" else []
    for index, seg in enumerate(want):
        if seg == "**":
            return True
        if index >= len(have) or (seg != "*" and seg != have[index]):
            return False
    return len(want) == len(have)


@settings(max_examples=300, deadline=None)
@given(PATTERN, PATH)
def test_compiled_routes_follow_the_documented_semantics(pattern: str, path: str) -> None:
    r = router(f"  f:\n    routes: ['{pattern}']\n")
    assert (r.match(path) is not None) == naive_match(pattern, path)


@settings(max_examples=300, deadline=None)
@given(PATTERN, PATTERN, st.lists(PATH, min_size=1, max_size=8))
def test_covers_means_every_path_of_the_later_route_matches_the_earlier(
    earlier: str, later: str, paths: list[str]
) -> None:
    if covers(parse_route(earlier), parse_route(later)):
        for path in paths:
            if naive_match(later, path):
                assert naive_match(earlier, path)


def test_operator_paths_are_not_routed_by_the_default_or_a_wildcard() -> None:
    r = router("  api:\n    routes: ['/api/**']\n  everything:\n    routes: ['/**']\n")
    for path in ("/metrics", "/metrics/", "/metrics?format=x", "/metrics/extra"):
        assert r.decide(path) is NOT_ROUTED and r.match(path) is None
    assert NOT_ROUTED.mode == "blocked" and NOT_ROUTED.backend == "-"
    assert router("").decide("/metrics") is NOT_ROUTED  # the default route alone
    assert r.decide("/metricsx").feature == "everything"  # only the whole segment is reserved
    assert r.decide("/api/metrics").feature == "api"


def test_a_feature_that_names_an_operator_path_routes_it() -> None:
    r = router("  ops:\n    routes: ['/metrics']\n    mode: new\n  rest:\n    routes: ['/**']\n")
    assert r.decide("/metrics") == Decision("ops", "new", "new", "mode new", None)
    assert r.decide("/metrics/").feature == "ops"
    assert r.decide("/metrics/x") is NOT_ROUTED  # '/metrics' does not name what is below it
    below = router("  ops:\n    routes: ['/metrics/**']\n")
    assert below.decide("/metrics/x").feature == "ops" and below.decide("/metrics").feature == "ops"


async def test_a_backends_metrics_is_404_json_through_the_proxy(tmp_path: Path) -> None:
    async with real_backends_behind_proxy(tmp_path, OPS_FLAGS, ops="") as urls:
        async with httpx.AsyncClient(timeout=10) as http:
            assert (await http.get(urls["legacy"] + "/metrics")).status_code == 200
            for target in ("/metrics", "/metrics/", "/%6detrics", "/metrics?x=1"):
                answer = await http.get(urls["proxy"] + target)
                assert answer.status_code == 404, target
                assert answer.json()["error"]["code"] == "not_found"
                assert answer.headers["X-Banyan-Feature"] == "-"
                assert "banyan_" not in answer.text
            assert (await http.get(urls["proxy"] + "/api/auth/me")).status_code == 401


async def test_a_listed_metrics_route_reaches_the_backend(tmp_path: Path) -> None:
    listed = "  ops:\n    routes: ['/metrics']\n"
    async with real_backends_behind_proxy(tmp_path, OPS_FLAGS, ops=listed) as urls:
        async with httpx.AsyncClient(timeout=10) as http:
            answer = await http.get(urls["proxy"] + "/metrics")
    assert answer.status_code == 200 and answer.headers["X-Banyan-Feature"] == "ops"
    assert answer.headers["content-type"].startswith("text/plain")


OPS_FLAGS = """\
version: 1
backends: {{legacy: "{legacy}", new: "{new}"}}
features:
{ops}  api:
    routes: ["/api/**"]
default: legacy
"""
