"""Tests for banyan/proxy/flags/nodes.py: YAML composed within depth and size budgets, and values
YAML cannot build, all rejected as ``file:line`` instead of an exception from deep inside."""

from __future__ import annotations

import sys

import pytest

from banyan.proxy.flags import MAX_DEPTH, MAX_NODES, FlagError, parse_flags

HEAD = "version: 1\nbackends: {legacy: http://a, new: http://b}\n"  # two lines


def rejection(text: str) -> FlagError:
    with pytest.raises(FlagError) as caught:
        parse_flags(text, "flags.yaml")
    return caught.value


@pytest.mark.parametrize(
    "nested",
    [
        "x: " + "[" * 100_000 + "]" * 100_000,  # flow lists
        "x: " + "{a: " * 50_000 + "1" + "}" * 50_000,  # flow mappings
        "x:\n" + "".join(" " * i + "- \n" for i in range(1, 2_000)),  # block lists
    ],
    ids=["flow_lists", "flow_mappings", "block_lists"],
)
def test_deep_nesting_is_a_line_not_a_recursion_error(nested: str) -> None:
    error = rejection(HEAD + nested + "\n")
    assert error.reason == f"YAML too large: nested more than {MAX_DEPTH} levels deep"
    assert error.line >= 3 and str(error).startswith(f"flags.yaml:{error.line}: ")


def test_nesting_within_the_budget_is_judged_by_the_schema() -> None:
    depth = MAX_DEPTH - 1  # the root mapping is one level, x's value the rest
    error = rejection(HEAD + "x: " + "[" * (depth - 1) + "]" * (depth - 1) + "\n")
    assert error.line == 3 and "unknown key 'x'" in error.reason


def test_even_a_tiny_recursion_limit_gives_a_line() -> None:
    # the budget is the guard; the RecursionError backstop still answers with file:line
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(120)
    try:
        error = rejection(HEAD + "x: " + "[" * 60 + "]" * 60 + "\n")
    finally:
        sys.setrecursionlimit(old)
    assert error.reason == "YAML too large: nested too deeply" and error.line >= 3


def test_too_many_values_stop_composing_at_their_line() -> None:
    values = ",".join(["0"] * (MAX_NODES + 10))
    error = rejection(HEAD + "x: [\n" + values + "]\n")
    assert error.line == 4
    assert error.reason == (
        f"YAML too large: more than {MAX_NODES} YAML values; a flag file needs far fewer"
    )


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("!!python/object:os.system x", "cannot read the value: could not determine a constructor"),
        ("!!binary 'a'", "cannot read the value: failed to decode base64 data"),
        ("1" + "0" * 5000, "cannot read the value: Exceeds the limit"),
        ("1" + "0" * 20, "is too large"),
        ("!!float 'x'", "cannot read the value"),
    ],
    ids=["python_tag", "bad_binary", "five_thousand_digits", "huge_int", "bad_float"],
)
def test_values_yaml_cannot_build_fail_at_their_line(value: str, reason: str) -> None:
    text = HEAD + f"features:\n  a:\n    routes: [/a]\n    percent: {value}\n"
    error = rejection(text)
    assert error.line == 6 and reason in error.reason, error.reason
    assert len(error.reason) < 300  # a megabyte value is never echoed back whole


def test_a_long_value_is_shown_cut() -> None:
    error = rejection(HEAD + "features:\n  a:\n    routes: [/a]\n    mode: " + "x" * 10_000 + "\n")
    assert error.line == 6 and error.reason.endswith(
        "x... is not one of legacy, shadow, canary, new"
    )


def test_a_huge_int_in_an_open_range_is_refused_not_overflowed() -> None:
    text = HEAD + "features:\n  a:\n    routes: [/a]\n    parity: {max_body_bytes: 1" + "0" * 400
    error = rejection(text + "}\n")
    assert error.line == 6 and "is too large" in error.reason
