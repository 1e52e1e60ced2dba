"""Tests for banyan/parity/noise.py and banyan/parity/redact.py."""

from __future__ import annotations

import itertools
import json

from banyan.parity.compare import Response, compare
from banyan.parity.noise import NoiseLearner, endpoint_key
from banyan.parity.redact import (
    REDACTED,
    redact_body,
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
        learner.observe(endpoint, session_answer(), session_answer())
        if learner.is_noise(endpoint, "$.updated_at") and learned_after is None:
            learned_after = sample
    assert learned_after is not None and learned_after <= 20
    assert dict(learner.noise_paths(endpoint)) == {"$.updated_at": 20, "$.items[*].seen": 20}
    assert not learner.is_noise(endpoint, "$.title")
    primary = session_answer()
    candidate = Response(200, primary.headers, primary.body.replace(b"Fractions", b"Ratios"))
    later = session_answer()
    result = compare(later, candidate, noise=learner.predicate(endpoint))
    assert [d.path for d in result.differences] == ["$.title"]
    assert {d.pattern for d in result.noise} == {"$.updated_at", "$.items[*].seen"}
    learner.load("GET /x", "$.a", 5)
    assert learner.is_noise("GET /x", "$.a")


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
