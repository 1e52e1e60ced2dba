"""Tests for banyan/parity/noise.py and banyan/parity/redact.py."""

from __future__ import annotations

import itertools
import json

from banyan.parity.compare import Response, Rules, compare
from banyan.parity.noise import NoiseLearner, endpoint_key, learnable
from banyan.parity.redact import (
    REDACTED,
    redact_body,
    redact_difference,
    redact_headers,
    redact_json,
    redact_text,
    redact_url,
)

clock = itertools.count(1_700_000_000_000)


def session_answer() -> Response:
    body = {
        "id": "s1",
        "title": "Fractions",
        "updated_at": next(clock),
        "items": [{"seen": next(clock)}],
    }
    return Response(200, {"content-type": "application/json"}, json.dumps(body).encode())


def test_timestamps_are_learned_as_noise_within_twenty_samples() -> None:
    learner = NoiseLearner()
    endpoint = endpoint_key("GET", "/api/sessions/7f9c2a1e-1111-4222-8333-944455556666?x=1")
    assert endpoint == "GET /api/sessions/*"
    learned_after = None
    for sample in range(1, 21):
        learner.observe("sessions", endpoint, session_answer(), session_answer())
        if learner.is_noise("sessions", endpoint, "$.updated_at") and learned_after is None:
            learned_after = sample
    assert learned_after is not None and learned_after <= 20
    assert learner.learned("sessions") == [
        {"feature": "sessions", "endpoint": endpoint, "path": "$.items[*].seen", "count": 20},
        {"feature": "sessions", "endpoint": endpoint, "path": "$.updated_at", "count": 20},
    ]
    assert learner.learned("other") == [] and not learner.is_noise(
        "other", endpoint, "$.updated_at"
    )
    assert not learner.is_noise("sessions", endpoint, "$.title")
    primary = session_answer()
    candidate = Response(200, primary.headers, primary.body.replace(b"Fractions", b"Ratios"))
    later = session_answer()
    result = compare(later, candidate, noise=learner.predicate("sessions", endpoint))
    assert [d.path for d in result.differences] == ["$.title"]
    assert {d.pattern for d in result.noise} == {"$.updated_at", "$.items[*].seen"}
    learner.load("sessions", "GET /x", "$.a", 5)
    assert learner.is_noise("sessions", "GET /x", "$.a")
    assert learner.forget("$.updated_at", feature="other") == 0
    assert learner.forget("$.updated_at") == 1
    assert not learner.is_noise("sessions", endpoint, "$.updated_at")
    assert learner.is_noise("sessions", endpoint, "$.items[*].seen")


def listing(*titles: str, status: int = 200, **extra: object) -> Response:
    items = [{"id": f"id-{t}", "title": t} for t in titles]
    body = json.dumps({"items": items, **extra}).encode()
    return Response(status, {"content-type": "application/json"}, body)


def test_only_leaves_that_change_within_one_backend_are_noise() -> None:
    # a list that grew between the two asks (the user created an item in between): no noise
    assert learnable(listing("b", "a"), listing("c", "b", "a")) == []
    # a full page that shifted by one: elements added and removed, never "every title changed"
    assert learnable(listing("c", "b", "a"), listing("d", "c", "b")) == []
    # an element replaced in place is compared field by field
    assert learnable(listing("a", "b"), listing("a", "x")) == ["$.items[*].id", "$.items[*].title"]
    # never the status, a key that appears, a whole object or list, a text body
    assert learnable(listing("a"), listing("a", status=201)) == []
    assert learnable(listing("a"), listing("a", warning="w")) == []
    assert learnable(listing("a", meta={"n": 1}), listing("a", meta=[1])) == []
    text = {"content-type": "text/plain"}
    assert learnable(Response(200, text, b"a\nb"), Response(200, text, b"a\nc")) == []
    # a scalar changing value or type is, and so is a listed header present on both sides
    assert learnable(listing("a", at=1), listing("a", at=None)) == ["$.at"]
    dated = Response(200, {"content-type": "application/json", "date": "1"}, b"{}")
    undated = Response(200, {"content-type": "application/json", "date": "2"}, b"{}")
    assert learnable(dated, undated, Rules(headers=("content-type", "date"))) == ["header:date"]
    assert learnable(dated, listing(), Rules(headers=("date",))) == []


def test_endpoint_keys_hide_ids() -> None:
    assert endpoint_key("post", "/api/folders/123/x") == "POST /api/folders/*/x"
    assert endpoint_key("GET", "/ws/whiteboard/abcdef0123456789abcd") == "GET /ws/whiteboard/*"
    assert endpoint_key("GET", "/") == "GET /"


