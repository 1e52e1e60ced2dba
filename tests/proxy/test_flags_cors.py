"""Tests for banyan/proxy/flags/cors.py (the top-level ``cors`` block) and the per-backend
``host`` key: schema and validation with the line of every mistake."""

from __future__ import annotations

import pytest

from banyan.proxy.flags import BackendSpec, CorsConfig, FlagError, parse_flags

HEAD = "version: 1\nbackends: {legacy: http://a, new: http://b}\n"  # cors starts on line 3


def cors_of(block: str) -> CorsConfig | None:
    return parse_flags(HEAD + block, "flags.yaml").cors


def test_absent_or_empty_cors_means_none() -> None:
    assert parse_flags(HEAD, "f").cors is None
    assert cors_of("cors:\n") is None
    assert cors_of("cors: null\n") is None


def test_a_full_block_is_typed_and_normalised() -> None:
    cors = cors_of(
        "cors:\n"
        "  allow_origins: ['https://App.Example.com', 'http://localhost:5173', 'capacitor://x']\n"
        "  allow_credentials: true\n"
        "  allow_headers: [Content-Type, X-Request-Id]\n"
        "  max_age: 3600\n"
    )
    assert cors == CorsConfig(
        allow_origins=("https://app.example.com", "http://localhost:5173", "capacitor://x"),
        allow_credentials=True,
        allow_headers=("content-type", "x-request-id"),
        max_age=3600,
    )


def test_defaults_and_wildcards() -> None:
    assert cors_of("cors: {allow_origins: ['*']}\n") == CorsConfig(("*",), False, (), 600)
    cors = cors_of("cors: {allow_origins: ['*'], allow_headers: ['*'], max_age: 0}\n")
    assert cors == CorsConfig(("*",), False, ("*",), 0)


CORS_ERRORS = [
    ("cors: {allow_credentials: true}\n", 3, "cors: missing 'allow_origins'"),
    ("cors: [x]\n", 3, "cors: expected a mapping, got a list"),
    ("cors: {allow_origins: []}\n", 3, "list at least one origin"),
    ("cors: {allow_origins: 'https://a'}\n", 3, "allow_origins: expected a list"),
    ("cors:\n  allow_origins: [https://a/]\n", 4, "'https://a/' is not an origin"),
    ("cors:\n  allow_origins: [https://a/app]\n", 4, "is not an origin"),
    ("cors:\n  allow_origins: ['https://a?x=1']\n", 4, "is not an origin"),
    ("cors:\n  allow_origins: ['https://a#top']\n", 4, "is not an origin"),
    ("cors:\n  allow_origins: ['https://u@a']\n", 4, "is not an origin"),
    ("cors:\n  allow_origins: [a.example.com]\n", 4, "is not an origin"),
    ("cors:\n  allow_origins: ['https://']\n", 4, "is not an origin"),
    ("cors:\n  allow_origins: ['1http://a']\n", 4, "is not an origin"),
    ("cors:\n  allow_origins: ['https://a:99999']\n", 4, "bad origin"),
    ("cors:\n  allow_origins: ['https://a', 'https://A']\n", 4, "listed twice"),
    ("cors:\n  allow_origins: ['*', 'https://a']\n", 4, "'*' must be the only entry"),
    (
        "cors:\n  allow_origins: ['*']\n  allow_credentials: true\n",
        4,
        "'*' cannot be used with allow_credentials: true",
    ),
    (
        "cors:\n  allow_origins: [https://a]\n  allow_credentials: true\n  allow_headers: ['*']\n",
        6,
        "'*' cannot be used with allow_credentials: true",
    ),
    ("cors: {allow_origins: ['*'], allow_credentials: 'yes'}\n", 3, "expected true or false"),
    ("cors:\n  allow_origins: ['*']\n  allow_headers: ['a b']\n", 5, "is not a header name"),
    ("cors:\n  allow_origins: ['*']\n  max_age: -1\n", 5, "max_age: -1 is outside [0, 86400]"),
    ("cors:\n  allow_origins: ['*']\n  max_age: 1.5\n", 5, "expected an integer"),
    ("cors:\n  allow_origins: ['*']\n  max_age: 86401\n", 5, "is outside [0, 86400]"),
    ("cors:\n  allow_origins: ['*']\n  allow_methods: [GET]\n", 5, "unknown key 'allow_methods'"),
]


@pytest.mark.parametrize(("block", "line", "reason"), CORS_ERRORS)
def test_cors_rule_points_at_the_line(block: str, line: int, reason: str) -> None:
    with pytest.raises(FlagError) as caught:
        parse_flags(HEAD + block, "flags.yaml")
    assert reason in caught.value.reason, caught.value.reason
    assert caught.value.line == line, caught.value.reason


def test_backend_host_policy() -> None:
    text = (
        "version: 1\nbackends:\n  legacy: http://a\n"
        "  new: {url: http://b:8002, host: backend, read_timeout: 3}\n"
    )
    backends = parse_flags(text, "f").backends
    assert backends["legacy"].host == "preserve"  # the default, also for the short form
    assert backends["new"] == BackendSpec("new", "http://b:8002", 2.0, 3.0, "backend")
    explicit = text.replace("host: backend", "host: preserve")
    assert parse_flags(explicit, "f").backends["new"].host == "preserve"


@pytest.mark.parametrize("value", ["upstream", "''", "true", "[backend]"])
def test_backend_host_must_be_preserve_or_backend(value: str) -> None:
    text = (
        f"version: 1\nbackends:\n  legacy: http://a\n  new:\n    url: http://b\n    host: {value}\n"
    )
    with pytest.raises(FlagError) as caught:
        parse_flags(text, "flags.yaml")
    assert caught.value.line == 6 and caught.value.reason.startswith("backends.new.host: ")
