"""Tests for banyan/proxy/flags/parse.py (and model.py): parsing, defaults and every validation
rule with its line number; big files; damaged files never raise anything but FlagError."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from banyan.proxy.flag_faults import flags_text, many_features
from banyan.proxy.flags import (
    BackendSpec,
    FlagError,
    FlagSet,
    GuardConfig,
    ParityConfig,
    is_jsonpath,
    load_flags,
    parse_flags,
)

REPO_FLAGS = Path(__file__).resolve().parents[2] / "flags.yaml"

HEAD = """\
version: 1
backends:
  legacy: http://127.0.0.1:8001
  new: http://127.0.0.1:8002
features:
"""  # features start on line 6


def doc(features: str, *, head: str = HEAD, tail: str = "default: legacy\n") -> str:
    return head + features + tail


FULL = """\
version: 1
backends:
  legacy: http://127.0.0.1:8001/
  new: {url: https://new.internal:8443, connect_timeout: 1.5, read_timeout: 10}
features:
  sessions:
    routes: ["/api/sessions/**", "/ws/tutor/*"]
    mode: shadow
    primary: new
    percent: 12.5
    stick_by: header:X-Tenant
    cohorts: {new: ["user:alice"], legacy: ["ip:10.0.0.1"]}
    writes: mirror
    websocket: reconnect
    fallback: false
    parity: {ignore: ["$.created_at", "$..updated_at"], unordered: ["$.items[*]"],
             mask: ["$.items[0].id"], headers: [Content-Type, ETag], tolerance: 0.01,
             sample: 50, noise_sample: 5, max_body_bytes: 2048, shadow_timeout: 2,
             redact: ["$.user.ssn", ssn]}
    guards: {max_mismatch_rate: 0.02, max_error_rate: 0.01, max_latency_ratio: 1.5, window: 20}
  bare:
    routes: [/api/bare]
default: new
"""


def test_full_file_parses_into_the_typed_model() -> None:
    flags = parse_flags(FULL, "f.yaml")
    assert isinstance(flags, FlagSet)
    assert flags.version == 1 and flags.default == "new" and flags.source == "f.yaml"
    assert flags.digest == hashlib.sha256(FULL.encode()).hexdigest()
    assert flags.backends["legacy"] == BackendSpec("legacy", "http://127.0.0.1:8001")
    assert flags.backends["new"] == BackendSpec("new", "https://new.internal:8443", 1.5, 10.0)
    sessions, bare = flags.features
    assert sessions.name == "sessions" and sessions.line == 6
    assert sessions.routes == ("/api/sessions/**", "/ws/tutor/*")
    assert (sessions.mode, sessions.primary, sessions.percent) == ("shadow", "new", 12.5)
    assert sessions.stick_by == "header:X-Tenant"
    assert sessions.cohorts == {"new": ("user:alice",), "legacy": ("ip:10.0.0.1",)}
    assert (sessions.writes, sessions.websocket, sessions.fallback) == (
        "mirror",
        "reconnect",
        False,
    )
    assert sessions.parity == ParityConfig(
        ignore=("$.created_at", "$..updated_at"),
        unordered=("$.items[*]",),
        mask=("$.items[0].id",),
        headers=("content-type", "etag"),
        tolerance=0.01,
        sample=50.0,
        noise_sample=5.0,
        max_body_bytes=2048,
        shadow_timeout=2.0,
        redact=("$.user.ssn", "ssn"),
    )
    assert sessions.guards == GuardConfig(0.02, 0.01, 1.5, 20)
    assert bare.line == 21 and bare.mode == "legacy" and bare.parity == ParityConfig()
    assert bare.guards == GuardConfig() and bare.cohorts == {} and bare.fallback is True
    assert flags.feature("bare") is bare and flags.feature("nope") is None


def test_defaults_and_empty_features() -> None:
    flags = parse_flags("version: 1\nbackends: {legacy: http://a, new: http://b}\n", "f")
    assert flags.features == () and flags.default == "legacy"
    flags = parse_flags("version: 1\nbackends: {legacy: http://a, new: http://b}\nfeatures:\n", "f")
    assert flags.features == ()


def test_guard_rates_may_be_switched_off_with_null() -> None:
    text = doc("  a:\n    routes: [/a]\n    guards: {max_error_rate: null, window: 1}\n")
    assert parse_flags(text, "f").features[0].guards == GuardConfig(None, None, None, 1)


def test_cohort_side_may_be_empty() -> None:
    text = doc("  a:\n    routes: [/a]\n    cohorts: {new: , legacy: [x]}\n")
    assert parse_flags(text, "f").features[0].cohorts == {"new": (), "legacy": ("x",)}


def test_bytes_and_text_give_the_same_digest(tmp_path: Path) -> None:
    path = tmp_path / "flags.yaml"
    path.write_bytes(FULL.encode())
    assert load_flags(path).digest == parse_flags(FULL.encode(), "x").digest


def test_the_repository_flag_file_is_valid() -> None:
    flags = load_flags(REPO_FLAGS)
    names = [f.name for f in flags.features]
    assert names[0] == "tutor" and names.index("tutor") < names.index("sessions")
    assert set(names) >= {"auth", "folders", "sessions", "whiteboard", "agents", "documents"}
    assert set(names) >= {"quizzes", "jobs", "analytics", "live", "tutor"}
    assert all(f.mode == "legacy" for f in flags.features)
    assert flags.backends["legacy"].url == "http://127.0.0.1:8001"
    assert flags.backends["new"].url == "http://127.0.0.1:8002"


def test_error_string_is_file_line_reason() -> None:
    error = FlagError("flags.yaml", 7, "bad")
    assert str(error) == "flags.yaml:7: bad"
    assert (error.file, error.line, error.reason) == ("flags.yaml", 7, "bad")


@pytest.mark.parametrize(
    ("path", "ok"),
    [
        ("$", True),
        ("$.a", True),
        ("$.a.b", True),
        ("$..a", True),
        ("$.items[*].id", True),
        ("$.items[3]", True),
        ("$[0]", True),
        ("$['odd name'].x", True),
        ("$..['it''s']", False),
        ("$..['a b']", True),
        ("$['a\\'b']", True),
        ("$['unterminated]", False),
        ("$.['a']", False),
        ("a.b", False),
        ("$.", False),
        ("$.a[", False),
        ("$.a[x]", False),
        ("$...a", False),
        ("$.a b", False),
    ],
)
def test_jsonpath_subset(path: str, ok: bool) -> None:
    assert is_jsonpath(path) is ok


FEATURE_ERRORS = [
    # (features block starting at line 6, bad line, reason fragment)
    ("  a:\n    routes: [/a]\n    mode: shadw\n", 8, "'shadw' is not one of legacy, shadow"),
    ("  a:\n    routes: [/a]\n    colour: red\n", 8, "features.a: unknown key 'colour'"),
    ("  a:\n    mode: new\n", 6, "features.a: missing 'routes'"),
    ("  a:\n    routes: []\n", 7, "list at least one route"),
    ("  a:\n    routes: /a\n", 7, "expected a list"),
    ("  a:\n    routes: [5]\n", 7, "expected a non-empty string"),
    ("  a:\n    routes: [api/x]\n", 7, "must start with '/'"),
    ("  a:\n    routes: [/api//x]\n", 7, "empty segment"),
    ("  a:\n    routes: [/api/x/]\n", 7, "empty segment"),
    ("  a:\n    routes: ['/api/**/x']\n", 7, "'**' is only allowed as the last segment"),
    ("  a:\n    routes: ['/api/x*']\n", 7, "a wildcard must be a whole segment"),
    ("  a:\n    routes: ['/api/x?y=1']\n", 7, "must not contain"),
    ("  a:\n    routes:\n      - /a\n      - /b\n      - /a\n", 10, "'/a' is already listed by a"),
    ("  a:\n    routes: ['/api/**']\n  b:\n    routes: [/api/x]\n", 9, "can never match"),
    ("  a:\n    routes: ['/api/*']\n  b:\n    routes: [/api/x]\n", 9, "'/api/*' of a (line 7)"),
    ("  a:\n    routes: ['/**']\n  b:\n    routes: [/]\n", 9, "can never match"),
    ("  a:\n    routes: [/a]\n  a:\n    routes: [/b]\n", 8, "duplicate key 'a' (first at line 6)"),
    ("  a:\n    routes: [/a]\n    mode: new\n    mode: legacy\n", 9, "duplicate key 'mode'"),
    ("  'bad name':\n    routes: [/a]\n", 6, "feature names use"),
    ("  a: [/a]\n", 6, "features.a: expected a mapping, got a list"),
    ("  a:\n    routes: [/a]\n    primary: both\n", 8, "'both' is not one of legacy, new"),
    ("  a:\n    routes: [/a]\n    percent: 101\n", 8, "101 is outside [0, 100]"),
    ("  a:\n    routes: [/a]\n    percent: -1\n", 8, "is outside [0, 100]"),
    ("  a:\n    routes: [/a]\n    percent: ten\n", 8, "expected a number, got str 'ten'"),
    ("  a:\n    routes: [/a]\n    percent: true\n", 8, "expected a number"),
    ("  a:\n    routes: [/a]\n    percent: .nan\n", 8, "expected a number"),
    ("  a:\n    routes: [/a]\n    stick_by: session\n", 8, "must be user, ip, header:NAME"),
    ("  a:\n    routes: [/a]\n    stick_by: 'header:'\n", 8, "must be user, ip, header:NAME"),
    ("  a:\n    routes: [/a]\n    stick_by: 'cookie:a b'\n", 8, "cookie:NAME"),
    ("  a:\n    routes: [/a]\n    cohorts: {beta: [x]}\n", 8, "unknown key 'beta'"),
    ("  a:\n    routes: [/a]\n    cohorts: {new: x}\n", 8, "cohorts.new: expected a list"),
    (
        "  a:\n    routes: [/a]\n    cohorts:\n      new: [u]\n      legacy: [v, u]\n",
        10,
        "'u' is listed in both new and legacy",
    ),
    ("  a:\n    routes: [/a]\n    writes: sometimes\n", 8, "not one of skip, mirror, always"),
    ("  a:\n    routes: [/a]\n    websocket: drop\n", 8, "not one of keep, reconnect"),
    ("  a:\n    routes: [/a]\n    fallback: 'yes'\n", 8, "expected true or false"),
    ("  a:\n    routes: [/a]\n    mode: [new]\n", 8, "expected a single value, got a list"),
    ("  a:\n    routes: [/a]\n    mode:\n", 8, "is not one of"),
    ("  a:\n    routes: [/a]\n    fallback:\n", 8, "expected true or false, got nothing"),
    ("  a:\n    routes: [/a]\n    percent: {a: 1}\n", 8, "expected a single value, got a mapping"),
    ("  a:\n    routes: [/a]\n    parity: {sample: 150}\n", 8, "parity.sample: 150"),
    ("  a:\n    routes: [/a]\n    parity: {noise_sample: -5}\n", 8, "noise_sample: -5 is outside"),
    ("  a:\n    routes: [/a]\n    parity:\n      ignore: [created_at]\n", 9, "not a JSONPath"),
    ("  a:\n    routes: [/a]\n    parity: {redact: ['a b']}\n", 8, "not a JSONPath"),
    ("  a:\n    routes: [/a]\n    parity:\n      extra: 1\n", 9, "parity: unknown key 'extra'"),
    ("  a:\n    routes: [/a]\n    parity: {headers: ['a b']}\n", 8, "is not a header name"),
    ("  a:\n    routes: [/a]\n    parity: {tolerance: -0.1}\n", 8, "tolerance: -0.1 is outside"),
    ("  a:\n    routes: [/a]\n    parity: {max_body_bytes: 1.5}\n", 8, "expected an integer"),
    ("  a:\n    routes: [/a]\n    parity: {shadow_timeout: 0}\n", 8, "0 is outside (0, inf)"),
    ("  a:\n    routes: [/a]\n    parity: []\n", 8, "parity: expected a mapping"),
    ("  a:\n    routes: [/a]\n    guards: {max_mismatch_rate: 1.5}\n", 8, "1.5 is outside [0, 1]"),
    ("  a:\n    routes: [/a]\n    guards: {max_error_rate: -0.1}\n", 8, "is outside [0, 1]"),
    ("  a:\n    routes: [/a]\n    guards: {max_latency_ratio: 0}\n", 8, "is outside (0, inf)"),
    ("  a:\n    routes: [/a]\n    guards: {window: 0}\n", 8, "guards.window: 0 is outside [1"),
    ("  a:\n    routes: [/a]\n    guards: {window: 2.5}\n", 8, "expected an integer"),
    ("  a:\n    routes: [/a]\n    guards: {cooldown: 2}\n", 8, "unknown key 'cooldown'"),
    ("  base: &b {routes: [/a]}\n  c:\n    <<: *b\n", 8, "merge keys"),
    ("  a:\n    routes: [/a]\n    1: x\n", 8, "keys must be strings"),
]


@pytest.mark.parametrize(("features", "line", "reason"), FEATURE_ERRORS)
def test_feature_rule_points_at_the_line(features: str, line: int, reason: str) -> None:
    with pytest.raises(FlagError) as caught:
        parse_flags(doc(features), "flags.yaml")
    assert caught.value.file == "flags.yaml"
    assert reason in caught.value.reason
    assert caught.value.line == line, caught.value.reason


FILE_ERRORS = [
    ("", 1, "the file is empty"),
    ("version: 1\nbackends: {legacy: 'http://a'\n", 3, "YAML syntax error"),
    ("version: 1\n  bad: indent\n", 2, "YAML syntax error"),
    ("- a\n- b\n", 1, "file: expected a mapping"),
    ("backends: {legacy: http://a, new: http://b}\n", 1, "missing 'version: 1'"),
    ("version: 2\nbackends: {legacy: http://a, new: http://b}\n", 1, "only version 1"),
    ("version: true\nbackends: {legacy: http://a, new: http://b}\n", 1, "only version 1"),
    ("version: 1\n", 1, "missing 'backends'"),
    ("version: 1\nbackends: {legacy: http://a}\n", 2, "missing the 'new' backend"),
    ("version: 1\nbackends:\n  new: http://a\n", 2, "missing the 'legacy' backend"),
    (
        "version: 1\nbackends:\n  legacy: http://a\n  new: http://b\n  x: http://c\n",
        5,
        "unknown backend 'x'",
    ),
    (
        "version: 1\nbackends:\n  legacy: ftp://a\n  new: http://b\n",
        3,
        "must be http:// or https://",
    ),
    ("version: 1\nbackends:\n  legacy: http://\n  new: http://b\n", 3, "with a host"),
    ("version: 1\nbackends:\n  legacy: 'http://a:99999'\n  new: http://b\n", 3, "bad URL"),
    ("version: 1\nbackends:\n  legacy: 'http://a/?x=1'\n  new: http://b\n", 3, "must not carry"),
    ("version: 1\nbackends:\n  legacy: 8001\n  new: http://b\n", 3, "expected a non-empty string"),
    (
        "version: 1\nbackends:\n  legacy: http://a\n"
        "  new:\n    url: http://b\n    read_timeout: -1\n",
        6,
        "backends.new.read_timeout: -1 is outside (0, inf)",
    ),
    (
        "version: 1\nbackends:\n  legacy: http://a\n  new:\n    connect_timeout: 1\n",
        5,
        "backends.new: missing 'url'",
    ),
    (
        "version: 1\nbackends:\n  legacy: http://a\n  new: {url: http://b, retries: 3}\n",
        4,
        "unknown key 'retries'",
    ),
    (
        "version: 1\nbackends: {legacy: http://a, new: http://b}\nextra: 1\n",
        3,
        "unknown key 'extra'",
    ),
    (
        "version: 1\nbackends: {legacy: http://a, new: http://b}\ndefault: shadow\n",
        3,
        "'shadow' is not one of legacy, new",
    ),
    ("version: 1\nversion: 1\n", 2, "duplicate key 'version'"),
    (
        "version: 1\nbackends: {legacy: http://a, new: http://b}\nfeatures: [a]\n",
        3,
        "expected a mapping",
    ),
]


@pytest.mark.parametrize(("text", "line", "reason"), FILE_ERRORS)
def test_file_rule_points_at_the_line(text: str, line: int, reason: str) -> None:
    with pytest.raises(FlagError) as caught:
        parse_flags(text, "flags.yaml")
    assert reason in caught.value.reason
    assert caught.value.line == line, caught.value.reason


def test_not_utf8_names_the_line() -> None:
    data = b"version: 1\n# caf\xe9\n"
    with pytest.raises(FlagError) as caught:
        parse_flags(data, "f")
    assert caught.value.line == 2 and "UTF-8" in caught.value.reason


def test_control_characters_name_the_line() -> None:
    with pytest.raises(FlagError) as caught:
        parse_flags("version: 1\nbackends:\n  legacy: http://a\x07\n", "f")
    assert caught.value.line == 3 and "special characters are not allowed" in caught.value.reason


def test_unreadable_file_is_a_flag_error(tmp_path: Path) -> None:
    with pytest.raises(FlagError) as caught:
        load_flags(tmp_path / "missing.yaml")
    assert caught.value.line == 0 and "cannot read" in caught.value.reason


def test_routes_that_only_look_alike_are_accepted() -> None:
    features = (
        "  tutor:\n    routes: ['/api/sessions/*/ask', '/ws/tutor/*']\n"
        "  sessions:\n    routes: ['/api/sessions/**', '/ws/**']\n"
        "  other:\n    routes: ['/api/x/*', '/api/x']\n"
    )
    flags = parse_flags(doc(features), "f")
    assert [f.name for f in flags.features] == ["tutor", "sessions", "other"]


def test_a_later_broader_route_is_fine_but_a_later_narrower_one_is_not() -> None:
    parse_flags(doc("  a:\n    routes: [/api/x]\n  b:\n    routes: ['/api/**']\n"), "f")
    with pytest.raises(FlagError, match="can never match"):
        parse_flags(doc("  a:\n    routes: ['/api/*/x']\n  b:\n    routes: ['/api/y/x']\n"), "f")


def test_ten_thousand_features_parse_with_their_routes_in_order() -> None:
    flags = parse_flags(flags_text("http://a", "http://b", many_features(10_000)), "f")
    assert len(flags.features) == 10_000
    assert flags.features[-1].routes == ("/api/f9999/**",)
    assert flags.feature("f4321") is flags.features[4321]


def test_a_dead_route_far_down_a_big_file_is_still_found() -> None:
    features = many_features(5_000) + '  late:\n    routes: ["/api/f17/x/y"]\n'
    with pytest.raises(FlagError) as caught:
        parse_flags(flags_text("http://a", "http://b", features), "f")
    assert caught.value.line == 5 + 2 * 5_000 + 2
    assert "the earlier route '/api/f17/**' of f17 (line 41)" in caught.value.reason


MUTATIONS = st.lists(
    st.tuples(st.integers(0, len(FULL)), st.integers(0, 8), st.text(max_size=6)), max_size=4
)


@settings(max_examples=300, deadline=None)
@given(MUTATIONS)
def test_any_damage_to_a_good_file_is_a_flag_error_or_a_flag_set(
    edits: list[tuple[int, int, str]],
) -> None:
    text = FULL
    for at, cut, insert in edits:
        text = text[:at] + insert + text[at + cut :]
    try:
        parse_flags(text, "f")
    except FlagError as exc:
        assert 0 <= exc.line <= text.count("\n") + 2, exc


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_any_bytes_are_a_flag_error_or_a_flag_set(data: bytes) -> None:
    try:
        parse_flags(data, "f")
    except FlagError as exc:
        assert str(exc).startswith("f:")


def test_every_name_the_single_module_had_is_still_importable() -> None:
    import banyan.proxy.flags as package

    names = (
        "Mode MODES WritesPolicy WebSocketPolicy BACKEND_NAMES FEATURE_KEYS emit BackendSpec "
        "ParityConfig GuardConfig Feature FlagSet FlagError is_jsonpath parse_flags load_flags "
        "Subscriber POLL_INTERVAL WATCH_DEBOUNCE_MS FlagStore Router RouteError covers parse_route"
    )
    missing = [name for name in names.split() if not hasattr(package, name)]
    assert missing == []