def test_redaction() -> None:
    jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1In0.c2ln"
    headers = redact_headers(
        {"Authorization": "Bearer x", "Cookie": "s=1", "X-Note": f"token {jwt}", "Accept": "*/*"}
    )
    assert headers == {
        "Authorization": REDACTED,
        "Cookie": REDACTED,
        "X-Note": f"token {REDACTED}",
        "Accept": "*/*",
    }
    body = {
        "email": "a@b.c",
        "password": "hunter2",
        "nested": [{"access_token": "t", "api_key": "k", "ssn": "123", "note": f"Bearer {jwt}"}],
        "card": {"number": "4111"},
    }
    clean = redact_json(body, extra=("ssn", "$.card.number"))
    assert clean == {
        "email": "a@b.c",
        "password": REDACTED,
        "nested": [
            {
                "access_token": REDACTED,
                "api_key": REDACTED,
                "ssn": REDACTED,
                "note": f"Bearer {REDACTED}",
            }
        ],
        "card": {"number": REDACTED},
    }
    assert "hunter2" not in redact_body(json.dumps(body).encode())
    assert redact_body(b"plain Bearer abc text") == f"plain Bearer {REDACTED} text"
    assert redact_body(b"x" * 50, limit=10) == "x" * 10 + "…"
    assert redact_text("nothing here") == "nothing here"


def test_redact_url_hides_secret_query_values() -> None:
    assert redact_url("/ws/tutor/1") == "/ws/tutor/1"
    assert redact_url("/ws/x?token=abc&room=r") == f"/ws/x?token={REDACTED}&room=r"
    assert redact_url("/a?Access_Token=1&api_key=2&flag") == (
        f"/a?Access_Token={REDACTED}&api_key={REDACTED}&flag"
    )
    jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1In0.sig"
    assert redact_url(f"/a?q={jwt}") == f"/a?q={REDACTED}"


def test_headers_queries_text_and_differences_share_the_body_rules() -> None:
    headers = redact_headers(
        {"X-Auth-Token": "t1", "X-Client-Secret": "s1", "X-Tenant": "acme", "X-Plan": "p"},
        extra=("x-plan",),
    )
    assert headers == {
        "X-Auth-Token": REDACTED,
        "X-Client-Secret": REDACTED,
        "X-Tenant": "acme",
        "X-Plan": REDACTED,  # a configured name
    }
    assert redact_url("/login?user=bo&password=hunter2&api-key=k") == (
        f"/login?user=bo&password={REDACTED}&api-key={REDACTED}"
    )
    assert redact_url("/x?pin=1234", extra=("pin",)) == f"/x?pin={REDACTED}"
    text = redact_text("password=hunter2 key sk-live-4f9a8b7c6d5e4f3a2b AKIAABCDEFGHIJKLMNOP")
    assert text == f"password={REDACTED} key {REDACTED} {REDACTED}"
    assert redact_text('{"api_key": "abc"}') == f'{{"api_key": "{REDACTED}"}}'


def test_differences_are_redacted_by_where_they_are() -> None:
    def stored(path: str, primary: object, candidate: object, *extra: str) -> tuple[object, ...]:
        d = {"path": path, "kind": "changed", "primary": primary, "candidate": candidate}
        out = redact_difference(d, extra)
        return out["path"], out["primary"], out["candidate"]

    assert stored("$.user.api_key", "k1", "k2") == ("$.user.api_key", REDACTED, REDACTED)
    assert stored("$.items[2].secret.v", None, "s") == ("$.items[2].secret.v", None, REDACTED)
    assert stored("$.user", {"token": "t"}, {"name": "n"}) == (
        "$.user",
        {"token": REDACTED},
        {"name": "n"},
    )
    assert stored("$.profile.ssn", "1", "2", "$.profile.ssn") == (
        "$.profile.ssn",
        REDACTED,
        REDACTED,
    )
    assert stored("$.title", "a", "sk-live-4f9a8b7c6d5e4f3a2b")[2] == REDACTED
    assert stored("header:set-cookie[1]", "a=1", None) == ("header:set-cookie[1]", REDACTED, None)
    assert stored("header:x-api-key", "k", "j")[1:] == (REDACTED, REDACTED)
    assert stored("header:etag", "a", "b")[1:] == ("a", "b")
    assert stored("line:3", "password: hunter2", "ok")[1:] == (f"password: {REDACTED}", "ok")
    assert stored("status", 200, 500)[1:] == (200, 500)


def test_noise_paths_per_endpoint_are_capped() -> None:
    learner = NoiseLearner(paths_per_endpoint=2)
    for name in ("alice", "bob", "carol"):
        first = Response(200, {"content-type": "application/json"}, json.dumps({name: 1}).encode())
        second = Response(200, {"content-type": "application/json"}, json.dumps({name: 2}).encode())
        learner.observe("f", "GET /x", first, second)
    assert set(learner.counts[("f", "GET /x")]) == {"$.alice", "$.bob"}
