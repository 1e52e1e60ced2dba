"""Tests for banyan/backends/common/jsonbody.py: the contract's rules for client JSON."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from banyan.backends.common import jsonbody
from banyan.backends.common.errors import ApiError, InvalidJson, ValidationError

NOT_JSON = "request body is not valid JSON"


def refusal(data: bytes | str, **kwargs: Any) -> tuple[str, str]:
    with pytest.raises(ApiError) as caught:
        jsonbody.loads(data, **kwargs)
    return caught.value.code, caught.value.message


def nested(levels: int, open_: str = "[", close: str = "]") -> str:
    return open_ * levels + close * levels


def test_ordinary_bodies_parse() -> None:
    body = {"name": "x", "n": [1, 2.5, None, True], "deep": {"a": {"b": "ü 😀"}}}
    assert jsonbody.loads(json.dumps(body).encode()) == body
    assert jsonbody.loads(json.dumps(body)) == body  # socket frames arrive as text


@pytest.mark.parametrize(
    ("levels", "accepted"), [(1, True), (64, True), (65, False), (100_000, False)]
)
def test_nesting_is_bounded_at_64_levels(levels: int, accepted: bool) -> None:
    for text in (nested(levels), '{"a":' * (levels - 1) + "{}" + "}" * (levels - 1)):
        if accepted:
            jsonbody.loads(text.encode())
        else:
            assert refusal(text.encode()) == (
                "invalid_json",
                f"{NOT_JSON}: nested deeper than 64 levels",
            )


def test_unterminated_and_mixed_deep_input_is_refused_before_parsing() -> None:
    assert refusal(b"[" * 100_000)[1].endswith("nested deeper than 64 levels")
    assert refusal(b'{"a":' * 100_000)[1].endswith("nested deeper than 64 levels")
    assert refusal(b"[{" * 40)[1].endswith("nested deeper than 64 levels")


def test_brackets_inside_strings_do_not_count() -> None:
    text = json.dumps({"s": "[" * 500 + '\\"{' * 100, "t": ["]" * 300]})
    assert jsonbody.loads(text.encode())["s"].startswith("[[[")


def test_escapes_decide_where_strings_end() -> None:
    backslash_then_quote = b'{"s": "\\\\", "t": ' + nested(64).encode() + b"}"  # "\\" ends it
    assert refusal(backslash_then_quote)[1].endswith("nested deeper than 64 levels")
    quote_inside = b'{"s": "\\"' + b"[" * 70 + b'", "t": []}'  # \" does not end it
    assert jsonbody.loads(quote_inside)["s"] == '"' + "[" * 70


def test_the_depth_scan_is_linear_on_escaped_quotes() -> None:
    # a naive string regex retries at every quote here (quadratic); this must come back at once
    hostile = b'["' + b'\\"' * 200_000 + b"[" * 70
    assert jsonbody.nesting_depth(hostile) == 1
    assert refusal(hostile) == ("invalid_json", NOT_JSON)


@pytest.mark.parametrize(
    "raw",
    [b"{nope", b'{"a": NaN}', b"[Infinity]", b"-Infinity", b'{"a": "\xff"}', b"\xef\xbb\xbf{}"],
)
def test_malformed_json_invalid_utf8_and_constants_are_invalid_json(raw: bytes) -> None:
    assert refusal(raw) == ("invalid_json", NOT_JSON)


@pytest.mark.parametrize(
    "raw", [b'"\\ud800"', b'{"k": "a\\udfffb"}', b'{"\\uD83D": 1}', b'["ok", ["\\udc00"]]']
)
def test_lone_surrogates_are_invalid_json(raw: bytes) -> None:
    assert refusal(raw) == ("invalid_json", f"{NOT_JSON}: a string holds a lone surrogate")


def test_a_surrogate_pair_is_one_character() -> None:
    assert jsonbody.loads(b'"\\ud83d\\ude00"') == "\U0001f600"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b'{"a": 9223372036854775808}', "a: must be between"),
        (b'{"a": [0, -9223372036854775809]}', "a[1]: must be between"),
        (b"1" + b"0" * 300, "body: must be between"),
        (b'{"a": -' + b"9" * 5000 + b"}", "a: must be between"),  # never parsed: no 4300 limit
        (b'{"a": {"b": 1e400}}', "a.b: must be a finite number"),
        (b"[-1E+309]", "body[0]: must be a finite number"),
        (b'{"a": "x\\u0000"}', "a: must not contain U+0000"),
        (b'{"a": {"k\\u0000": 1}}', "a.k\x00: must not contain U+0000"),
    ],
)
def test_values_the_stores_cannot_hold_are_validation_errors(raw: bytes, message: str) -> None:
    code, text = refusal(raw)
    assert code == "validation_error" and text.startswith(message), text


def test_range_edges_are_kept() -> None:
    raw = b'{"max": 9223372036854775807, "min": -9223372036854775808, "f": 1.7e308, "z": 1e-400}'
    assert jsonbody.loads(raw) == {"max": 2**63 - 1, "min": -(2**63), "f": 1.7e308, "z": 0.0}


def test_the_first_failure_in_document_order_answers() -> None:
    assert refusal(b'{"a": 1e400, "b": "\\ud800"}')[0] == "validation_error"
    assert refusal(b'{"a": "\\ud800", "b": 1e400}')[0] == "invalid_json"


def test_frames_name_themselves() -> None:
    assert refusal("{nope", subject="frame", root="frame") == (
        "invalid_json",
        "frame is not valid JSON",
    )
    assert refusal("1e400", subject="frame", root="frame")[1] == "frame: must be a finite number"


def test_render_paths() -> None:
    assert jsonbody.render(()) == "body"
    assert jsonbody.render(("events", 3, "name")) == "events[3].name"
    assert jsonbody.render((0, "a"), "frame") == "frame[0].a"


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300) | st.text(max_size=200).map(lambda t: t.encode("utf-8", "replace")))
def test_anything_is_parsed_or_refused_with_a_contract_error(raw: bytes) -> None:
    try:
        value = jsonbody.loads(raw)
    except (InvalidJson, ValidationError):
        return
    # what passes can be stored and sent back: strict JSON, UTF-8 encodable, no NaN
    json.dumps(value, allow_nan=False, ensure_ascii=False).encode("utf-8")
